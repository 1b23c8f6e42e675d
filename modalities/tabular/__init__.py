"""Tabular modality: CSV/Parquet/sklearn readers, one token per feature, T-JEPA."""

from __future__ import annotations

from pathlib import Path

import torch
from sklearn.model_selection import train_test_split

from polyjepa.modalities.tabular.readers import (
    TabularDataConfig,
    TabularDataset,
    TabularEncoder,
    load_splits,
    synthetic_frame,
)
from polyjepa.modalities.tabular.tokenizer import FeatureTokenizer
from polyjepa.registry import ModalityPlugin


def _with_token_count(splits: tuple[TabularDataset, TabularDataset, dict]):
    train, test, meta = splits
    return train, test, {**meta, "num_tokens": len(meta["feature_names"])}


def load_data(cfg: TabularDataConfig, root: Path | None):
    """`(train, test, meta)`; `meta` adds `num_tokens` (one token per feature) for maskers."""
    return _with_token_count(load_splits(cfg, root))


def synthetic(n: int = 2000, seed: int = 0):
    """The built-in synthetic table (see `synthetic_frame`), split 80/20."""
    frame = synthetic_frame(n, seed)
    cfg = TabularDataConfig(path="synthetic", test_path=None, target="label")
    train, test = train_test_split(frame, test_size=0.2, random_state=seed,
                                   stratify=frame["label"])
    encoder = TabularEncoder.fit(train, cfg, "synthetic table")
    cards = encoder.meta["cardinalities"]
    return _with_token_count((
        TabularDataset(encoder.transform(train, "synthetic table"), cards),
        TabularDataset(encoder.transform(test, "synthetic table"), cards),
        encoder.meta,
    ))


def raw_features(dataset: TabularDataset) -> torch.Tensor:
    return dataset.raw_features()


plugin = ModalityPlugin(
    name="tabular",
    data_config=TabularDataConfig,
    load_data=load_data,
    synthetic=synthetic,
    raw_features=raw_features,
    components={"feature": FeatureTokenizer},
)
