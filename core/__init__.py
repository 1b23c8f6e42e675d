"""polyjepa: self-supervised latent-prediction pretraining for any modality."""

from polyjepa import encoders, maskers, objectives, predictors, regularizers  # noqa: F401
from polyjepa.encoders import Backbone, TransformerEncoder
from polyjepa.errors import CheckpointError, ConfigError, DataError, PolyjepaError, RegistryError
from polyjepa.hub import load_encoder
from polyjepa.objectives import BYOL, JEPA
from polyjepa.pooling import pool
from polyjepa.registry import ModalityPlugin, get_modality, list_components, list_modalities
from polyjepa.types import Batch, Masks, Tokens

__version__ = "0.1.0"

__all__ = [
    "BYOL", "JEPA", "Backbone", "Batch", "CheckpointError", "ConfigError", "DataError", "Masks",
    "ModalityPlugin", "PolyjepaError", "RegistryError", "Tokens", "TransformerEncoder",
    "get_modality", "list_components", "list_modalities", "load_encoder", "pool",
]
