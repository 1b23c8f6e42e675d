"""Optional dependencies: each modality's decoders come with an extra (`polyjepa[audio]`,
`[video]`, `[pointcloud]`, `[all]`) and are imported on first use, so a tabular run imports
neither librosa nor PyAV, and a missing one is a one-line error naming the install."""

from __future__ import annotations

import importlib
from types import ModuleType

from polyjepa.errors import MissingExtraError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import `module`, or fail naming the extra that installs it.

    Raises:
        MissingExtraError: e.g. "reading audio files needs soundfile: pip install
            'polyjepa[audio]'".
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(f"{purpose} needs {module.split('.')[0]}, which is not installed "
                                f"({exc}): pip install 'polyjepa[{extra}]'") from None
