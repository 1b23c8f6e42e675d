"""Log-mel spectrograms in torch, batched on the training device.

`torch.stft` gives the power spectrogram, librosa builds the mel filterbank once (a buffer, so it
follows the module to the device), and `log(x + eps)` with eps = float32's machine epsilon
(BYOL-A's choice) keeps an all-silent clip finite. Standardisation uses scalar statistics of the
training set (BYOL-A's pre-normalisation; AudioMAE/A-JEPA normalise the same way).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyjepa.extras import require
from polyjepa.modalities.audio.readers import LogMelConfig

EPS = float(torch.finfo(torch.float32).eps)
MEL_SCALES = ("htk", "slaney")


class LogMel(nn.Module):
    """`wave [B, T]` -> log-mel `[B, 1, n_mels, frames]` (frames = 1 + T // hop_length).

    Args:
        sample_rate: Hz.
        n_mels, n_fft, win_length, hop_length, f_min, f_max: as in `LogMelConfig`.
        mel_scale: "htk" or "slaney" mel formula.
        mel_norm: None or "slaney" filter normalisation.
        mean, std: standardisation statistics of the log-mel values (0 and 1 leave them as is).
    """

    def __init__(self, sample_rate: int, n_mels: int = 64, n_fft: int = 1024,
                 win_length: int | None = None, hop_length: int = 160, f_min: float = 0.0,
                 f_max: float | None = None, mel_scale: str = "htk", mel_norm: str | None = None,
                 mean: float = 0.0, std: float = 1.0) -> None:
        super().__init__()
        win_length = win_length or n_fft
        f_max = f_max if f_max is not None else sample_rate / 2
        if mel_scale not in MEL_SCALES:
            raise ValueError(f"data.logmel.mel_scale: '{mel_scale}' is not htk or slaney")
        if mel_norm not in (None, "slaney"):
            raise ValueError(f"data.logmel.mel_norm: '{mel_norm}' is not null or slaney")
        if win_length > n_fft:
            raise ValueError(f"data.logmel.win_length={win_length} exceeds n_fft={n_fft}")
        if not 0 <= f_min < f_max <= sample_rate / 2:
            raise ValueError(f"data.logmel: need 0 <= f_min < f_max <= sample_rate / 2, got "
                             f"f_min={f_min}, f_max={f_max}, sample_rate={sample_rate}")
        if std <= 0:
            raise ValueError(f"log-mel std must be positive, got {std}")
        self.n_fft, self.win_length, self.hop_length = n_fft, win_length, hop_length
        self.n_mels = n_mels
        self.mean, self.std = float(mean), float(std)
        librosa = require("librosa", "audio", "the log-mel filterbank")
        fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=f_min,
                                 fmax=f_max, htk=mel_scale == "htk", norm=mel_norm)
        self.register_buffer("filterbank", torch.from_numpy(fb).float(), persistent=False)
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)

    @classmethod
    def from_config(cls, sample_rate: int, cfg: LogMelConfig, mean: float = 0.0,
                    std: float = 1.0) -> LogMel:
        return cls(sample_rate, cfg.n_mels, cfg.n_fft, cfg.win_length, cfg.hop_length, cfg.f_min,
                   cfg.f_max, cfg.mel_scale, cfg.mel_norm, mean, std)

    def num_frames(self, num_samples: int) -> int:
        """Frames of a clip of `num_samples` samples (centred STFT)."""
        return 1 + num_samples // self.hop_length

    def power_mel(self, wave: Tensor) -> Tensor:
        """Mel power spectrogram `[B, n_mels, frames]` of `wave [B, T]`, in float32."""
        with torch.autocast(wave.device.type, enabled=False):
            spec = torch.stft(wave.float(), self.n_fft, self.hop_length, self.win_length,
                              self.window, center=True, pad_mode="reflect", return_complex=True)
            power = spec.real.square() + spec.imag.square()  # [B, n_fft // 2 + 1, frames]
            return torch.matmul(self.filterbank, power)

    def forward(self, wave: Tensor) -> Tensor:
        lms = torch.log(self.power_mel(wave) + EPS)
        return ((lms - self.mean) / self.std).unsqueeze(1)  # [B, 1, n_mels, frames]

    def extra_repr(self) -> str:
        return (f"n_mels={self.n_mels}, n_fft={self.n_fft}, hop_length={self.hop_length}, "
                f"mean={self.mean:.4g}, std={self.std:.4g}")
