"""Fine-tuning protocol: a run's exported encoder + a linear head, trained end to end on labels.

Any modality gets it: the recipe's training split (with its random crops, through the same
seeded data path as pretraining) trains the classifier, the test split scores it, and the frozen
encoder's linear probe is reported beside it. With `finetune.mask_ratio > 0`, A-JEPA's
regularized masking replaces that share of each sample's tokens by a learned mask token during
training (not at test time).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from polyjepa.allocator import reuse_freed_memory
from polyjepa.build import Recipe, load_datasets, recipe_from_dict
from polyjepa.checkpoint import cpu_state, save_atomic
from polyjepa.config import check_override_scope, to_dict
from polyjepa.data import (
    Collate,
    SeededBatchSampler,
    SeededDataset,
    dataset_labels,
    eval_collate,
    fitting_batch_size,
)
from polyjepa.encoders import Backbone
from polyjepa.errors import ConfigError, DataError
from polyjepa.evaluate import embed, linear_probe, subsample
from polyjepa.hub import load_encoder, read_run_config
from polyjepa.paths import write_atomic
from polyjepa.pooling import pool, pooled_dim
from polyjepa.schedules import warmup_cosine
from polyjepa.targets import is_regression
from polyjepa.train import adamw, channels_last, param_groups, resolve_device, seed_everything
from polyjepa.types import RawInput, Tokens

RESULT_FILE = "finetune.json"
WEIGHTS_FILE = "finetuned.pt"
WEIGHTS_FORMAT = "polyjepa-finetuned/1"
"""`finetuned.pt`: the fine-tuned `backbone` (a `Backbone` state dict, as in `encoder.pt`), the
classifier's `norm` (BatchNorm, no affine) and `head` (Linear) state dicts, `pooling`,
`class_names` (head output i), and the run's `config` and `meta` to rebuild the backbone."""


class Classifier(nn.Module):
    """Encoder -> pooling -> BatchNorm (no affine) -> Linear.

    Args:
        backbone: the pretrained encoder (trained further).
        num_classes: output classes.
        pooling: how token latents become one vector.
        in_dim: pooled width.
        mask_ratio: share of tokens masked while training.
        mask_mode: "token" (masked tokens replaced by a learned mask token) or "attention"
            (masked tokens hidden as attention keys, still updated as queries).
    """

    def __init__(self, backbone: Backbone, num_classes: int, pooling: str, in_dim: int,
                 mask_ratio: float = 0.0, mask_mode: str = "token") -> None:
        super().__init__()
        self.backbone, self.pooling = backbone, pooling
        self.mask_ratio, self.mask_mode = mask_ratio, mask_mode
        self.norm = nn.BatchNorm1d(in_dim, affine=False)
        self.head = nn.Linear(in_dim, num_classes)
        nn.init.trunc_normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)
        self.mask_token = None
        if mask_ratio > 0 and isinstance(backbone.tokenizer, nn.Identity):
            raise ConfigError("finetune.mask_ratio needs a tokenizer (regularized masking works "
                              "on tokens); set it to 0 for this encoder")
        if mask_ratio > 0 and mask_mode == "token":
            self.mask_token = nn.Parameter(torch.zeros(backbone.dim))
            nn.init.trunc_normal_(self.mask_token, std=0.02)

    def latents(self, x: RawInput, generator: torch.Generator | None = None
                ) -> tuple[Tensor, Tensor | None]:
        """`[B, R + N, D]` and the tokens' padding mask `[B, N]` (or None); with a generator
        (training) and a mask ratio, masked tokens first."""
        features = self.backbone.features(x)
        tokens = self.backbone.tokenizer(features)
        if not isinstance(tokens, Tokens):  # an encoder that reads features directly
            return self.backbone.encoder(tokens), None
        if self.mask_ratio == 0 or generator is None:
            return self.backbone.encoder(tokens), tokens.pad_mask
        b, n, _ = tokens.x.shape
        k = max(1, round(self.mask_ratio * n))
        order = torch.rand(b, n, generator=generator).argsort(dim=1)[:, :k]
        masked = torch.zeros(b, n, dtype=torch.bool).scatter_(1, order, True).to(tokens.x.device)
        if tokens.pad_mask is not None:
            masked = masked | tokens.pad_mask
        if self.mask_mode == "attention":  # the encoder hides pad_mask tokens as keys
            return self.backbone.encoder(Tokens(tokens.x, tokens.pos, masked)), tokens.pad_mask
        assert self.mask_token is not None  # mask_mode "token" with a mask ratio makes one
        x_masked = torch.where(masked[..., None], self.mask_token.to(tokens.x.dtype), tokens.x)
        return self.backbone.encoder(Tokens(x_masked, tokens.pos, tokens.pad_mask)), tokens.pad_mask

    def forward(self, x: RawInput, generator: torch.Generator | None = None) -> Tensor:
        h, pad_mask = self.latents(x, generator)
        z = pool(h, self.pooling, self.backbone.num_prefix_tokens, pad_mask,
                 self.backbone.step_tokens)
        return self.head(self.norm(z.float()))


@torch.no_grad()
def accuracy(model: Classifier, dataset: Any, batch_size: int, device: torch.device) -> float:
    model.eval()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=eval_collate)
    correct = total = 0
    for batch in loader:
        batch = batch.to(device)
        correct += int((model(batch.x).argmax(1) == batch.y).sum())
        total += int(batch.y.numel())
    return correct / max(total, 1)


def finetune_run(run_dir: str | Path, overrides: Sequence[str] = (), device: str = "auto",
                 progress: bool = True) -> dict:
    """Fine-tune a run's exported encoder on the recipe's labelled training split.

    Overrides may change `finetune.*`, `data.*` and `eval.*` (e.g. another split).

    Returns:
        `{"finetune": test accuracy, "linear_probe": frozen probe accuracy, "n_train", "n_test",
        "steps", "batch_size", ...}`, also written to `run_dir/finetune.json`; the fine-tuned
        weights go to `run_dir/finetuned.pt` (see `WEIGHTS_FILE`).
    """
    run_dir = Path(run_dir)
    check_override_scope(list(overrides), ("finetune", "data", "eval"), "finetune")
    recipe: Recipe = recipe_from_dict(read_run_config(run_dir), str(run_dir / "config.yaml"),
                                      list(overrides))
    ft = recipe.cfg.finetune
    dev = resolve_device(device)
    if recipe.cfg.train.reuse_memory and dev.type == "cpu":
        reuse_freed_memory()
    train_set, test_set, meta = load_datasets(recipe)
    num_classes = int(meta.get("num_classes", 0))
    if num_classes < 2 and len(train_set) and is_regression(dataset_labels(train_set)):
        raise DataError(f"{recipe.source}: fine-tuning trains a classifier, and this run's target "
                        "is real-valued (regression); score the frozen encoder with polyjepa "
                        "eval (ridge probes), or fit your own head on polyjepa.Featurizer")
    if num_classes < 2:
        raise DataError(f"{recipe.source}: fine-tuning needs labelled data with >= 2 classes")
    pooling = ft.pooling or recipe.cfg.eval.pooling
    backbone = load_encoder(run_dir, device=str(dev))
    probe = _frozen_probe(backbone, train_set, test_set, recipe, pooling, dev)
    seed_everything(ft.seed)
    in_dim = pooled_dim(backbone, pooling, {**meta, **backbone.layout})
    model = Classifier(backbone, num_classes, pooling, in_dim, ft.mask_ratio, ft.mask_mode).to(dev)
    if recipe.cfg.train.channels_last:
        channels_last(model)
    optimizer = adamw(param_groups(model, ft.weight_decay), ft.lr, dev)
    batch_size = fitting_batch_size(ft.batch_size, len(train_set), "finetune.batch_size")
    sampler = SeededBatchSampler(len(train_set), batch_size, ft.seed)
    loader = DataLoader(SeededDataset(train_set), batch_sampler=sampler, collate_fn=Collate(),
                        generator=torch.Generator().manual_seed(ft.seed))
    loss_fn = nn.CrossEntropyLoss()
    step, epoch = 0, 0
    bar = tqdm(total=ft.max_steps, desc="finetune", unit="step", disable=not progress,
               dynamic_ncols=True)
    model.train()
    while step < ft.max_steps:
        sampler.set_position(epoch)
        for batch in loader:
            if step >= ft.max_steps:
                break
            lr = warmup_cosine(step, ft.max_steps, ft.warmup_steps, 0.0, ft.lr, 0.0)
            for group in optimizer.param_groups:
                group["lr"] = lr
            batch = batch.to(dev)
            g = torch.Generator().manual_seed(batch.seed)
            loss = loss_fn(model(batch.x, g), batch.y)
            if not math.isfinite(loss.item()):
                raise DataError(f"finetune: non-finite loss at step {step + 1}; lower finetune.lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if ft.grad_clip_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), ft.grad_clip_norm)
            optimizer.step()
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        epoch += 1
    bar.close()
    result = {"finetune": accuracy(model, test_set, recipe.cfg.eval.batch_size, dev),
              "linear_probe": probe, "n_train": len(train_set), "n_test": len(test_set),
              "steps": ft.max_steps, "batch_size": batch_size, "mask_ratio": ft.mask_ratio,
              "mask_mode": ft.mask_mode}
    save_atomic({"format": WEIGHTS_FORMAT, "config": to_dict(recipe.cfg), "meta": meta,
                 "class_names": list(meta.get("class_names", [])), "pooling": pooling,
                 "backbone": cpu_state(model.backbone), "head": cpu_state(model.head),
                 "norm": cpu_state(model.norm)},
                run_dir / WEIGHTS_FILE)
    write_atomic(run_dir / RESULT_FILE, (json.dumps(result, indent=1) + "\n").encode())
    return result


def _frozen_probe(backbone: Backbone, train_set: Any, test_set: Any, recipe: Recipe, pooling: str,
                  device: torch.device) -> float:
    cfg = recipe.cfg.eval
    x_tr, y_tr = embed(backbone, train_set, pooling, cfg.batch_size, device)
    x_te, y_te = embed(backbone, test_set, pooling, cfg.batch_size, device)
    x_tr, y_tr = subsample(x_tr, y_tr, cfg.max_train, cfg.seed)
    return linear_probe(x_tr, y_tr, x_te, y_te, cfg.seed)


def format_result(result: dict) -> str:
    return (f"{'protocol':<22}{'accuracy':>10}\n"
            f"{'linear probe (frozen)':<22}{result['linear_probe']:>10.4f}\n"
            f"{'fine-tune':<22}{result['finetune']:>10.4f}\n"
            f"(n_train={result['n_train']}, n_test={result['n_test']}, steps={result['steps']}, "
            f"mask_ratio={result['mask_ratio']})")
