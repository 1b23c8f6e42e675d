"""Import the authors' BYOL-A checkpoints (nttcslab/byol-a) as polyjepa encoders.

The published files (`AudioNTT2020-BYOLA-64x96d512.pth`, `...d1024.pth`, `...d2048.pth`, and v2's
`AudioNTT2022-BYOLA-64x96d2048.pth`) hold a plain `state_dict` of the authors' `AudioNTT2020` /
`AudioNTT2022` (`features.*`, `fc.*`), sometimes nested under `state_dict` / `model` or behind a
prefix. Our encoders keep that layout, so the weights load unchanged; the width `d`, the number of
conv blocks (v1: 3, v2: 2) and the mel bins are read from the tensors' shapes.

The imported encoder's frontend is BYOL-A's log-mel (16 kHz, 64 mels, 1024/160, 60-7800 Hz,
Slaney). Its standardisation statistics are 0 and 1 (the authors normalise with statistics of the
downstream data): `polyjepa import FILE --out DIR data.path=...` computes them on your data.
"""

from __future__ import annotations

import re
from pathlib import Path

from polyjepa.config import find_recipe, read_recipe, to_dict, validate
from polyjepa.modalities.audio.readers import AudioDataConfig

KEY = re.compile(r"(?:^|\.)((?:features|fc)\.\d+\.[a-z_]+)$")


def _weights(loaded: object) -> dict | None:
    """The `features.*` / `fc.*` tensors of a loaded file, prefixes stripped, or None."""
    if not isinstance(loaded, dict):
        return None
    state = loaded
    for wrapper in ("state_dict", "model"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    weights = {}
    for key, value in state.items():
        match = KEY.search(str(key))
        if match and hasattr(value, "shape"):
            weights[match.group(1)] = value
    if "features.0.weight" not in weights or "fc.0.weight" not in weights:
        return None
    return weights


def import_byol_a(loaded: object, path: Path) -> tuple[dict, dict, dict] | None:
    """`(recipe dict, meta, backbone state_dict)` for an official BYOL-A checkpoint, else None."""
    weights = _weights(loaded)
    if weights is None:
        return None
    channels = weights["features.0.weight"].shape[0]
    num_blocks = sum(1 for k in weights if k.startswith("features.") and k.endswith(".weight")
                     and weights[k].dim() == 4)
    fc_in, fc_out = weights["fc.0.weight"].shape[1], weights["fc.0.weight"].shape[0]
    n_mels = fc_in // channels * 2**num_blocks
    v2 = num_blocks == 2
    raw = read_recipe(find_recipe("byol_a_v2" if v2 else "byol_a"))
    encoder = {"name": "audio.audiontt2022" if v2 else "audio.audiontt2020",
               "d": fc_in + fc_out if v2 else fc_out, "channels": channels, "dropout": 0.3}
    if not v2:
        encoder["num_blocks"] = num_blocks
    raw["model"]["encoder"] = encoder
    raw["data"]["logmel"]["n_mels"] = n_mels
    cfg = validate(raw, f"{path} (imported BYOL-A)", AudioDataConfig)
    from polyjepa.modalities.audio import audio_meta

    meta = audio_meta(cfg.data, class_names=[], mean=0.0, std=1.0)
    state = {f"encoder.{k}": v for k, v in weights.items()}
    return to_dict(cfg), meta, state
