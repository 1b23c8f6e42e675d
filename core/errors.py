"""Exceptions raised at polyjepa's boundaries; each message names the file or field at fault."""


class PolyjepaError(Exception):
    """Base class of every error polyjepa raises on purpose."""


class ConfigError(PolyjepaError, ValueError):
    """A recipe or override is invalid: unknown key, wrong type, impossible value."""


class DataError(PolyjepaError, ValueError):
    """Input data cannot be read or used; the message names the file (and row/column) at fault."""


class RegistryError(PolyjepaError, LookupError):
    """A modality or component name is unknown, duplicated, or its plugin failed to load."""


class CheckpointError(PolyjepaError):
    """A checkpoint is missing, corrupt, unsafe, or does not fit the model."""


class ContractError(PolyjepaError, TypeError):
    """A component (often a plugin's) returned something that breaks polyjepa's contract, e.g.
    tokens of another width than the encoder's."""


class MissingExtraError(PolyjepaError, ImportError):
    """An optional dependency a modality needs is not installed (the message names the extra)."""


class NonFiniteLossError(PolyjepaError, FloatingPointError):
    """Training produced a NaN/inf loss or gradient."""
