"""Tests of the log-mel frontend: parity with librosa, shapes, batching, standardisation, autocast."""

from __future__ import annotations

from pathlib import Path

import librosa
import numpy as np
import pytest
import torch
from _helpers import single_thread  # noqa: F401  (autouse fixture)

from polyjepa.modalities.audio import logmel_frontend
from polyjepa.modalities.audio.frontend import EPS, LogMel
from polyjepa.modalities.audio.readers import LogMelConfig, read_audio
from polyjepa.modalities.audio.synthetic import synthetic_waves

SR = 16000
FSDD_FILES = ("0_george_0.wav", "3_jackson_17.wav", "7_theo_42.wav", "9_yweweler_5.wav")

# (mel_scale, mel_norm, n_fft, win_length, hop_length, n_mels, f_min, f_max)
SETTINGS = [
    pytest.param("slaney", "slaney", 1024, None, 160, 64, 60.0, 7800.0, id="slaney-slaney"),
    pytest.param("htk", None, 1024, None, 160, 64, 60.0, 7800.0, id="htk-none"),
    pytest.param("htk", None, 1024, 400, 160, 80, 0.0, None, id="htk-win400-fullband"),
    pytest.param("slaney", "slaney", 512, 320, 100, 40, 50.0, 6000.0, id="slaney-win320"),
]


def reference(y: np.ndarray, mel_scale, mel_norm, n_fft, win_length, hop, n_mels, f_min, f_max):
    """librosa's mel power spectrogram, in float64."""
    return librosa.feature.melspectrogram(
        y=y.astype(np.float64), sr=SR, n_fft=n_fft, hop_length=hop, win_length=win_length,
        window="hann", center=True, pad_mode="reflect", power=2.0, n_mels=n_mels, fmin=f_min,
        fmax=f_max if f_max is not None else SR / 2, htk=mel_scale == "htk", norm=mel_norm)


def check_parity(waves: list[np.ndarray], setting: tuple) -> None:
    mel_scale, mel_norm, n_fft, win_length, hop, n_mels, f_min, f_max = setting
    frontend = LogMel(SR, n_mels, n_fft, win_length, hop, f_min, f_max, mel_scale, mel_norm)
    for y in waves:
        ours = frontend.power_mel(torch.from_numpy(y)[None])[0]
        assert ours.dtype == torch.float32
        ours = ours.double().numpy()
        ref = reference(y, *setting)
        assert ours.shape == ref.shape == (n_mels, 1 + len(y) // hop)
        big = ref > 1e-6 * ref.max()
        assert big.mean() > 0.5
        np.testing.assert_allclose(ours[big], ref[big], rtol=1e-4)
        # float32 STFT vs float64: the log of the quietest bins moves by < 1e-3 typically;
        # 2e-3 leaves room for other FFT back-ends
        log_ours = frontend(torch.from_numpy(y)[None])[0, 0].double().numpy()
        assert np.abs(log_ours - np.log(ref + EPS)).max() < 2e-3


@pytest.mark.parametrize("setting", [p.values for p in SETTINGS], ids=[p.id for p in SETTINGS])
def test_parity_with_librosa_on_fsdd(shared_data: Path, setting):
    folder = shared_data / "audio/fsdd/recordings"
    waves = [read_audio(folder / name, SR) for name in FSDD_FILES]
    assert all(len(w) > 2000 for w in waves)
    check_parity(waves, setting)


@pytest.mark.parametrize("setting", [p.values for p in SETTINGS], ids=[p.id for p in SETTINGS])
def test_parity_with_librosa_on_synthetic_clips(setting):
    waves, _ = synthetic_waves(5, SR, seconds=0.6, seed=3)
    check_parity([w.numpy() for w in waves], setting)


def test_frames_follow_the_centred_stft():
    frontend = LogMel(SR, n_mels=32, n_fft=512, hop_length=160)
    for length in (1000, 15200, 15999, 16000, 16160):
        out = frontend(torch.randn(2, length))
        assert out.shape == (2, 1, 32, 1 + length // 160)
        assert frontend.num_frames(length) == out.shape[-1]


def test_batched_equals_per_clip():
    waves, _ = synthetic_waves(6, SR, seconds=0.95, seed=1)
    batch = torch.stack(waves)
    frontend = LogMel(SR, 64, 1024, None, 160, 60.0, 7800.0, "slaney", "slaney")
    together = frontend(batch)
    alone = torch.cat([frontend(w[None]) for w in waves])
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-5)
    assert not torch.allclose(together[0], together[1])


def test_standardisation_uses_mean_and_std():
    wave = torch.stack(synthetic_waves(2, SR, seconds=0.5, seed=2)[0])
    plain = LogMel(SR, 64, 1024, None, 160, 60.0, 7800.0)
    scaled = LogMel(SR, 64, 1024, None, 160, 60.0, 7800.0, mean=-6.5, std=4.25)
    torch.testing.assert_close(scaled(wave), (plain(wave) + 6.5) / 4.25)
    torch.testing.assert_close(plain(wave), torch.log(plain.power_mel(wave) + EPS).unsqueeze(1))
    with pytest.raises(ValueError, match="std"):
        LogMel(SR, std=0.0)


def test_from_config_and_factory_match_the_constructor():
    cfg = LogMelConfig(n_mels=40, n_fft=512, win_length=400, hop_length=128, f_min=30.0,
                       f_max=7000.0, mel_scale="slaney", mel_norm="slaney")
    wave = torch.stack(synthetic_waves(2, SR, seconds=0.5, seed=4)[0])
    direct = LogMel(SR, 40, 512, 400, 128, 30.0, 7000.0, "slaney", "slaney", mean=-3.0, std=2.0)
    built = LogMel.from_config(SR, cfg, mean=-3.0, std=2.0)
    factory = logmel_frontend(SR, vars(cfg), -3.0, 2.0)
    for other in (built, factory):
        assert torch.equal(other.filterbank, direct.filterbank)
        torch.testing.assert_close(other(wave), direct(wave), rtol=0, atol=0)


def test_autocast_bfloat16_returns_float32_equal_to_fp32():
    wave = torch.stack(synthetic_waves(3, SR, seconds=0.95, seed=5)[0])
    frontend = LogMel(SR, 64, 1024, None, 160, 60.0, 7800.0, mean=-5.0, std=3.0)
    expected = frontend(wave)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = frontend(wave)
        power = frontend.power_mel(wave.bfloat16())
    assert got.dtype == torch.float32 and power.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kwargs,key", [
    ({"f_max": 9000.0}, "f_max"),
    ({"f_min": 8000.0, "f_max": None}, "f_min"),
    ({"f_min": -1.0}, "f_min"),
    ({"n_fft": 512, "win_length": 1024}, "win_length"),
    ({"mel_scale": "bark"}, "mel_scale"),
    ({"mel_norm": "area"}, "mel_norm"),
])
def test_invalid_settings_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        LogMel(SR, **kwargs)
