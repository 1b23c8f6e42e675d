"""polyjepa: self-supervised latent-prediction pretraining for any modality.

The names below are imported on first use (PEP 562), so `import polyjepa` and the command
line's `--help`, `--version`, `list` and `recipes` do not load torch or any plugin.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "BYOL": "polyjepa.objectives", "JEPA": "polyjepa.objectives",
    "Backbone": "polyjepa.encoders", "TransformerEncoder": "polyjepa.encoders",
    "Batch": "polyjepa.types", "Masks": "polyjepa.types", "Tokens": "polyjepa.types",
    "CheckpointError": "polyjepa.errors", "ConfigError": "polyjepa.errors",
    "DataError": "polyjepa.errors", "PolyjepaError": "polyjepa.errors",
    "RegistryError": "polyjepa.errors",
    "ModalityPlugin": "polyjepa.registry", "get_modality": "polyjepa.registry",
    "list_components": "polyjepa.registry", "list_modalities": "polyjepa.registry",
    "load_encoder": "polyjepa.hub", "pool": "polyjepa.pooling",
    "embed": "polyjepa.embedding", "Embeddings": "polyjepa.embedding",
    "batches": "polyjepa.embedding", "EncoderRun": "polyjepa.embedding",
    "Featurizer": "polyjepa.featurizer",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # for type checkers and IDEs: the same names, eagerly
    from polyjepa.embedding import Embeddings, EncoderRun, batches, embed  # noqa: F401
    from polyjepa.encoders import Backbone, TransformerEncoder  # noqa: F401
    from polyjepa.errors import CheckpointError, ConfigError, DataError, PolyjepaError, RegistryError  # noqa: F401
    from polyjepa.featurizer import Featurizer  # noqa: F401
    from polyjepa.hub import load_encoder  # noqa: F401
    from polyjepa.objectives import BYOL, JEPA  # noqa: F401
    from polyjepa.pooling import pool  # noqa: F401
    from polyjepa.registry import ModalityPlugin, get_modality, list_components, list_modalities  # noqa: F401
    from polyjepa.types import Batch, Masks, Tokens  # noqa: F401


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:  # a submodule, as `polyjepa.maskers` was after `import polyjepa` before it was lazy
        try:
            value = importlib.import_module(f"polyjepa.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"polyjepa.{name}":
                raise
            raise AttributeError(f"module 'polyjepa' has no attribute '{name}'") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
