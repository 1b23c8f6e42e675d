"""Embeddings of a dataset under a trained encoder: `polyjepa.embed` and `polyjepa embed`.

    >>> import polyjepa
    >>> out = polyjepa.embed("runs/adult", "my_rows.csv")    # any file the run's modality reads
    >>> out.x.shape, out.labels[:3], out.ids[:3]             # [N, F], [N], [N]
    >>> out.save("my_rows.npz")                              # x, labels, ids, classes

The data is read with the preprocessing fitted on the run's training data (standardisation,
vocabularies, sample rate, ...), so rows, clips or clouds come out as the encoder saw them.
"""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polyjepa.errors import ConfigError, PolyjepaError
from polyjepa.paths import write_atomic

SUFFIXES = (".npy", ".npz")


@dataclass
class Embeddings:
    """Pooled embeddings of a dataset, with what a user needs to plot or join them.

    Attributes:
        x: `[N, F]` float32 embeddings, in the data's order.
        labels: `[N]` class indices: into `classes` for the classes seen in training (a reader may
            number other labels after them); -1 where a sample has no label. For a regression
            run, the float targets (NaN where a sample has none).
        ids: `[N]` sample ids: file paths where samples are files, else their positions.
        classes: class names by index (empty when the run's data had none).
    """

    x: np.ndarray
    labels: np.ndarray
    ids: list[str]
    classes: list[str]

    def label_names(self) -> list[str]:
        """`[N]` class names ("" where a sample has no known label)."""
        return [self.classes[k] if 0 <= k < len(self.classes) else "" for k in self.labels]

    def save(self, path: str | Path) -> list[Path]:
        """Write `.npz` (arrays `x`, `labels`, `ids`, `classes`) or `.npy` (`x`) with a sidecar
        `<name>.csv` (`row,id,label,class`); each file is written whole or not at all.

        Returns:
            The files written.

        Raises:
            ConfigError: another suffix, or `path` is an existing folder.
        """
        path = Path(path)
        if path.suffix not in SUFFIXES:
            raise ConfigError(f"--out {path}: write embeddings to a .npy file (plus a .csv of ids "
                              "and labels beside it) or an .npz file")
        if path.is_dir():
            raise ConfigError(f"--out {path} is a folder; name a file such as {path / 'x.npz'}")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".npz":
            buffer = io.BytesIO()
            np.savez(buffer, x=self.x, labels=self.labels, ids=np.asarray(self.ids, dtype=str),
                     classes=np.asarray(self.classes, dtype=str))
            write_atomic(path, buffer.getvalue())
            return [path]
        buffer = io.BytesIO()
        np.save(buffer, self.x)
        text = io.StringIO()
        rows = csv.writer(text, lineterminator="\n")
        rows.writerow(["row", "id", "label", "class"])
        rows.writerows(zip(range(len(self.ids)), self.ids, self.labels.tolist(), self.label_names(),
                           strict=True))
        sidecar = path.with_suffix(".csv")
        write_atomic(sidecar, text.getvalue().encode())
        write_atomic(path, buffer.getvalue())
        return [path, sidecar]


@dataclass
class EncoderRun:
    """A run's exported encoder, loaded once, with what reads data as the run did: the recipe
    (its `data.*` settings, overridable) and the preprocessing fitted on its training data."""

    recipe: Any  # polyjepa.build.Recipe
    backbone: Any  # polyjepa.encoders.Backbone, in eval mode on `device`
    meta: dict
    device: Any  # torch.device

    @classmethod
    def load(cls, run: str | Path, device: str = "auto",
             overrides: list[str] | None = None) -> EncoderRun:
        """Load a run directory or its `encoder.pt`.

        Args:
            overrides: `data.KEY=VALUE` settings that say how to read data (e.g.
                `data.label_regex=null` for a flat folder, `data.delimiter=;`); the
                preprocessing stays the run's.

        Raises:
            ConfigError: an override outside `data.*` (it would change what was trained).
        """
        from polyjepa.build import recipe_from_dict
        from polyjepa.hub import encoder_from_blob, read_export
        from polyjepa.train import resolve_device

        overrides = list(overrides or [])
        for item in overrides:
            if not item.startswith("data."):
                raise ConfigError(f"embed: {item.split('=')[0]} is not a data.* key; embed only "
                                  "takes settings that say how to read the data (data.KEY=VALUE)")
        blob, file = read_export(run)
        recipe = recipe_from_dict(blob["config"], str(file), overrides)
        dev = resolve_device(device)
        return cls(recipe, encoder_from_blob(blob, file, device=str(dev)), blob["meta"], dev)

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.meta.get("class_names", [])]

    def width(self, pooling: str | None = None) -> int:
        """F, the width of the pooled embeddings."""
        from polyjepa.pooling import pooled_dim

        return pooled_dim(self.backbone, pooling or self.recipe.cfg.eval.pooling,
                          {**self.meta, **self.backbone.layout})

    def dataset(self, data: Any) -> Any:
        """`data` read by the modality's `load_file` with the run's preprocessing: a path (as
        `data.path`), a DataFrame, an array, or a list of paths (read one by one, in order).

        Raises:
            DataError: data the modality cannot read; in-memory data is named as such, never
                by the temporary file it passes through.
        """
        from torch.utils.data import ConcatDataset

        from polyjepa.paths import data_root

        if isinstance(data, (list, tuple)) and all(isinstance(d, (str, Path)) for d in data):
            if not data:
                raise PolyjepaError("embed: an empty list of paths")
            return ConcatDataset([self.dataset(d) for d in data])
        with _as_path(data) as path:
            try:
                return self.recipe.plugin.load_file(self.recipe.cfg.data, path,
                                                    data_root(self.recipe.cfg.data_root),
                                                    self.meta)
            except PolyjepaError as exc:
                if isinstance(data, (str, Path)):
                    raise
                what = f"the {type(data).__name__} given to embed"
                raise type(exc)(str(exc).replace(path, what)) from None

    def batches(self, data: Any, batch_size: int | None = None) -> Iterator[Any]:
        """`Batch`es of `data` (see `dataset`) on the run's device, in order: `batch.x` is what
        the encoder takes (`load_encoder(run)(batch.x)` -> `[B, R + N, D]`), `batch.y` the
        labels (-1 / NaN where none)."""
        from torch.utils.data import DataLoader

        from polyjepa.data import eval_collate

        loader = DataLoader(self.dataset(data), batch_size=batch_size or
                            self.recipe.cfg.eval.batch_size, shuffle=False,
                            collate_fn=eval_collate)
        for batch in loader:
            yield batch.to(self.device)

    def embed(self, data: Any, pooling: str | None = None,
              batch_size: int | None = None) -> Embeddings:
        """Pooled embeddings of `data` (see `dataset`), with ids and labels."""
        from torch.utils.data import ConcatDataset

        from polyjepa.data import sample_ids
        from polyjepa.probes import embed as embed_dataset

        dataset = self.dataset(data)
        parts = dataset.datasets if isinstance(dataset, ConcatDataset) else [dataset]
        paths = isinstance(data, (str, Path, list, tuple))  # in memory: positions, not a temp file
        ids = [i for part in parts for i in sample_ids(part)] if paths else None
        x, labels = embed_dataset(self.backbone, dataset,
                                  pooling or self.recipe.cfg.eval.pooling,
                                  batch_size or self.recipe.cfg.eval.batch_size, self.device)
        return Embeddings(x, labels, ids or [str(i) for i in range(len(labels))], self.classes)


def embed(run: str | Path, data: Any, pooling: str | None = None, device: str = "auto",
          batch_size: int | None = None, overrides: list[str] | None = None) -> Embeddings:
    """Embed `data` with a run's exported encoder (a run directory or its `encoder.pt`).

    Labels are optional: rows without the label column, a flat folder of files, an array of
    series come out with label -1.

    Args:
        data: a file or folder the run's modality reads (as `data.path`: a CSV table, a folder
            of wavs, a `.ts` file, a glob pattern, ...), a list of such paths, or data in memory:
            a pandas DataFrame (the training table's columns, the label column optional) or a
            numpy array (a table's feature columns in the training table's order `[N, F]`; time
            series `[N, C, T]` or `[N, T]`; whatever the modality reads from `.npy`).
        pooling: `eval.pooling` of the run's recipe unless given.
        batch_size: `eval.batch_size` of the run's recipe unless given.
        overrides: `data.KEY=VALUE` settings that say how to read `data` (`EncoderRun.load`).

    Raises:
        ConfigError: an override outside `data.*` (it would change what was trained).
        DataError: data the modality cannot read; in-memory data is named as such, never by the
            temporary file it passes through.
    """
    return EncoderRun.load(run, device, overrides).embed(data, pooling, batch_size)


def batches(run: str | Path, data: Any, batch_size: int | None = None, device: str = "auto",
            overrides: list[str] | None = None) -> Iterator[Any]:
    """Your data as the batches `load_encoder(run)` takes (`EncoderRun.batches`):

        >>> encoder = polyjepa.load_encoder("runs/rows")
        >>> for batch in polyjepa.batches("runs/rows", dataframe):
        ...     latents = encoder(batch.x)                   # [B, R + N, D]
    """
    return EncoderRun.load(run, device, overrides).batches(data, batch_size)


@contextmanager
def _as_path(data: Any) -> Iterator[str]:
    """A path to read `data` from: itself, or a temporary file holding an array or a table."""
    if isinstance(data, (str, Path)):
        yield str(data)
        return
    import pandas as pd

    if not isinstance(data, (np.ndarray, pd.DataFrame)):
        raise PolyjepaError(f"embed: data must be a path, a list of paths, a pandas DataFrame "
                            f"or a numpy array, got {type(data).__name__}")
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(data, np.ndarray):
            path = Path(tmp) / "array.npy"
            np.save(path, data)
        else:
            path = Path(tmp) / "table.csv"
            data.to_csv(path, index=False)
        yield str(path)
