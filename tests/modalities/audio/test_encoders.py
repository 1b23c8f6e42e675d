"""Audio encoders (spectrogram patches, AudioNTT2020/2022) and the import of the authors' BYOL-A
checkpoints, checked against an independent re-implementation of the authors' models."""

from __future__ import annotations

import copy
from pathlib import Path

import librosa
import numpy as np
import pytest
import torch
from _helpers import single_thread  # noqa: F401  (autouse fixture)
from torch import nn

import polyjepa
from polyjepa.cli import main as cli_main
from polyjepa.errors import CheckpointError
from polyjepa.hub import load_encoder
from polyjepa.modalities.audio.encoders import AudioNTT2020, AudioNTT2022, SpectrogramPatches
from polyjepa.modalities.audio.frontend import LogMel


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- SpectrogramPatches


def test_spectrogram_patches_shapes_and_layout():
    tok = SpectrogramPatches(n_mels=128, num_frames=100, dim=32, patch=16)
    assert tok.grid == (8, 6) and tok.layout == {"grid": (8, 6), "num_tokens": 48}
    out = tok(torch.randn(2, 1, 128, 100, generator=gen()))
    assert out.x.shape == (2, 48, 32) and out.pos.shape == (48, 32)
    with pytest.raises(ValueError, match="patch"):
        SpectrogramPatches(n_mels=8, num_frames=100, dim=32, patch=16)


def test_spectrogram_patches_are_frequency_major():
    """Token f * T' + t reads exactly input rows 16f..16f+15 and columns 16t..16t+15."""
    tok = SpectrogramPatches(n_mels=128, num_frames=100, dim=32, patch=16)
    x = torch.randn(1, 1, 128, 100, generator=gen(1))
    base = tok(x).x
    for f, t in [(0, 0), (0, 5), (3, 2), (7, 0), (7, 5)]:
        y = x.clone()
        y[..., f * 16:(f + 1) * 16, t * 16:(t + 1) * 16] += torch.randn(16, 16, generator=gen(f + t))
        changed = (tok(y).x - base).abs().amax(-1)[0] > 1e-6  # [48]
        assert changed.nonzero().flatten().tolist() == [f * 6 + t]
    # leftover frames beyond the last whole patch (96..99) are ignored
    y = x.clone()
    y[..., 96:] = 100.0
    assert torch.equal(tok(y).x, base)


def test_spectrogram_patches_positions_are_2d_sincos_on_the_same_grid():
    tok = SpectrogramPatches(n_mels=128, num_frames=100, dim=32, patch=16)
    pos = tok.pos.view(8, 6, 32)  # frequency-major, as the tokens
    q = 32 // 4  # [sin(f), sin(t), cos(f), cos(t)] blocks of q dims
    f_dims = torch.cat([torch.arange(0, q), torch.arange(2 * q, 3 * q)])
    t_dims = torch.cat([torch.arange(q, 2 * q), torch.arange(3 * q, 4 * q)])
    # the frequency half depends only on the row f, the time half only on the column t
    assert torch.allclose(pos[..., f_dims], pos[:, :1, f_dims].expand(8, 6, -1))
    assert torch.allclose(pos[..., t_dims], pos[:1, :, t_dims].expand(8, 6, -1))
    assert torch.allclose(pos[:, :, 0], torch.sin(torch.arange(8.0))[:, None].expand(8, 6))
    assert torch.allclose(pos[:, :, q], torch.sin(torch.arange(6.0))[None, :].expand(8, 6))
    assert pos.abs().max() <= 1 + 1e-6
    flat = tok.pos
    assert torch.cdist(flat, flat).add(torch.eye(48) * 1e9).min() > 1e-3  # distinct rows
    assert "pos" not in tok.state_dict()  # fixed, rebuilt from the grid


# ----------------------------------------------------------------------------- AudioNTT


def test_audiontt2020_shapes():
    enc = AudioNTT2020(n_mels=64, d=32).eval()
    assert enc.dim == 32 and enc.reads_features and enc.conv_dim == 512
    assert enc(torch.randn(2, 1, 64, 96, generator=gen())).shape == (2, 12, 32)
    assert enc(torch.randn(2, 1, 64, 40, generator=gen())).shape == (2, 5, 32)
    with pytest.raises(ValueError, match="divisible"):
        AudioNTT2020(n_mels=60)
    with pytest.raises(ValueError):
        enc(torch.randn(2, 1, 64, 96), keep=torch.zeros(2, 3, dtype=torch.long))


def test_audiontt2022_concatenates_conv_features_and_mlp():
    enc = AudioNTT2022(n_mels=64, d=1024 + 48).eval()
    assert enc.dim == 1072 and enc.reads_features and enc.conv_dim == 1024
    x = torch.randn(2, 1, 64, 96, generator=gen(2))
    out = enc(x)
    assert out.shape == (2, 24, 1072)
    frames = enc.frames(x)
    assert torch.equal(out[..., :1024], frames)
    torch.testing.assert_close(out[..., 1024:], enc.fc(frames))
    with pytest.raises(ValueError, match="exceed"):
        AudioNTT2022(n_mels=64, d=1024)


# ----------------------------------------------------------------------------- the authors' models


def conv_block(in_ch: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, 64, 3, stride=1, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(2, stride=2)]


class OfficialAudioNTT2020(nn.Module):
    """nttcslab/byol-a `byol_a/models.py` AudioNTT2020 (pooled), as published."""

    def __init__(self, n_mels: int = 64, d: int = 512):
        super().__init__()
        self.features = nn.Sequential(*conv_block(1), *conv_block(64), *conv_block(64))
        self.fc = nn.Sequential(nn.Linear(64 * (n_mels // (2**3)), d), nn.ReLU(), nn.Dropout(p=0.3),
                                nn.Linear(d, d), nn.ReLU())

    def forward(self, x):
        x = self.features(x)  # (batch, ch, mel, time)
        x = x.permute(0, 3, 2, 1)  # (batch, time, mel, ch)
        B, T, D, C = x.shape
        x = x.reshape((B, T, C * D))  # (batch, time, mel*ch)
        x = self.fc(x)
        (x1, _) = torch.max(x, dim=1)
        x2 = torch.mean(x, dim=1)
        return x1 + x2


class OfficialAudioNTT2022(nn.Module):
    """nttcslab/byol-a `v2/byol_a2/models.py` AudioNTT2022 (d=3072, mean+max pooled)."""

    def __init__(self, n_mels: int = 64, d: int = 3072, mlp_hidden_d: int = 2048):
        super().__init__()
        self.features = nn.Sequential(*conv_block(1), *conv_block(64))
        conv_d = 64 * (n_mels // 4)
        self.fc = nn.Sequential(nn.Linear(conv_d, mlp_hidden_d), nn.ReLU(), nn.Dropout(p=0.3),
                                nn.Linear(mlp_hidden_d, d - conv_d), nn.ReLU())

    def forward(self, x):
        x = self.features(x)
        x = x.permute(0, 3, 2, 1)
        B, T, D, C = x.shape
        x = x.reshape((B, T, C * D))
        x_fc = self.fc(x)
        x = torch.hstack([x.transpose(1, 2), x_fc.transpose(1, 2)]).transpose(1, 2)
        (x1, _) = torch.max(x, dim=1)
        x2 = torch.mean(x, dim=1)
        return x1 + x2


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Random weights and random BatchNorm statistics (so eval-mode BatchNorm matters)."""
    torch.manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.normal_(module.weight, std=(2 / module.weight[0].numel()) ** 0.5)
            nn.init.normal_(module.bias, std=0.1)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.normal_(module.bias, std=0.2)
            module.running_mean.normal_(0, 0.3)
            module.running_var.uniform_(0.5, 2.0)
            module.num_batches_tracked.fill_(1234)
    return model.eval()


def official_file(directory: Path, model: nn.Module, name: str, nest: bool = False) -> Path:
    path = directory / name
    state = model.state_dict()
    if nest:  # e.g. a Lightning checkpoint of a module holding the encoder as `model`
        state = {"state_dict": {f"model.{k}": v for k, v in state.items()}}
    torch.save(state, path)
    return path


def random_lms(b: int = 4, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 1, 64, 96, generator=gen(seed))


@pytest.fixture(scope="module")
def v1_512(tmp_path_factory):
    model = randomise(OfficialAudioNTT2020(d=512), seed=1)
    directory = tmp_path_factory.mktemp("byola")
    return model, official_file(directory, model, "AudioNTT2020-BYOLA-64x96d512.pth")


def embed(backbone, lms: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return polyjepa.pool(backbone.encode(lms), "mean_plus_max")


@pytest.mark.parametrize("source", [None, "byol_a_official"])
def test_official_v1_checkpoint_imports_exactly(v1_512, source):
    model, path = v1_512
    assert len(model.state_dict()) == 25
    backbone = load_encoder(path, source=source)
    assert not backbone.training and backbone.dim == 512
    lms = random_lms()
    with torch.no_grad():
        expected = model(lms)
    assert expected.shape == (4, 512)
    # 1e-4: a loaded encoder runs in the reference's layout, but the trainer's (train.channels_last)
    # sums in another order (AMX CPUs differ by ~1e-5); a wrong weight mapping differs by far more
    torch.testing.assert_close(embed(backbone, lms), expected, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # BatchNorm's running statistics matter: train mode differs
        assert not torch.allclose(copy.deepcopy(model).train()(lms), expected, atol=1e-3)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_conv_blocks_pool_before_relu_bit_for_bit_as_the_papers_order(layout):
    """Our conv blocks max-pool before ReLU (ReLU on a 4x smaller tensor): in train mode (batch
    statistics), the output and every gradient, the input's included, equal the authors'
    conv-BN-ReLU-pool order exactly, in both memory layouts; a block that pooled before
    BatchNorm, or anything else that is not an identity, would differ."""
    ours = AudioNTT2020(n_mels=64, d=32).features
    theirs = nn.Sequential(*conv_block(1), *conv_block(64), *conv_block(64))
    theirs.load_state_dict(ours.state_dict())
    x = random_lms(b=6, seed=7).contiguous(memory_format=layout)
    ours, theirs = ours.to(memory_format=layout), theirs.to(memory_format=layout)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ours(xa), theirs(xb)
    assert ya.shape == (6, 64, 8, 12) and torch.equal(ya, yb)
    grad = torch.randn(ya.shape, generator=gen(8))
    ya.backward(grad)
    yb.backward(grad)
    assert torch.equal(xa.grad, xb.grad) and xa.grad.abs().sum() > 0
    for p, q in zip(ours.parameters(), theirs.parameters(), strict=True):
        assert torch.equal(p.grad, q.grad)


@pytest.mark.parametrize("nest", [False, True])
def test_official_v1_d1024_and_nested_checkpoints(tmp_path, nest):
    model = randomise(OfficialAudioNTT2020(d=1024), seed=2)
    path = official_file(tmp_path, model, "AudioNTT2020-BYOLA-64x96d1024.pth", nest=nest)
    backbone = load_encoder(path)
    assert backbone.dim == 1024 and isinstance(backbone.encoder, AudioNTT2020)
    lms = random_lms(seed=3)
    with torch.no_grad():
        expected = model(lms)
    torch.testing.assert_close(embed(backbone, lms), expected, atol=1e-4, rtol=1e-4)


def test_official_v2_checkpoint_imports_exactly(tmp_path):
    model = randomise(OfficialAudioNTT2022(), seed=4)
    assert len(model.state_dict()) == 18
    path = official_file(tmp_path, model, "AudioNTT2022-BYOLA-64x96d2048.pth")
    for source in (None, "byol_a_official"):
        backbone = load_encoder(path, source=source)
        assert isinstance(backbone.encoder, AudioNTT2022) and backbone.dim == 3072
        lms = random_lms(seed=5)
        with torch.no_grad():
            expected = model(lms)
        assert expected.shape == (4, 3072)
        torch.testing.assert_close(embed(backbone, lms), expected, atol=1e-5, rtol=1e-5)
        with torch.no_grad():
            latents = backbone(torch.randn(2, 15200, generator=gen(6)) * 0.1)
        assert latents.shape == (2, 24, 3072)


def test_imported_frontend_is_byol_a_logmel(v1_512):
    """The imported backbone runs BYOL-A's log-mel (64 Slaney mels, n_fft 1024, hop 160,
    60-7800 Hz, log(x + eps), no standardisation) before the official network."""
    model, path = v1_512
    backbone = load_encoder(path)
    frontend = backbone.frontend
    assert isinstance(frontend, LogMel)
    assert (frontend.n_mels, frontend.n_fft, frontend.hop_length) == (64, 1024, 160)
    assert (frontend.mean, frontend.std) == (0.0, 1.0)
    fb = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=60, fmax=7800, htk=False,
                             norm="slaney")
    np.testing.assert_allclose(frontend.filterbank.numpy(), fb, rtol=1e-6, atol=1e-9)
    wave = 0.1 * torch.randn(2, 15200, generator=gen(7))
    with torch.no_grad():
        latents = backbone(wave)
    assert latents.shape == (2, 12, 512)
    # independent log-mel (librosa STFT, as the authors' MelSpectrogramLibrosa with reflect
    # padding) through the official model
    spec = np.abs(librosa.stft(wave.double().numpy(), n_fft=1024, hop_length=160, window="hann",
                               center=True, pad_mode="reflect")) ** 2
    mel = np.einsum("mf,bft->bmt", fb.astype(np.float64), spec)
    lms = torch.from_numpy(np.log(mel + np.finfo(np.float32).eps)).float().unsqueeze(1)
    assert lms.shape == (2, 1, 64, 96)
    with torch.no_grad():
        expected = model(lms)
    torch.testing.assert_close(polyjepa.pool(latents, "mean_plus_max"), expected, atol=1e-4,
                               rtol=1e-4)


def test_non_byol_a_files_are_refused(tmp_path):
    path = tmp_path / "something.pth"
    torch.save({"foo": torch.zeros(3)}, path)
    with pytest.raises(CheckpointError, match="something.pth") as info:
        load_encoder(path)
    assert "byol_a_official" in str(info.value)
    with pytest.raises(CheckpointError, match="something.pth"):
        load_encoder(path, source="byol_a_official")
    with pytest.raises(CheckpointError, match="installed importers: .*byol_a_official"):
        load_encoder(path, source="nonexistent")


def test_cli_import_writes_a_run_directory(v1_512, tmp_path, capsys):
    _, path = v1_512
    out = tmp_path / "imported"
    assert cli_main(["import", str(path), "--out", str(out)]) == 0
    assert (out / "encoder.pt").is_file() and (out / "config.yaml").is_file()
    assert "imported" in capsys.readouterr().out
    wave = 0.1 * torch.randn(3, 15200, generator=gen(8))
    a, b = load_encoder(path), load_encoder(out)
    with torch.no_grad():
        assert torch.equal(a(wave), b(wave))
    # the run directory is not overwritten
    assert cli_main(["import", str(path), "--out", str(out)]) == 2
