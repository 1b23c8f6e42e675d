"""The training loop: exact resume, position-seeded batches, NaN stops, checkpoints, collapse
monitors, bf16 autocast and gradient accumulation."""

from __future__ import annotations

import json
import logging
import math
import pickle
import warnings
from pathlib import Path

import pytest
import torch
from _helpers import (
    SHORT_DEMO_RUN,
    Interrupt,
    assert_state_equal,
    build,
    interrupt_after_checkpoint,
    logged,
    read_metrics,
    single_thread,  # noqa: F401  (autouse fixture)
    skip_without_extras,
    tiny_recipe,
    write_recipe,
)
from torch.utils.data import DataLoader

from polyjepa import precision
from polyjepa import train as T
from polyjepa.build import build_masker, build_objective, load_datasets
from polyjepa.checkpoint import load_file, load_state, save_atomic
from polyjepa.data import Collate, SeededBatchSampler, SeededDataset, fitting_batch_size
from polyjepa.errors import CheckpointError, ConfigError, DataError, NonFiniteLossError
from polyjepa.monitors import normalized_std, rankme
from polyjepa.objectives import JEPA
from polyjepa.predictors import JEPAPredictor
from polyjepa.train import CHECKPOINT, Trainer, autocast_dtype, pretrain

K = 4  # the interrupted run stops after its checkpoint at step K of 2K

STOCHASTIC = {"dropout": 0.1, "drop_path": 0.1}


def check_resume_matches_uninterrupted(tmp_path, monkeypatch, train: dict, encoder: dict):
    raw = tiny_recipe(train={"max_steps": 2 * K, "checkpoint_every": K, **train}, encoder=encoder)
    recipe = write_recipe(raw, tmp_path)
    full = pretrain(recipe, [], tmp_path / "full")

    interrupt_after_checkpoint(monkeypatch, K)
    with pytest.raises(Interrupt):
        pretrain(recipe, [], tmp_path / "resumed")
    monkeypatch.undo()
    part = tmp_path / "resumed"
    assert load_file(part / CHECKPOINT)["step"] == K
    assert not (part / "encoder.pt").exists()
    assert [r["step"] for r in read_metrics(part)] == list(range(1, K + 1))
    assert pretrain(recipe, [], part, resume=True) == part

    a, b = load_file(full / CHECKPOINT), load_file(part / CHECKPOINT)
    assert a["step"] == b["step"] == 2 * K
    assert_state_equal(a["objective"], b["objective"])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(),
                      strict=True):
        assert_state_equal(sa, sb)
    assert_state_equal(load_file(full / "encoder.pt")["state_dict"],
                       load_file(part / "encoder.pt")["state_dict"])
    steps = [r["step"] for r in read_metrics(part)]
    assert steps == list(range(1, 2 * K + 1)), "metrics.jsonl has missing or duplicated steps"
    losses_full = [r["loss"] for r in read_metrics(full)]
    assert [r["loss"] for r in read_metrics(part)] == losses_full
    # an existing run is never overwritten: another recipe is refused, the same one resumes
    with pytest.raises(ConfigError, match="already holds a run of a different recipe"):
        pretrain(recipe, ["train.seed=1"], part)


@pytest.mark.parametrize(
    "train",
    [{"num_workers": 0, "accumulate": 1}, {"num_workers": 2, "accumulate": 2}],
    ids=["workers0", "workers2-accumulate2"],
)
def test_resume_is_bit_exact_without_stochastic_layers(tmp_path, monkeypatch, train):
    check_resume_matches_uninterrupted(tmp_path, monkeypatch, train, encoder={})


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_is_bit_exact_with_dropout(tmp_path, monkeypatch, num_workers):
    check_resume_matches_uninterrupted(tmp_path, monkeypatch, {"num_workers": num_workers},
                                       encoder=STOCHASTIC)


def test_starting_batches_does_not_consume_global_rng(tmp_path):
    """The root cause of the resume bug above: after the RNG state is restored, starting the data
    iterator must not change the random numbers the model draws next."""
    trainer = Trainer(build(tiny_recipe()), tmp_path)
    state = torch.get_rng_state()
    expected = torch.rand(4)
    torch.set_rng_state(state)
    next(trainer._batches())
    assert torch.equal(torch.rand(4), expected)


def test_resume_after_crash_between_checkpoints_drops_later_metric_rows(tmp_path, monkeypatch):
    """A crash after step 3 with the last checkpoint at step 2: the resumed run replays step 3,
    and metrics.jsonl keeps one row per step."""
    recipe = write_recipe(tiny_recipe(train={"max_steps": 5, "checkpoint_every": 2}), tmp_path)
    original = JEPA.forward
    calls = [0]

    def forward(self, batch):
        calls[0] += 1
        if calls[0] == 4:
            raise Interrupt
        return original(self, batch)

    monkeypatch.setattr(JEPA, "forward", forward)
    run = tmp_path / "run"
    with pytest.raises(Interrupt):
        pretrain(recipe, [], run)
    assert [r["step"] for r in read_metrics(run)] == [1, 2, 3]
    assert load_file(run / CHECKPOINT)["step"] == 2
    monkeypatch.undo()
    pretrain(recipe, [], run, resume=True)
    rows = read_metrics(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    reference = pretrain(recipe, [], tmp_path / "reference")
    assert [r["loss"] for r in rows] == [r["loss"] for r in read_metrics(reference)]


# ------------------------------------------------------------------------- position-seeded data


def _loader_batches(num_workers: int, epoch: int = 0, start: int = 0, batch_size: int = 64):
    recipe = build(tiny_recipe())
    train, _, meta = load_datasets(recipe)
    sampler = SeededBatchSampler(len(train), batch_size, seed=7)
    sampler.set_position(epoch, start)
    loader = DataLoader(SeededDataset(train), batch_sampler=sampler, num_workers=num_workers,
                        collate_fn=Collate(build_masker(recipe, meta)))
    return list(loader)


def _same_batch(a, b) -> bool:
    return (torch.equal(a.x["num"], b.x["num"]) and torch.equal(a.x["cat"], b.x["cat"])
            and torch.equal(a.y, b.y) and torch.equal(a.masks.context, b.masks.context)
            and torch.equal(a.masks.target, b.masks.target))


def test_batches_depend_only_on_position():
    serial = _loader_batches(0)
    assert len(serial) == 1600 // 64
    workers = _loader_batches(2)
    assert len(workers) == len(serial)
    assert all(_same_batch(a, b) for a, b in zip(serial, workers, strict=True))
    # the masks (and their sizes) vary from batch to batch
    assert len({tuple(b.masks.context.shape) + tuple(b.masks.target.shape) for b in serial}) > 1
    # resuming mid-epoch yields exactly the tail of the epoch
    tail = _loader_batches(2, start=17)
    assert len(tail) == len(serial) - 17
    assert all(_same_batch(a, b) for a, b in zip(serial[17:], tail, strict=True))
    # the next epoch is another permutation with other masks
    other = _loader_batches(0, epoch=1)
    assert not _same_batch(serial[0], other[0])


def test_sampler_permutations_per_epoch_and_rank():
    sampler = SeededBatchSampler(100, 10, seed=3)
    assert len(sampler) == 10
    epoch0 = list(sampler)
    assert epoch0 == list(sampler)  # deterministic
    idx0 = [i for b in epoch0 for i, _, _ in b]
    assert sorted(idx0) == list(range(100)) and idx0 != list(range(100))
    seeds0 = [b[0][1] for b in epoch0]
    assert all(len({s for _, s, _ in b}) == 1 for b in epoch0)  # one seed per batch
    assert len(set(seeds0)) == 10
    sampler.set_position(1)
    epoch1 = list(sampler)
    assert [i for b in epoch1 for i, _, _ in b] != idx0
    assert not set(seeds0) & {b[0][1] for b in epoch1}
    sampler.set_position(1, 6)
    assert list(sampler) == epoch1[6:]
    # positions count micro-batches from the start of training, across epochs
    assert [b[0][2] for b in epoch0] == list(range(10))
    assert [b[0][2] for b in epoch1] == list(range(10, 20))
    # two ranks split one permutation without overlap, with their own batch seeds
    ranks = [SeededBatchSampler(100, 10, seed=3, rank=r, world_size=2) for r in (0, 1)]
    assert len(ranks[0]) == 5
    parts = [[i for b in s for i, _, _ in b] for s in ranks]
    assert not set(parts[0]) & set(parts[1]) and len(parts[0]) == len(parts[1]) == 50
    with pytest.raises(ValueError, match="a batch of 11 is larger than the 10 samples"):
        SeededBatchSampler(10, 11, seed=0)


def test_a_batch_larger_than_the_data_is_capped_with_one_warning(tmp_path):
    with pytest.warns(UserWarning, match=r"train.batch_size=64 is larger than the 50 training "
                                         r"samples: batches of 50"):
        assert fitting_batch_size(64, 50, "train.batch_size") == 50
    with pytest.warns(UserWarning, match="25 training samples per process"):
        assert fitting_batch_size(64, 50, "train.batch_size", world_size=2) == 25
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert fitting_batch_size(32, 50, "finetune.batch_size") == 32
    with pytest.raises(DataError, match="fewer processes"):
        fitting_batch_size(8, 1, "train.batch_size", world_size=2)
    # a whole run on 120 rows with batch 256: trains (on batches of all 120) instead of failing
    raw = tiny_recipe(train={"batch_size": 256, "max_steps": 2},
                      data={"path": "sklearn:iris", "test_path": None, "test_fraction": 0.2},
                      synthetic=False)
    with pytest.warns(UserWarning, match="train.batch_size=256 is larger than the 120"):
        run = pretrain(write_recipe(raw, tmp_path), [], tmp_path / "run")
    assert (run / "encoder.pt").exists()


def test_batches_cross_epochs_from_resumed_position(tmp_path):
    """`Trainer._batches` resumes at micro-batch `step * accumulate` and rolls into the next
    epoch (1600 rows / batch 400 = 4 batches per epoch)."""
    trainer = Trainer(build(tiny_recipe(train={"batch_size": 400, "accumulate": 3})), tmp_path)
    trainer.step = 1
    got = trainer._batches()
    got = [next(got) for _ in range(3)]
    recipe = build(tiny_recipe())
    train, _, meta = load_datasets(recipe)
    collate = Collate(build_masker(recipe, meta))
    seeded = SeededDataset(train)
    sampler = SeededBatchSampler(len(train), 400, seed=0)
    keys = list(sampler)[3:]
    sampler.set_position(1)
    keys += list(sampler)[:2]
    expected = [collate([seeded[key] for key in batch]) for batch in keys]
    assert all(_same_batch(a, b) for a, b in zip(got, expected, strict=True))


# ------------------------------------------------------------------------------ optimizer


def _decay_split(encoder: dict | None = None):
    recipe = build(tiny_recipe(encoder=encoder))
    objective = build_objective(recipe, load_datasets(recipe)[2])
    decay, no_decay = T.param_groups(objective, 0.05)
    ids = {id(p) for p in decay["params"]}
    names = {n for n, p in objective.named_parameters() if p.requires_grad}
    decayed = {n for n, p in objective.named_parameters() if id(p) in ids}
    return objective, decay, no_decay, decayed, names - decayed


def test_param_groups_split_matrices_from_norms_and_biases():
    objective, decay, no_decay, decayed, kept = _decay_split()
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert decay["decayed"] and not no_decay["decayed"]
    optimized = {id(p) for p in decay["params"] + no_decay["params"]}
    assert not any(id(p) in optimized for p in objective.target.parameters())
    assert len(optimized) == sum(1 for p in objective.parameters() if p.requires_grad)
    assert "online.encoder.blocks.0.attn.qkv.weight" in decayed
    assert "predictor.head.weight" in decayed
    assert "online.encoder.blocks.0.attn.qkv.bias" in kept
    assert "online.encoder.blocks.0.norm1.weight" in kept and "predictor.norm.bias" in kept


def test_param_groups_do_not_decay_biases_and_tokens():
    _, _, _, decayed, _ = _decay_split(encoder={"reg_tokens": 1})
    wrongly = decayed & {"online.tokenizer.num_bias", "online.tokenizer.cat_bias",
                         "online.encoder.reg", "predictor.mask_token"}
    assert not wrongly


def test_schedules_are_applied_to_the_optimizer(tmp_path):
    raw = tiny_recipe(train={"max_steps": 10},
                      optim={"lr": 1e-2, "start_lr": 1e-4, "min_lr": 1e-5, "warmup_steps": 4,
                             "weight_decay": 0.04, "weight_decay_end": 0.4})
    trainer = Trainer(build(raw), tmp_path)
    for step, lr in [(0, 1e-4), (4, 1e-2), (10, 1e-5)]:
        trainer.step = step
        sched = trainer._set_schedules()
        assert sched["lr"] == pytest.approx(lr)
        decayed, other = trainer.optimizer.param_groups
        assert decayed["lr"] == other["lr"] == sched["lr"]
        assert decayed["weight_decay"] == pytest.approx(0.04 + 0.36 * (1 - math.cos(math.pi * step
                                                                             / 10)) / 2)
        assert other["weight_decay"] == 0.0


# ------------------------------------------------------------------------------ accumulation


def test_accumulate_consumes_micro_batches_in_order(tmp_path, monkeypatch):
    seen = []
    original = JEPA.forward

    def forward(self, batch):
        seen.append(batch.x["num"].clone())
        return original(self, batch)

    monkeypatch.setattr(JEPA, "forward", forward)
    trainer = Trainer(build(tiny_recipe(train={"max_steps": 3, "accumulate": 2})), tmp_path)
    trainer.fit()
    assert trainer.step == 3 and len(seen) == 6
    sampler = SeededBatchSampler(1600, 32, seed=0)
    train = load_datasets(build(tiny_recipe()))[0]
    for got, batch in zip(seen, list(sampler)[:6], strict=True):
        assert torch.equal(got, torch.stack([train[i][0]["num"] for i, _, _ in batch]))
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["samples_per_s"] > 0 for r in rows)


# ------------------------------------------------------------------------------ NaN stops


def nan_at(monkeypatch, call: int, *, gradient: bool = False) -> None:
    """Make the objective's `call`-th forward return a NaN loss (or a NaN gradient)."""
    original = JEPA.forward
    calls = [0]

    def forward(self, batch):
        loss, logs = original(self, batch)
        calls[0] += 1
        if calls[0] == call:
            if gradient:  # finite value, NaN gradient: d sqrt(x)/dx at 0 is inf, times 0
                p = next(self.online.parameters())
                loss = loss + torch.sqrt(p.sum() * 0.0)
            else:
                loss = loss * float("nan")
        return loss, logs

    monkeypatch.setattr(JEPA, "forward", forward)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    recipe = write_recipe(tiny_recipe(train={"max_steps": 6, "checkpoint_every": 2}), tmp_path)
    nan_at(monkeypatch, 3)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as info:
        pretrain(recipe, [], run)
    message = str(info.value)
    assert "non-finite loss at step 3" in message
    assert str(run / CHECKPOINT) in message
    assert isinstance(info.value, FloatingPointError)
    state = load_file(run / CHECKPOINT)
    assert state["step"] == 2
    assert all(torch.isfinite(v).all() for v in state["objective"].values())
    assert not (run / "encoder.pt").exists()
    assert [r["step"] for r in read_metrics(run)] == [1, 2]
    # the kept checkpoint resumes
    monkeypatch.undo()
    pretrain(recipe, ["train.max_steps=3"], run, resume=True)
    assert load_file(run / CHECKPOINT)["step"] == 3


def test_nan_before_any_checkpoint_removes_the_run_dir(tmp_path, monkeypatch):
    recipe = write_recipe(tiny_recipe(train={"max_steps": 4, "checkpoint_every": 2}), tmp_path)
    nan_at(monkeypatch, 1)
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match="at step 1;.*no checkpoint was saved"):
        pretrain(recipe, [], run)
    assert not run.exists()


def test_nan_gradient_with_finite_loss_stops(tmp_path, monkeypatch):
    nan_at(monkeypatch, 2, gradient=True)
    trainer = Trainer(build(tiny_recipe(train={"max_steps": 4})), tmp_path)
    with pytest.raises(NonFiniteLossError, match="non-finite gradient at step 2"):
        trainer.fit()
    assert trainer.step == 1


# ------------------------------------------------------------------------------ checkpoints


@pytest.mark.parametrize("error", [OSError("No space left on device"), KeyboardInterrupt()])
def test_save_atomic_keeps_old_file_when_save_fails(tmp_path, monkeypatch, error):
    path = tmp_path / "ckpt" / "last.pt"
    save_atomic({"step": 1, "w": torch.ones(3)}, path)
    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.seek(0)
        f.write(b"garbage")  # half-written file
        raise error

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(type(error)):
        save_atomic({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.undo()
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"], "temp file left behind"
    state = load_file(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    save_atomic({"step": 3}, path)
    assert load_file(path)["step"] == 3
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]


def _real_checkpoint(tmp_path):
    path = tmp_path / "real.pt"
    objective = build_objective(build(tiny_recipe()), load_datasets(build(tiny_recipe()))[2])
    save_atomic({"step": 5, "objective": objective.state_dict()}, path)
    return path


@pytest.mark.parametrize("keep", [4, 100, 0.5, -1])
def test_load_file_truncated(tmp_path, keep):
    data = _real_checkpoint(tmp_path).read_bytes()
    n = int(len(data) * keep) if isinstance(keep, float) else keep % len(data)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(data[:n])
    with pytest.raises(CheckpointError, match="corrupt or truncated") as info:
        load_file(bad)
    assert str(bad) in str(info.value)


def test_load_file_empty(tmp_path):
    bad = tmp_path / "empty.pt"
    bad.write_bytes(b"")
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_file(bad)


def test_load_file_tiny_truncation_is_reported_as_corrupt(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(_real_checkpoint(tmp_path).read_bytes()[:2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_file(bad)


class Payload:
    """A custom class: its pickle cannot be loaded with weights_only=True."""

    def __init__(self):
        self.value = 3


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_load_file_refuses_pickled_objects(tmp_path, writer):
    path = tmp_path / "evil.pt"
    if writer == "torch":
        torch.save({"x": Payload(), "w": torch.ones(2)}, path)
    else:
        path.write_bytes(pickle.dumps({"x": Payload()}))
    with pytest.raises(CheckpointError, match="refused to load.*weights_only") as info:
        load_file(path)
    assert str(path) in str(info.value)


def test_load_file_missing_and_not_a_dict(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_file(tmp_path / "nope.pt")
    path = tmp_path / "list.pt"
    torch.save([torch.ones(1)], path)
    with pytest.raises(CheckpointError, match="not a polyjepa checkpoint.*list"):
        load_file(path)


def test_load_state_lists_mismatched_keys_and_shapes(tmp_path):
    meta = load_datasets(build(tiny_recipe()))[2]
    small = build_objective(build(tiny_recipe()), meta)
    big = build_objective(build(tiny_recipe(encoder={"depth": 2, "reg_tokens": 1}),
                                ["model.tokenizer.dim=32"]), meta)
    with pytest.raises(CheckpointError) as info:
        load_state(small, big.state_dict(), tmp_path / "x.pt")
    message = str(info.value)
    assert "another architecture" in message and str(tmp_path / "x.pt") in message
    assert "shape mismatches: " in message
    assert "online.tokenizer.num_weight: checkpoint (6, 32) vs model (6, 16)" in message
    assert "unexpected keys" in message and "online.encoder.blocks.1." in message
    assert message.count(";") >= 9  # lists are capped at 10 entries each
    with pytest.raises(CheckpointError, match=r"missing keys \(\d+\): .*blocks\.1\."):
        load_state(big, {k: v for k, v in big.state_dict().items() if "blocks.1." not in k},
                   tmp_path / "y.pt")
    load_state(small, small.state_dict(), tmp_path / "ok.pt")  # a fitting state loads


def test_resume_with_another_architecture_fails_clearly(tmp_path):
    recipe = write_recipe(tiny_recipe(train={"max_steps": 1}), tmp_path)
    run = pretrain(recipe, [], tmp_path / "run")
    with pytest.raises(CheckpointError, match="does not fit this model.*blocks.1"):
        pretrain(recipe, ["model.encoder.depth=2", "train.max_steps=2"], run, resume=True)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        pretrain(recipe, [], tmp_path / "other", resume=True)


@pytest.mark.parametrize("key", ["rng", "optimizer", "step"])
def test_incomplete_checkpoint_is_reported(tmp_path, key):
    trainer = Trainer(build(tiny_recipe()), tmp_path)
    state = trainer.state_dict()
    del state[key]
    with pytest.raises(CheckpointError, match=f"incomplete checkpoint.*'{key}'"):
        trainer.load_state_dict(state, tmp_path / "c.pt")


def test_checkpoint_without_objective_is_reported(tmp_path):
    recipe = write_recipe(tiny_recipe(train={"max_steps": 1}), tmp_path)
    run = pretrain(recipe, [], tmp_path / "run")
    (run / CHECKPOINT).write_bytes((run / "encoder.pt").read_bytes())
    with pytest.raises(CheckpointError):
        pretrain(recipe, [], run, resume=True)


# ------------------------------------------------------------------------------ monitors


def test_normalized_std():
    g = torch.Generator().manual_seed(0)
    assert normalized_std(torch.randn(256, 64, generator=g)) == pytest.approx(1.0, abs=0.05)
    assert normalized_std(torch.ones(256, 64) * 3) == pytest.approx(0.0, abs=1e-6)
    # width-independent
    assert normalized_std(torch.randn(256, 8, generator=g)) == pytest.approx(1.0, abs=0.1)


def test_rankme():
    g = torch.Generator().manual_seed(0)
    assert rankme(torch.randn(20000, 32, generator=g)) == pytest.approx(32, rel=0.02)
    u, v = torch.randn(500, 1, generator=g), torch.randn(1, 32, generator=g)
    assert rankme(u @ v) == pytest.approx(1.0, abs=0.01)
    low = torch.randn(500, 4, generator=g) @ torch.randn(4, 32, generator=g)
    assert 2 < rankme(low) <= 4.01


def _monitor_with(monkeypatch, make):
    original = JEPA.forward

    def forward(self, batch):
        out = original(self, batch)
        self.monitor_embeddings = make(self.monitor_embeddings)
        return out

    monkeypatch.setattr(JEPA, "forward", forward)


def test_trainer_warns_on_collapse(tmp_path, monkeypatch, caplog):
    _monitor_with(monkeypatch, lambda z: torch.ones_like(z))
    trainer = Trainer(build(tiny_recipe(train={"max_steps": 2, "monitor_every": 1})), tmp_path)
    with logged(caplog, "target embeddings may be collapsing") as messages:
        trainer.fit()
    assert messages[0].startswith("step 1: target embeddings may be collapsing (normalised std 0")
    assert len(messages) == 2  # monitor_every=1: one warning per step
    rows = read_metrics(tmp_path)
    assert rows[0]["embed_std"] == pytest.approx(0.0, abs=1e-6)
    assert rows[0]["rankme"] == pytest.approx(1.0, abs=0.01)


def test_trainer_silent_on_spread_embeddings(tmp_path, monkeypatch, caplog):

    _monitor_with(monkeypatch, lambda z: torch.randn(z.shape, generator=torch.Generator()))
    trainer = Trainer(build(tiny_recipe(train={"max_steps": 2, "monitor_every": 1})), tmp_path)
    with caplog.at_level(logging.WARNING, logger="polyjepa"):
        trainer.fit()
    assert not [r for r in caplog.records if "collapsing" in r.getMessage()]
    assert all(r["embed_std"] > 0.5 for r in read_metrics(tmp_path))


def test_fresh_encoder_is_not_flagged_as_collapsing(tmp_path, caplog):

    raw = tiny_recipe(data={"path": "sklearn:breast_cancer", "test_path": None},
                      synthetic=False, train={"batch_size": 128})
    trainer = Trainer(build(raw), tmp_path)
    with torch.no_grad():
        trainer.objective(next(trainer._batches()))
    with caplog.at_level(logging.WARNING, logger="polyjepa"):
        logs = trainer._monitor()
    assert not [r for r in caplog.records if "collapsing" in r.getMessage()]
    assert logs["embed_std"] > 0.1 and logs["rankme"] > 4


# ------------------------------------------------------------------------------ precision


def test_bf16_autocast_on_cpu(tmp_path, monkeypatch):
    dtypes = []
    original = JEPAPredictor.forward

    def forward(self, *args):
        out = original(self, *args)
        dtypes.append(out.dtype)
        return out

    monkeypatch.setattr(JEPAPredictor, "forward", forward)
    raw = tiny_recipe(train={"max_steps": 2, "precision": "bf16", "batch_size": 8})
    run = Trainer(build(raw), tmp_path)
    assert run.amp_dtype == torch.bfloat16
    run.fit()
    assert dtypes == [torch.bfloat16] * 2
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows)
    blob = load_file(tmp_path / "encoder.pt")
    assert all(v.dtype == torch.float32 for v in blob["state_dict"].values())


def test_autocast_dtype(monkeypatch):
    cpu = torch.device("cpu")
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    monkeypatch.setattr(precision, "cpu_bf16_is_faster", lambda: False)
    assert autocast_dtype("auto", cpu) is None
    monkeypatch.setattr(precision, "cpu_bf16_is_faster", lambda: True)
    assert autocast_dtype("auto", cpu) is torch.bfloat16
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        autocast_dtype("fp16", cpu)
    with pytest.raises(ConfigError, match="unknown 'fp8'"):
        autocast_dtype("fp8", cpu)


def test_auto_precision_needs_native_bf16_and_a_measured_gain(monkeypatch, tmp_path):
    monkeypatch.setenv("POLYJEPA_CACHE_DIR", str(tmp_path))
    info = {"text": "model name : Some CPU\nflags : fpu sse avx2\n"}
    monkeypatch.setattr(precision, "cpu_info", lambda: info["text"])
    calls = []

    def measured(speedup):
        def measure():
            calls.append(speedup)
            return speedup
        return measure

    monkeypatch.setattr(precision, "measure_bf16_speedup", measured(3.0))
    assert precision.cpu_bf16_is_faster() is False and calls == []  # emulated: never measured
    info["text"] = "model name : Some CPU\nflags : fpu avx512f avx512_bf16\n"
    assert precision.cpu_bf16_is_faster() is True and calls == [3.0]
    assert precision.cpu_bf16_is_faster() is True and calls == [3.0]  # cached per machine
    info["text"] = "model name : Another CPU\nflags : amx_bf16 amx_tile\n"
    monkeypatch.setattr(precision, "measure_bf16_speedup", measured(1.05))
    assert precision.cpu_bf16_is_faster() is False and calls == [3.0, 1.05]  # native, no faster
    assert precision.auto_dtype(torch.device("cpu")) is None
    monkeypatch.setenv("POLYJEPA_PRECISION_PROBE", "0")
    assert precision.cpu_bf16_is_faster() is True  # the flags alone decide
    (tmp_path / "precision.json").write_text("not json")
    monkeypatch.delenv("POLYJEPA_PRECISION_PROBE")
    assert precision.cpu_bf16_is_faster() is False and calls[-1] == 1.05  # corrupt: measured again


def test_the_bf16_probe_measures_a_ratio():
    assert precision.measure_bf16_speedup(rounds=1) > 0


# ------------------------------------------------------------------------------ run directory


def test_run_directory_contents(tmp_path):
    recipe = write_recipe(tiny_recipe(train={"max_steps": 2, "log_every": 1}), tmp_path)
    run = pretrain(recipe, ["train.seed=3"], tmp_path / "run")
    assert (run / "encoder.pt").is_file() and (run / CHECKPOINT).is_file()
    config = (run / "config.yaml").read_text()
    assert config.startswith("# resolved from")
    import yaml

    assert yaml.safe_load(config)["train"]["seed"] == 3
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert {"loss", "lr", "wd", "momentum", "grad_norm", "loss_pred"} <= set(rows[0])
    state = load_file(run / CHECKPOINT)
    assert {"step", "objective", "optimizer", "scaler", "rng", "config", "meta"} <= set(state)


def _first_losses(tmp_path: Path, name: str, overrides: list[str]) -> tuple[list[float], Path]:
    """The 20 logged losses of a 20-step tiny run with `overrides`, and its run directory."""
    raw = tiny_recipe(train={"max_steps": 20})
    run = pretrain(write_recipe(raw, tmp_path), overrides, tmp_path / name)
    return [r["loss"] for r in read_metrics(run) if "loss" in r], run


def test_compile_keeps_the_fp32_loss_curve(tmp_path):
    """`train.compile` is not bit-exact by construction (fused kernels): the first 20 losses must
    match eager fp32 within float tolerance, and the checkpoint keeps eager's keys."""
    from torch._dynamo.utils import counters

    a, _ = _first_losses(tmp_path, "eager", [])
    graphs = counters["stats"]["unique_graphs"]
    b, compiled = _first_losses(tmp_path, "compiled", ["train.compile=true"])
    assert counters["stats"]["unique_graphs"] > graphs  # compiled, not run eagerly
    assert len(a) == len(b) == 20
    assert a == pytest.approx(b, rel=1e-4, abs=1e-5)
    keys = torch.load(compiled / "checkpoints" / "last.pt", weights_only=True)["objective"].keys()
    assert not any("_orig_mod" in k for k in keys)


@pytest.mark.parametrize("demo", ["byol_a_demo", "vj_vcr_demo"])
def test_channels_last_keeps_a_cnn_demos_fp32_loss_curve(tmp_path, demo):
    """`train.channels_last` (the default) runs convolutions and BatchNorm in other kernels, so it
    is not bit-exact by construction. Against the contiguous layout, on the demo's batch of
    synthetic data: the first loss matches to float rounding and the first 20 losses within
    0.5 % (measured: 0.26 % for BYOL-A, 7e-5 for VJ-VCR; PyTorch's channels-last CPU BatchNorm
    sums its statistics in fp32, 3e-5 relative error against 4e-7 contiguous, and Adam's first
    steps move each weight by about lr whatever its gradient's size, so near-zero gradients
    whose sign rounding flips matter); every convolution weight really is channels-last, the
    1-channel first layer's too (saved with their strides)."""
    skip_without_extras(demo)
    steps = [*SHORT_DEMO_RUN, "train.max_steps=20", "train.batch_size=32",
             "train.monitor_every=1000"]
    losses, layouts = {}, {}
    for flag in ("true", "false"):
        run = pretrain(demo, [*steps, f"train.channels_last={flag}"], tmp_path / flag)
        losses[flag] = [r["loss"] for r in read_metrics(run) if "loss" in r]
        state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["objective"]
        # channels innermost (stride 1), the 1-channel first convolution's weight included
        layouts[flag] = {w.stride(1) == 1 for w in state.values() if w.dim() == 4}
    assert layouts == {"true": {True}, "false": {False}}
    assert len(losses["true"]) == 20 and losses["true"] != losses["true"][:1] * 20
    assert losses["true"][0] == pytest.approx(losses["false"][0], rel=1e-5)
    assert losses["true"] == pytest.approx(losses["false"], rel=5e-3)


def test_fused_adamw_keeps_the_fp32_loss_curve_and_is_the_default(tmp_path):
    """The fused AdamW kernel is the loop's update up to float rounding: the first 20 losses
    match within float tolerance (not bit-exact: the test would catch a wrong fused update)."""
    from polyjepa.train import adamw

    a, _ = _first_losses(tmp_path, "fused", [])
    b, _ = _first_losses(tmp_path, "loop", ["optim.fused=false"])
    assert len(a) == len(b) == 20 and a != b[:1] * 20
    assert a == pytest.approx(b, rel=1e-4, abs=1e-5)
    weight = torch.nn.Parameter(torch.ones(3))
    assert adamw([{"params": [weight]}], 1e-3, torch.device("cpu")).defaults["fused"]
    assert not adamw([{"params": [weight]}], 1e-3, torch.device("cpu"), fused=False).defaults["fused"]
    assert not adamw([{"params": [weight]}], 1e-3, torch.device("meta")).defaults["fused"]


@pytest.mark.parametrize("ratio,expected", [(0.8, None), (1.9, torch.bfloat16)])
def test_auto_precision_measures_the_runs_own_step_and_leaves_no_trace(tmp_path, monkeypatch,
                                                                        ratio, expected):
    monkeypatch.setattr(precision, "cpu_bf16_is_faster", lambda: True)
    measured = []

    def speedup(step, **_):
        step(None)  # the real forward and backward, in both precisions
        step(torch.bfloat16)
        measured.append(ratio)
        return ratio

    monkeypatch.setattr(T, "measured_speedup", speedup)
    auto = Trainer(build(tiny_recipe(train={"precision": "auto"})), tmp_path / "a")
    rng_after_auto = torch.get_rng_state()
    plain = Trainer(build(tiny_recipe(train={"precision": "bf16"})), tmp_path / "b")
    assert measured == [ratio] and auto.amp_dtype == expected
    assert torch.equal(rng_after_auto, torch.get_rng_state())  # the RNG is where it was
    a, b = auto.objective.state_dict(), plain.objective.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # weights and buffers untouched
    assert all(p.grad is None for p in auto.objective.parameters())
    assert auto.state_dict()["precision"] == ("bfloat16" if expected else "fp32")
