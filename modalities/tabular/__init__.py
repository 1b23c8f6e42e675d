"""Tabular modality: CSV/Parquet/sklearn readers, one token per feature, T-JEPA."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from sklearn.model_selection import train_test_split

from polyjepa.modalities.tabular.augment import FeatureCorruption
from polyjepa.modalities.tabular.readers import (
    KnownColumns,
    TabularDataConfig,
    TabularDataset,
    TabularEncoder,
    TabularTensors,
    load_splits,
    read_frame,
    synthetic_frame,
)
from polyjepa.modalities.tabular.tokenizer import FeatureTokenizer
from polyjepa.paths import expand_pattern
from polyjepa.registry import ModalityPlugin


def _meta(encoder: TabularEncoder) -> dict:
    """The encoder's meta plus `num_tokens` (one per feature, for maskers) and the fitted
    preprocessing (plain values, saved with the run so new files are encoded the same way)."""
    meta = encoder.meta
    return {**meta, "num_tokens": len(meta["feature_names"]), "preprocessing": asdict(encoder)}


def load_data(cfg: TabularDataConfig, root: Path | None) -> tuple[TabularDataset, TabularDataset, dict]:
    """`(train, test, meta)` read as `cfg` says, preprocessing fitted on the training rows."""
    train, test, encoder = load_splits(cfg, root)
    return train, test, _meta(encoder)


def load_file(cfg: TabularDataConfig, path: str, root: Path | None, meta: dict) -> TabularDataset:
    """Read `path` (the training table's columns, the label column optional) with the run's
    fitted preprocessing; a glob pattern reads every table it matches, in name order."""
    encoder = TabularEncoder(**meta["preprocessing"])
    known = KnownColumns(encoder.target, encoder.columns)
    parts = [encoder.transform(read_frame(p, cfg, root, "data", known), p)
             for p in expand_pattern(path, root, "data")]
    tensors = TabularTensors(num=torch.cat([t.num for t in parts]),
                             cat=torch.cat([t.cat for t in parts]),
                             y=torch.cat([t.y for t in parts]))
    return TabularDataset(tensors, meta["cardinalities"])


def synthetic(n: int = 2000, seed: int = 0) -> tuple[TabularDataset, TabularDataset, dict]:
    """The built-in synthetic table (see `synthetic_frame`), split 80/20."""
    frame = synthetic_frame(n, seed)
    cfg = TabularDataConfig(path="synthetic", test_path=None, target="label")
    train, test = train_test_split(frame, test_size=0.2, random_state=seed,
                                   stratify=frame["label"])
    encoder = TabularEncoder.fit(train, cfg, "synthetic table")
    cards = encoder.meta["cardinalities"]
    return (
        TabularDataset(encoder.transform(train, "synthetic table"), cards),
        TabularDataset(encoder.transform(test, "synthetic table"), cards),
        _meta(encoder),
    )


def raw_features(dataset: TabularDataset) -> torch.Tensor:
    return dataset.raw_features()


plugin = ModalityPlugin(
    name="tabular",
    data_config=TabularDataConfig,
    load_data=load_data,
    synthetic=synthetic,
    raw_features=raw_features,
    load_file=load_file,
    components={"feature": FeatureTokenizer, "corrupt": FeatureCorruption},
)
