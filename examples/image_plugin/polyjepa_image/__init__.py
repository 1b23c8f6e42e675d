"""polyjepa's sixth modality, `image`, written as a third party would: this package depends on
polyjepa, adds nothing to it, and registers through one entry point (`pyproject.toml`).

What a modality supplies (`polyjepa.ModalityPlugin`): its data section, readers that return
datasets of `(x, y)`, a synthetic set for tests, raw features for the baseline probe, a reader
of new files with the training statistics, and components (here a patch tokenizer; the encoder,
predictor, masker and objective come from polyjepa's core).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from polyjepa import ModalityPlugin
from polyjepa_image.data import (
    ImageDataConfig,
    Images,
    _Item,
    read_source,
    split,
    statistics,
    to_dataset,
)
from polyjepa_image.tokenizer import PatchTokenizer

RECIPES = Path(__file__).parent  # i_jepa_tiny.yaml


def _meta(cfg: ImageDataConfig, class_names: list[str], mean: list[float],
          std: list[float]) -> dict:
    return {"class_names": class_names, "num_classes": len(class_names),
            "image_size": cfg.size, "in_channels": cfg.channels, "mean": mean, "std": std}


def load_data(cfg: ImageDataConfig, root: Path | None):
    """`(train, test, meta)`: `data.path` (and `data.test_path`) read, split and standardised
    with the training split's statistics."""
    items, splits = read_source(cfg, cfg.path, root, "data.path")
    if cfg.test_path:
        train = [_Item(*i) for i in items]
        test = [_Item(*i) for i in read_source(cfg, cfg.test_path, root, "data.test_path")[0]]
    else:
        train, test = split(items, splits, cfg, cfg.path)
    class_names = sorted({w.label for w in train if w.label is not None})
    mean, std = statistics(train)
    return (to_dataset(train, class_names, mean, std), to_dataset(test, class_names, mean, std),
            _meta(cfg, class_names, mean, std))


def load_file(cfg: ImageDataConfig, path: str, root: Path | None, meta: dict) -> Images:
    """Another source read as the run's training data was (size, channels, statistics)."""
    items, _ = read_source(cfg, path, root, "data")
    return to_dataset([_Item(*i) for i in items], meta["class_names"], meta["mean"], meta["std"])


def synthetic(n: int = 400, seed: int = 0):
    """Bright squares in one of four quadrants (the class) on noise, 28 x 28 grey, split 80/20."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    pixels = rng.integers(0, 60, (n, 1, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        r, c = 14 * (k // 2) + rng.integers(0, 6), 14 * (k % 2) + rng.integers(0, 6)
        pixels[i, 0, r:r + 8, c:c + 8] = 230
    cfg = ImageDataConfig(path="synthetic")
    items = [_Item(p, str(k), str(i)) for i, (p, k) in enumerate(zip(pixels, labels, strict=True))]
    cut = int(0.8 * n)
    class_names = sorted({w.label for w in items[:cut]})
    mean, std = statistics(items[:cut])
    return (to_dataset(items[:cut], class_names, mean, std),
            to_dataset(items[cut:], class_names, mean, std), _meta(cfg, class_names, mean, std))


def raw_features(dataset: Images) -> torch.Tensor:
    """The standardised pixels, flattened: `[N, C * S * S]`."""
    return dataset.x.flatten(1)


plugin = ModalityPlugin(
    name="image",
    data_config=ImageDataConfig,
    load_data=load_data,
    synthetic=synthetic,
    raw_features=raw_features,
    load_file=load_file,
    components={"patches": PatchTokenizer},
)
