"""The training loop: one objective, any modality.

AdamW with warmup-cosine learning rate and cosine weight decay, EMA target updates after each
optimizer step, gradient accumulation and clipping, `torch.autocast`, a tqdm bar, `metrics.jsonl`
(+ TensorBoard), collapse monitors, atomic checkpoints and exact resume.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import math
import os
import random
import shutil
import signal
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from polyjepa import config as C
from polyjepa.allocator import reuse_freed_memory
from polyjepa.build import Recipe, assemble, load_recipe, recipe_from_dict
from polyjepa.checkpoint import load_file, load_state, lock_run_dir, save_atomic
from polyjepa.contracts import Labelled, Objective, StepAware
from polyjepa.data import DataSplit, SeededBatchSampler, SeededDataset, dataset_labels
from polyjepa.distributed import (
    any_rank,
    convert_global_batchnorm,
    gather_objects,
    init_distributed,
    shutdown_distributed,
    wrap_ddp,
)
from polyjepa.ema import momentum_at
from polyjepa.errors import CheckpointError, ConfigError, NonFiniteLossError
from polyjepa.hub import ENCODER_FILE, export_encoder
from polyjepa.log import quiet_other_ranks, run_log
from polyjepa.monitors import normalized_std, rankme
from polyjepa.paths import check_output_folder, is_name, pin_paths, write_atomic
from polyjepa.precision import MIN_SPEEDUP, auto_dtype, measured_speedup
from polyjepa.probes import embed, online_probe
from polyjepa.schedules import cosine, warmup_cosine
from polyjepa.selection import Selector, candidate_every, selection_rule
from polyjepa.targets import is_regression, known_rows
from polyjepa.trackers import Tracker, open_trackers, tracker_ids
from polyjepa.types import Batch

log = logging.getLogger(__name__)

CHECKPOINT = Path("checkpoints") / "last.pt"
KEPT = "encoder_step_{step}.pt"  # in checkpoints/: encoders kept along the way
SELECTED = Path("checkpoints") / "selected.pt"  # train.select: the best candidate so far


def kept_encoder_path(run_dir: Path, step: int) -> Path:
    """Where the encoder kept at `step` (`train.keep_checkpoints`) is written."""
    return Path(run_dir) / CHECKPOINT.parent / KEPT.format(step=step)


def kept_steps(run_dir: Path) -> list[int]:
    """Steps whose encoder a run kept, ascending."""
    prefix, suffix = KEPT.split("{step}")
    found = (Path(run_dir) / CHECKPOINT.parent).glob(f"{prefix}*{suffix}")
    return sorted(int(p.name[len(prefix):-len(suffix)]) for p in found
                  if p.name[len(prefix):-len(suffix)].isdigit())


def probe_subset(dataset: Any, limit: int, seed: int) -> Any:
    """At most `limit` samples of `dataset` (seeded), for the online probe."""
    if len(dataset) <= limit:
        return dataset
    picks = np.sort(np.random.default_rng(seed).choice(len(dataset), limit, replace=False))
    return DataSplit(dataset, picks)


def resolve_device(name: str) -> torch.device:
    """`auto` -> CUDA when available, else CPU; anything else as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `train.precision`, or None for full fp32."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError("train.precision=fp16 needs a CUDA device; use bf16 on CPU")
        return torch.float16
    if precision == "auto":
        return auto_dtype(device)  # the hardware's rule: polyjepa.precision
    raise ConfigError(f"train.precision: unknown '{precision}'; use fp32, bf16, fp16 or auto")


def precision_name(dtype: torch.dtype | None) -> str:
    """How checkpoints and `run.json` name an autocast dtype: "fp32" (None), "bfloat16", "float16"."""
    return str(dtype or "fp32").replace("torch.", "")


def channels_last(module: nn.Module) -> nn.Module:
    """`train.channels_last`: every 4-D parameter and buffer of `module` (2-D convolutions'
    weights) in channels-last memory, in place, so convolutions and BatchNorm run in that layout;
    tensors of other ranks (3-D convolutions included) are left as they are."""
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.dim() == 4:  # `to`, not `contiguous`: a 1-channel weight must be restrided too,
            # or a 1-channel input's convolution (a spectrogram's, a grey frame's) runs contiguous
            tensor.data = tensor.data.to(memory_format=torch.channels_last)
    return module


def compile_encoders(objective: Objective) -> None:
    """`train.compile`: `torch.compile` the encoder the objective trains and the one it exports
    (an EMA target), in place, so state-dict keys and checkpoints are unchanged. A graph dynamo
    cannot compile runs eagerly with a logged warning instead of failing the run."""
    import torch._dynamo

    torch._dynamo.config.suppress_errors = True
    compiled: set[int] = set()
    for backbone in (objective.online, objective.export_backbone()):
        if id(backbone.encoder) not in compiled:
            compiled.add(id(backbone.encoder))
            backbone.encoder.compile()


NO_DECAY = ("bias", "reg", "mask_token", "pos")
"""Parameter names (last component, by suffix) never weight-decayed, whatever their shape."""


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters split into decayed (weight matrices, embedding tables) and not decayed
    (biases, norms, register/mask tokens, learned positions)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            skip = p.ndim < 2 or name.rsplit(".", 1)[-1].endswith(NO_DECAY)
            (no_decay if skip else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay, "decayed": True},
        {"params": no_decay, "weight_decay": 0.0, "decayed": False},
    ]


FUSED_DEVICES = ("cpu", "cuda")
"""Devices where AdamW has a fused kernel (one pass over every parameter tensor)."""


def adamw(groups: list[dict[str, Any]], lr: float, device: torch.device,
          betas: tuple[float, float] = (0.9, 0.999), fused: bool = True) -> torch.optim.AdamW:
    """AdamW, fused where the device has the kernel: the same update, computed in one pass over all
    tensors instead of a loop of small operations per tensor (on a CPU, 3-8x faster an optimizer
    step; its results differ from the loop's only by float rounding). `fused=False` (or another
    device) keeps PyTorch's default implementation."""
    use_fused = fused and device.type in FUSED_DEVICES
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True if use_fused else None)


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch (and CUDA) RNG states as plain lists and ints (safe to pickle across
    ranks and to load with `weights_only=True`)."""
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                            for k, v in numpy_state["state"].items()}
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": numpy_state,
        "torch": torch.get_rng_state().tolist(),
    }
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = dict(state["numpy"])
    numpy_state["state"] = {k: (np.asarray(v, dtype=np.uint32) if isinstance(v, list) else v)
                            for k, v in numpy_state["state"].items()}
    np.random.set_state(numpy_state)
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """Trains `recipe`'s objective, writing everything to `run_dir`.

    Run directory: `config.yaml` (resolved recipe), `metrics.jsonl`, `checkpoints/last.pt`
    (+ `checkpoints/encoder_step_N.pt` kept along the way), and `encoder.pt` once training ends.
    """

    def __init__(self, recipe: Recipe, run_dir: Path) -> None:
        self.recipe = recipe
        self.cfg = cfg = recipe.cfg
        self.run_dir = run_dir
        self.dist, self.device = init_distributed(resolve_device(cfg.train.device))
        if cfg.train.reuse_memory and self.device.type == "cpu":
            reuse_freed_memory()
        quiet_other_ranks(self.dist.rank)
        self.amp_dtype = autocast_dtype(cfg.train.precision, self.device)
        seed_everything(cfg.train.seed)  # the same initial weights on every rank
        run = assemble(recipe, self.dist.world_size)
        train_set, self.meta = run.splits.train, run.splits.meta
        self.budget = run.budget
        self.trackers: list[Tracker] = []  # train.loggers, open while fit() runs
        # the online probe's fixed samples: training and validation splits only, never the test
        self.probe_sets = None
        if cfg.train.probe_every is not None:
            limit = cfg.train.probe_samples
            self.probe_sets = (probe_subset(train_set, limit, cfg.eval.seed),
                               probe_subset(run.splits.val, limit, cfg.eval.seed))
        self.selector = None
        if cfg.train.select != "last":
            by, why = selection_rule(cfg.train.select, dataset_labels(run.splits.val))
            self.selector = Selector(by, why)
        self.objective = run.objective.to(self.device)
        if cfg.train.channels_last:
            channels_last(self.objective)
        if cfg.train.compile:
            compile_encoders(self.objective)
        if self.dist.enabled and cfg.train.sync_batchnorm:
            self.objective = convert_global_batchnorm(self.objective)
        self.model: nn.Module = self.objective
        if self.dist.enabled:
            self.model = wrap_ddp(self.objective, self.device)
            seed_everything(cfg.train.seed + self.dist.rank)  # distinct dropout streams per rank
        self.collate = run.collate
        self.step_aware = [m for m in self.objective.modules() if isinstance(m, StepAware)]
        self.batch_size = run.batch_size
        try:  # data.on_error is only checkable here
            self.sampler = SeededBatchSampler(len(run.pretraining), self.batch_size,
                                              cfg.train.seed, self.dist.rank, self.dist.world_size)
            seeded = SeededDataset(run.pretraining, getattr(cfg.data, "on_error", "raise"))
        except ValueError as exc:
            raise ConfigError(f"{recipe.source}: {exc}") from None
        self.loader = DataLoader(
            seeded, batch_sampler=self.sampler, collate_fn=self.collate,
            num_workers=cfg.train.num_workers, pin_memory=self.device.type == "cuda",
            # its own generator: starting an iterator must not draw from the global RNG, which
            # drives dropout and is restored on resume
            generator=torch.Generator().manual_seed(cfg.train.seed),
            worker_init_fn=_ignore_stop_signals,
        )
        self.optimizer = adamw(param_groups(self.objective, cfg.optim.weight_decay),
                               cfg.optim.lr, self.device, cfg.optim.betas, cfg.optim.fused)
        self.step = 0
        self.skipped = 0  # non-finite steps skipped (train.skip_nonfinite)
        self.skipped_samples = 0  # samples that failed to load (data.on_error=skip)
        self.stop_requested = False  # set by SIGTERM / SIGINT
        if (cfg.train.precision == "auto" and self.amp_dtype == torch.bfloat16
                and self.device.type == "cpu" and not self.dist.enabled):
            self.amp_dtype = self._faster_precision()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.split_sizes = (len(train_set), 0 if run.splits.val is None else len(run.splits.val),
                            len(run.splits.test))
        self.class_counts = _class_counts(train_set, self.meta)
        self.unlabelled_samples = run.unlabelled_samples

    @property
    def pretraining_samples(self) -> int:
        """The samples pretraining reads: the training split's and the unlabelled pools'."""
        return self.split_sizes[0] + self.unlabelled_samples

    def _say_plan(self) -> None:
        """The run's first lines (`polyjepa.log.RUN`): its data, length and selection rule; said
        once its first step has run, so that a recipe failing there says one line, its error."""
        say = run_log().info
        pool = (f" (+{self.unlabelled_samples} unlabelled, pretraining only)"
                if self.unlabelled_samples else "")
        classes = int(self.meta.get("num_classes", 0) or 0)
        counts = self.class_counts
        target = ("; a real-valued target (regression: ridge probes, R²)"
                  if self.meta.get("task") == "regression" else
                  f"; {classes} classes" + (f" ({counts})" if counts else "") if classes else "")
        say("data: %d training samples%s, %d validation, %d test%s", self.split_sizes[0], pool,
            *self.split_sizes[1:], target)
        say("length: %s", self.budget.describe(self.pretraining_samples, self.batch_size))
        say("device: %s, precision %s, %d process%s; writing %s", self.device,
            precision_name(self.amp_dtype), self.dist.world_size,
            "" if self.dist.world_size == 1 else "es", self.run_dir)
        if self.selector is not None:
            why = f" ({self.selector.fallback})" if self.selector.fallback else ""
            say("encoder.pt: the best of step 0 and the probed steps by %s%s", self.selector.by,
                why)

    def _faster_precision(self) -> torch.dtype | None:
        """`train.precision=auto` on a CPU with native bf16: bf16 if this recipe's own step is
        `MIN_SPEEDUP` times faster in it than in fp32 (forward and backward of the first batch,
        interleaved rounds), else fp32. Small models bound by per-operation overhead often run
        slower in bf16 even where its matmuls are 6x faster. The measurement leaves no trace:
        weights, buffers (BatchNorm statistics, memories), gradients and RNG are restored."""
        state = copy.deepcopy(self.objective.state_dict())
        rng = rng_state()
        batch = next(iter(self._batches())).to(self.device)

        def step(dtype: torch.dtype | None) -> None:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype is not None):
                loss, _ = self.objective(batch)
            loss.float().backward()

        try:
            ratio = measured_speedup(step)
        finally:
            self.objective.zero_grad(set_to_none=True)
            self.objective.load_state_dict(state)
            set_rng_state(rng)
        chosen = torch.bfloat16 if ratio >= MIN_SPEEDUP else None
        log.info("train.precision=auto: this recipe's step runs %.2fx as fast in bf16 as in fp32; "
                 "training in %s", ratio, "bf16" if chosen else "fp32")
        return chosen

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs; collective under DDP (RNG states of every rank)."""
        return {
            "step": self.step,
            "skipped": self.skipped,
            "skipped_samples": self.skipped_samples,
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": gather_objects(rng_state()),  # one per rank
            "config": C.to_dict(self.cfg),
            "meta": self.meta,
            "precision": precision_name(self.amp_dtype),
            "selection": None if self.selector is None else self.selector.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        try:
            load_state(self.objective, state["objective"], path)
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            self.step = int(state["step"])
            self.skipped = int(state.get("skipped", 0))
            self.skipped_samples = int(state.get("skipped_samples", 0))
            if self.cfg.train.precision == "auto" and "precision" in state:
                # a resumed run keeps the precision it chose (auto measures again otherwise)
                self.amp_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(
                    state["precision"])
            if self.selector is not None and state.get("selection") is not None:
                self.selector.load_state_dict(state["selection"])
            rngs = state["rng"]  # a run resumed on more ranks than it saved reuses states cyclically
            set_rng_state(rngs[self.dist.rank % len(rngs)])
        except (KeyError, ValueError) as exc:
            raise CheckpointError(f"{path}: incomplete checkpoint ({exc!r})") from None

    def save(self) -> Path:
        """Checkpoint (collective under DDP; only rank 0 writes)."""
        path = self.run_dir / CHECKPOINT
        state = self.state_dict()
        if self.dist.is_main:
            save_atomic(state, path)
        return path

    # -- schedules -----------------------------------------------------------------------------
    def _set_schedules(self) -> dict[str, float]:
        o, total = self.cfg.optim, self.budget.steps
        lr = warmup_cosine(self.step, total, self.budget.warmup_steps, o.start_lr, o.lr, o.min_lr)
        wd = o.weight_decay if o.weight_decay_end is None else cosine(
            self.step, total, o.weight_decay, o.weight_decay_end)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
            if group["decayed"]:
                group["weight_decay"] = wd
        return {"lr": lr, "wd": wd}

    # -- loop ----------------------------------------------------------------------------------
    def _batches(self) -> Generator[Batch, None, None]:
        """Micro-batches from the current position on, epoch after epoch.

        An epoch's DataLoader workers are shut down as soon as it ends, or as an error leaves
        the generator: a traceback kept by the caller (a test's `pytest.raises`) still refers to
        the loader's iterator, and live workers would then keep the interpreter from exiting.
        """
        per_epoch = len(self.sampler)
        consumed = self.step * self.cfg.train.accumulate
        epoch, offset = divmod(consumed, per_epoch)
        while True:
            self.sampler.set_position(epoch, offset)
            iterator = iter(self.loader)
            try:
                yield from iterator
            finally:
                shutdown = getattr(iterator, "_shutdown_workers", None)  # multi-process loaders
                if shutdown is not None:
                    shutdown()
            epoch, offset = epoch + 1, 0

    def _nonfinite(self, what: str) -> NonFiniteLossError:
        last = self.run_dir / CHECKPOINT
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was saved"
        return NonFiniteLossError(
            f"non-finite {what} at step {self.step + 1}; training stopped and {kept}. Lower "
            "optim.lr, set optim.grad_clip_norm, or use train.precision=fp32"
        )

    def _train_step(self, batches: Iterator[Batch]) -> dict[str, float]:
        cfg = self.cfg
        sched = self._set_schedules()
        for module in self.step_aware:  # the step's random draws (SIGReg's directions)
            module.set_step(self.step)
        logs_sum: dict[str, torch.Tensor] = {}
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(cfg.train.accumulate):
            batch = next(batches).to(self.device)
            self.skipped_samples += batch.skipped
            last = micro == cfg.train.accumulate - 1
            sync = contextlib.nullcontext() if last or not self.dist.enabled else self.model.no_sync()
            with sync:
                with torch.autocast(self.device.type, dtype=self.amp_dtype,
                                    enabled=self.amp_dtype is not None):
                    loss, logs = self.model(batch)
                self.scaler.scale(loss / cfg.train.accumulate).backward()  # outside autocast
            loss_sum += loss.detach() / cfg.train.accumulate
            for k, v in logs.items():
                logs_sum[k] = logs_sum.get(k, 0) + v / cfg.train.accumulate
        self.scaler.unscale_(self.optimizer)
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        if cfg.optim.grad_clip_value is not None:
            torch.nn.utils.clip_grad_value_(params, cfg.optim.grad_clip_value)
        max_norm = cfg.optim.grad_clip_norm if cfg.optim.grad_clip_norm is not None else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        # gradients are all-reduced, so every rank sees the same verdict on them
        bad = None if torch.isfinite(loss_sum) else "loss"
        if bad is None and not torch.isfinite(grad_norm) and self.amp_dtype != torch.float16:
            bad = "gradient"
        if bad is not None and not cfg.train.skip_nonfinite:
            raise self._nonfinite(bad)
        if bad is None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.skipped += 1
            log.warning("step %d: non-finite %s, step skipped (%d so far; "
                        "train.skip_nonfinite=true)", self.step + 1, bad, self.skipped)
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        momentum = momentum_at(self.step, self.budget.steps, cfg.ema.start, cfg.ema.end,
                               cfg.ema.schedule)
        self.objective.update_target(momentum)
        return {"loss": loss_sum, "grad_norm": grad_norm, "momentum": momentum,
                "skipped_steps": self.skipped, "skipped_samples": self.skipped_samples,
                **sched, **logs_sum}

    def _monitor(self) -> dict[str, float]:
        z = self.objective.monitor_embeddings
        if z is None or z.shape[0] < 2:
            return {}
        std, rank = normalized_std(z), rankme(z)
        t = self.cfg.train
        most = min(z.shape)  # a batch of B embeddings has rank at most B
        if std < t.collapse_std or rank / most < t.collapse_rank:
            log.warning("step %d: target embeddings may be collapsing (normalised std %.3g, "
                        "RankMe %.1f of at most %d)", self.step, std, rank, most)
        return {"embed_std": std, "rankme": rank}

    def _online_probe(self) -> dict[str, float]:
        """`probe/knn` and `probe/linear` of the exported encoder, frozen, on the validation split
        (labelled samples only), and `probe/rankme`, the effective rank of the probed training
        samples' embeddings (label-free)."""
        backbone = self.objective.export_backbone()
        was_training = backbone.training
        assert self.probe_sets is not None  # fit() probes only with train.probe_every set
        train_set, val_set = self.probe_sets
        e = self.cfg.eval
        try:
            x_tr, y_tr = embed(backbone, train_set, e.pooling, e.batch_size, self.device)
            x_va, y_va = embed(backbone, val_set, e.pooling, e.batch_size, self.device)
        finally:
            backbone.train(was_training)
        row = {"probe/rankme": rankme(torch.from_numpy(x_tr))} if len(x_tr) > 1 else {}
        tr, va = known_rows(y_tr), known_rows(y_va)
        if len(va) and len(tr):
            row.update(online_probe(x_tr[tr], y_tr[tr], x_va[va], y_va[va], e.knn_k,
                                    self.cfg.train.probe_shots, self.cfg.train.probe_draws))
        return row

    def _export(self, name: str | Path = ENCODER_FILE) -> None:
        """Write the encoder the objective exports now to `run_dir/name`."""
        export_encoder(self.objective.export_backbone(), C.to_dict(self.cfg), self.meta,
                       self.run_dir, str(name))

    def _probe(self, row: dict[str, Any]) -> None:
        """The online probe into `row` (timed apart, `probe/seconds`), and its score offered to
        the selector; a new best encoder is written to `checkpoints/selected.pt`."""
        started = time.perf_counter()
        row.update(self._online_probe())
        if self.selector is not None and self.selector.offer(self.step, row):
            self._export(SELECTED)
        row["probe/seconds"] = time.perf_counter() - started

    def _keep(self) -> None:
        """Keep this step's encoder when `train.keep_checkpoints` / `keep_every` ask for it."""
        t = self.cfg.train
        if self.step in t.keep_checkpoints or (t.keep_every and self.step % t.keep_every == 0):
            self._export(kept_encoder_path(Path(), self.step))

    def _request_stop(self, signum: int, frame: Any) -> None:
        self.stop_requested = True

    def fit(self) -> bool:
        """Train the run's budget of steps (`polyjepa.budget`); returns False when stopped early
        by SIGTERM/SIGINT (after checkpointing at the step boundary), True when finished (the
        encoder is exported: the last step's, or the one `train.select` chose)."""
        cfg = self.cfg.train
        main = self.dist.is_main
        total = self.budget.steps
        if self.step >= total and (self.run_dir / ENCODER_FILE).exists():
            return True  # a finished run, restarted: nothing to do
        probe_every = None if cfg.probe_every is None else candidate_every(
            cfg.probe_every, total, cfg.select)
        names = [*cfg.loggers, *(["tensorboard"] if cfg.tensorboard else [])]
        trackers = open_trackers(names, self.run_dir, C.to_dict(self.cfg)) if main else []
        self.trackers = trackers
        metrics = (self.run_dir / "metrics.jsonl").open("a") if main else None
        handlers = {sig: signal.signal(sig, self._request_stop)
                    for sig in (signal.SIGTERM, signal.SIGINT)
                    if threading.current_thread() is threading.main_thread()}
        self.model.train()
        batches = self._batches()
        bar = tqdm(total=total, initial=self.step, disable=not (cfg.progress and main),
                   desc="pretrain", unit="step", dynamic_ncols=True)
        try:
            if self.step == 0 and probe_every is not None and main:
                self._probe_initialisation(metrics, trackers)
            t0, samples = time.perf_counter(), 0
            first = self.step
            while self.step < total:
                row = self._train_step(batches)
                if self.step == first + 1 and main:
                    self._say_plan()
                samples += self.batch_size * cfg.accumulate * self.dist.world_size
                bar.update(1)
                last = self.step == total
                if self.step % cfg.monitor_every == 0 or last:
                    row.update(self._monitor())
                probe = probe_every is not None and main and (
                    self.step % probe_every == 0 or last)
                if probe:  # timed apart: samples_per_s counts training only
                    self._probe(row)
                    t0 += row["probe/seconds"]
                if main:
                    self._keep()
                if self.step % cfg.log_every == 0 or last or probe:
                    elapsed = time.perf_counter() - t0
                    row = {k: float(v) for k, v in row.items()}
                    row.update(step=self.step, samples_per_s=samples / max(elapsed, 1e-9))
                    _write_row(row, metrics, trackers)
                    bar.set_postfix(loss=f"{row['loss']:.4f}")
                    t0, samples = time.perf_counter(), 0
                stop = any_rank(self.stop_requested, self.device)
                if stop or self.step % cfg.checkpoint_every == 0 or last:
                    self.save()
                if stop:
                    return False
        finally:
            batches.close()  # stops the DataLoader workers of an interrupted run now
            bar.close()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            if metrics is not None:
                metrics.close()
            for tracker in trackers:
                tracker.close()
        if self.skipped_samples and main:
            log.warning("%d training samples failed to load and were skipped "
                        "(data.on_error=skip)", self.skipped_samples)
        if main:
            self._export_final()
        return True

    def _probe_initialisation(self, metrics: Any, trackers: list[Tracker]) -> None:
        """Step 0: the online probe of the random initialisation (a candidate for `train.select`,
        whose encoder is kept as `checkpoints/encoder_step_0.pt`), logged as a row of its own."""
        row: dict[str, Any] = {}
        self._probe(row)
        if self.selector is not None:
            self._export(kept_encoder_path(Path(), 0))
        _write_row({**{k: float(v) for k, v in row.items()}, "step": 0}, metrics, trackers)

    def _export_final(self) -> None:
        """`encoder.pt`: the last step's encoder, or the selected one (`train.select`), with the
        last step's kept as `checkpoints/encoder_step_N.pt` beside it."""
        selected = self.run_dir / SELECTED
        if self.selector is None or not selected.exists():
            self._export()
            return
        self._export(kept_encoder_path(Path(), self.step))
        write_atomic(self.run_dir / ENCODER_FILE, selected.read_bytes())


def _class_counts(dataset: Any, meta: dict) -> str:
    """`training samples per class: 40 to 212` (or every class's count when there are at most
    6), from labels a dataset knows without reading its samples; "" otherwise."""
    names = [str(c) for c in meta.get("class_names", [])]
    if not names or not isinstance(dataset, Labelled):
        return ""
    y = dataset_labels(dataset)
    if is_regression(y):
        return ""
    counts = np.bincount(y[y >= 0], minlength=len(names))[:len(names)]
    if len(names) <= 6:
        return ", ".join(f"{n}: {c}" for n, c in zip(names, counts, strict=True))
    return f"training samples per class: {counts.min()} to {counts.max()}"


def _write_row(row: dict[str, float], metrics: Any, trackers: list[Tracker]) -> None:
    """One row of `metrics.jsonl` (and of each tracker, `train.loggers`), on the main process."""
    if metrics is not None:
        metrics.write(json.dumps(row) + "\n")
        metrics.flush()
    for tracker in trackers:
        tracker.log({k: v for k, v in row.items() if k != "step"}, int(row["step"]))


def _ignore_stop_signals(worker_id: int) -> None:
    """DataLoader workers leave SIGTERM/SIGINT to the main process, which checkpoints and then
    shuts them down; a worker killed by a job-wide signal would otherwise abort the stop."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric rows written after the checkpoint a resumed run restarts from."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a row torn by a crash (power cut, full disk)
            continue
        if row.get("step", 0) <= step:
            kept.append(line)
    path.write_text("".join(line + "\n" for line in kept))


RUN_SETTINGS = {"train.auto_resume", "train.num_workers", "train.progress", "train.device",
                "train.tensorboard", "train.loggers", "train.reuse_memory"}
"""Keys that say how to run, not what to train: they may change when a run is resumed."""


def _where_keys(cfg: C.RecipeConfig) -> set[str]:
    """Keys that say where the data lives (`data_root`, the data schema's `path_keys`): a run
    restarted with its data elsewhere, or with paths spelled another way, is the same run."""
    return {"data_root", *(f"data.{k}" for k in C.path_keys(cfg))}


def _data_elsewhere(saved: dict, cfg: C.RecipeConfig) -> list[tuple[str, str, str]]:
    """`(key, saved place, new place)` for each data path of `cfg` (pinned) that resolves to
    another file or folder than the saved config's: where a run's data lives."""
    def place(config: dict, key: str) -> str:
        value = config.get("data", {}).get(key)
        if not isinstance(value, str) or not value or is_name(value):
            return str(value)
        path = Path(value).expanduser()
        if not path.is_absolute() and config.get("data_root"):
            path = Path(config["data_root"]) / path
        return os.path.realpath(path)

    new = C.to_dict(cfg)
    return [(f"data.{k}", place(saved, k), place(new, k)) for k in C.path_keys(cfg)
            if place(saved, k) != place(new, k)]


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two plain config trees differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


def pretrain(recipe: str | Path, overrides: list[str], out_dir: str | Path,
             resume: bool = False) -> Path:
    """Pretrain `recipe` into `out_dir`; returns the run directory.

    With `resume`, the run continues from `out_dir/checkpoints/last.pt` with the run's saved
    config (command-line overrides still apply, e.g. a larger `train.max_steps`). Without it, an
    `out_dir` that already holds a checkpoint of the same resolved recipe is resumed when
    `train.auto_resume` is true (a restarted job, e.g. under `torchrun --max-restarts`); one of a
    different recipe is an error. Nothing is written until the recipe, data and model have been
    built, so a bad input leaves no run directory behind. A run stopped by SIGTERM/SIGINT saves
    a checkpoint and returns without `encoder.pt`.
    """
    run_dir = Path(out_dir)
    check_output_folder(run_dir)
    ckpt_path = run_dir / CHECKPOINT
    state = None
    if resume:
        if not ckpt_path.is_file():
            raise CheckpointError(
                f"--resume: no checkpoint at {ckpt_path}; start a new run without --resume")
        state = load_file(ckpt_path)
        built = recipe_from_dict(state["config"], str(ckpt_path), overrides)
    else:
        built = load_recipe(recipe, overrides)
        if ckpt_path.exists():
            state = load_file(ckpt_path)
            same_run = RUN_SETTINGS | _where_keys(built.cfg)
            changed = [k for k in _differences(state["config"], C.to_dict(built.cfg))
                       if k not in same_run]
            if changed or not built.cfg.train.auto_resume:
                why = f" of a different recipe (differs in {', '.join(changed[:8])})" if changed else ""
                raise ConfigError(
                    f"--out {run_dir} already holds a run{why}; pass --resume to continue it "
                    "or choose another --out")
        elif (run_dir / "encoder.pt").exists():
            raise ConfigError(f"--out {run_dir} already holds a finished run; choose another --out")
    given = pin_paths(built.cfg)  # after the comparison, which leaves where the data lives out
    trainer = Trainer(built, run_dir)
    main = trainer.dist.is_main
    if state is not None:
        trainer.load_state_dict(state, ckpt_path)
        finished = (run_dir / ENCODER_FILE).exists() and trainer.step >= trainer.budget.steps
        elsewhere = _data_elsewhere(state["config"], built.cfg)
        if elsewhere and finished:
            key, old, new = elsewhere[0]
            raise ConfigError(
                f"--out {run_dir} already holds a finished run trained on {key}={old}; this "
                f"command reads {new}: choose another --out (to score the run on that data: "
                f"polyjepa eval {run_dir} --data {new})")
        if finished:  # the same command again: nothing to train, nothing rewritten
            log.info("--out %s already holds this finished run: nothing to train", run_dir)
            shutdown_distributed()
            return run_dir
        for key, old, new in elsewhere:
            log.warning("continuing the run in %s with %s at another place: %s (was %s)",
                        run_dir, key, new, old)
    created = not run_dir.exists()
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
    lock = lock_run_dir(run_dir) if main else None  # held until training ends
    if state is not None:
        if main:
            _truncate_metrics(run_dir / "metrics.jsonl", trainer.step)
    elif main:
        (run_dir / "metrics.jsonl").unlink(missing_ok=True)
    started = time.time()
    if main:
        (run_dir / "config.yaml").write_text(
            f"# resolved from {built.source}\n"
            + (f"# data paths made absolute; given as: {' '.join(given)}\n" if given else "")
            + yaml.safe_dump(C.to_dict(built.cfg), sort_keys=False))
        info = run_info(trainer, str(recipe), overrides, run_dir)
        _write_run_info(run_dir, info)
    try:
        trainer.fit()
    except BaseException:
        if main and created and not ckpt_path.exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing worth keeping or resuming
        raise
    finally:
        if main and run_dir.exists():
            info["wall_s"] = info.get("wall_s", 0.0) + time.time() - started
            if trainer.selector is not None:
                info["selection"] = trainer.selector.summary()
            if trainer.trackers:
                info["trackers"] = tracker_ids(trainer.trackers)
            _write_run_info(run_dir, info)
        if lock is not None:
            lock.close()
    shutdown_distributed()
    return run_dir


def source_commit() -> str | None:
    """The git commit polyjepa's source is at, when it runs from a git checkout."""
    import subprocess

    try:
        done = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse",
                               "--short=12", "HEAD"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def run_info(trainer: Trainer, recipe: str, overrides: list[str], run_dir: Path) -> dict:
    """`run.json`: what ran where, for reports (`polyjepa report`); a resumed run keeps its
    accumulated wall time and its tracker runs."""
    from polyjepa import __version__

    old = run_dir / "run.json"
    previous = json.loads(old.read_text()) if old.is_file() else {}
    return {"recipe": recipe, "polyjepa": __version__, "commit": source_commit(),
            "torch": torch.__version__, "device": str(trainer.device),
            "precision": precision_name(trainer.amp_dtype),
            "world_size": trainer.dist.world_size,
            "train_samples": trainer.split_sizes[0],
            "unlabelled_samples": trainer.unlabelled_samples,
            "pretraining_samples": trainer.pretraining_samples, "batch_size": trainer.batch_size,
            "steps": trainer.budget.steps, "epochs": trainer.budget.epochs,
            "budget": trainer.budget.rule,
            "command": ["polyjepa", "pretrain", recipe, *overrides, "--out", str(run_dir)],
            "wall_s": float(previous.get("wall_s", 0.0)),
            **({"trackers": previous["trackers"]} if "trackers" in previous else {})}


def _write_run_info(run_dir: Path, info: dict) -> None:
    write_atomic(run_dir / "run.json", json.dumps(info, indent=1).encode())
