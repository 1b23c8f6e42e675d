"""Data as it comes (issue 28, item 4): every `my_*` recipe (and `ts_jepa_masked`) trains with no
extra keys on the awkward but legitimate data users bring — mixed sample rates, channel counts
and durations; frame sizes, rates, colours and lengths down to one frame; mixed-type tables with
missing cells and many classes; clouds from 10 to a million points; series of any length — and
what is still refused is one line naming the file, before the first step."""

from __future__ import annotations

import re
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from _helpers import single_thread  # noqa: F401  (autouse fixture)

from polyjepa.cli import main

QUICK = ["train.max_steps=2", "train.progress=false", "train.keep_checkpoints=[]"]
RNG = np.random.default_rng(28)


def pretrain(recipe: str, data: Path, out: Path, capsys, *extra: str) -> int:
    """`pretrain RECIPE data.path=DATA` with no key about the data; how many samples its
    training, validation and test splits hold together (none left out)."""
    code = main(["pretrain", recipe, f"data.path={data}", *QUICK, *extra, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert (out / "encoder.pt").is_file()
    found = re.search(r"data: (\d+) training samples, (\d+) validation, (\d+) test", err)
    assert found, err
    return sum(int(n) for n in found.groups())


def refused(recipe: str, data: Path, out: Path, capsys) -> str:
    """The error of a run that must stop: exit 2, one line, no traceback, no step taken."""
    assert main(["pretrain", recipe, f"data.path={data}", *QUICK, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text()
    return err


def _write_mp4(path: Path, frames: np.ndarray, fps: int) -> None:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode())


@pytest.mark.filterwarnings("ignore:train.batch_size")
def test_audio_of_any_rate_channels_and_length(tmp_path, capsys):
    """8 to 48 kHz, mono and stereo, 0.1 s to 60 s, wav/flac/ogg, in one folder of classes."""
    rates = (8000, 11025, 16000, 22050, 44100, 48000)
    seconds = (0.1, 0.4, 1.0, 3.0, 60.0)
    for k, name in enumerate(("hum", "hiss")):
        (tmp_path / "clips" / name).mkdir(parents=True)
        for i in range(10):
            rate, length = rates[i % len(rates)], seconds[i % len(seconds)]
            t = np.arange(int(rate * length)) / rate
            wave = 0.3 * np.sin(2 * np.pi * 440 * t) if k == 0 else 0.1 * RNG.normal(size=t.size)
            if i % 2:
                wave = np.stack([wave, 0.5 * wave], axis=1)  # stereo
            suffix = (".wav", ".flac", ".ogg")[i % 3]
            sf.write(tmp_path / "clips" / name / f"{i}{suffix}", wave.astype(np.float32), rate)
    assert pretrain("my_audio", tmp_path / "clips", tmp_path / "run", capsys) == 20


@pytest.mark.filterwarnings("ignore:train.batch_size")
def test_videos_of_any_size_rate_colour_and_length(tmp_path, capsys):
    """mp4 at 10 and 30 fps, colour and grey arrays of other sizes, a folder of PNG frames, and
    clips of 1 and 2 frames."""
    for name in ("up", "down"):
        folder = tmp_path / "clips" / name
        folder.mkdir(parents=True)
        for i in range(3):
            frames = (RNG.random((12, 48 + 16 * i, 64, 3)) * 255).astype(np.uint8)
            _write_mp4(folder / f"{i}.mp4", frames, fps=(10, 30, 25)[i])
        np.save(folder / "grey.npy", (RNG.random((20, 30, 40)) * 255).astype(np.uint8))
        np.save(folder / "one_frame.npy", (RNG.random((1, 24, 24, 3)) * 255).astype(np.uint8))
        np.save(folder / "two_frames.npy", (RNG.random((2, 90, 160, 4)) * 255).astype(np.uint8))
        (folder / "frames").mkdir()
        import PIL.Image

        for j in range(5):
            PIL.Image.fromarray((RNG.random((32, 32)) * 255).astype(np.uint8)).save(
                folder / "frames" / f"{j:03d}.png")
    assert pretrain("my_videos", tmp_path / "clips", tmp_path / "run", capsys) == 14


@pytest.mark.filterwarnings("ignore:train.batch_size")
def test_a_table_of_mixed_types_missing_cells_and_many_classes(tmp_path, capsys):
    """Numbers, strings, booleans, dates as text, empty cells and '?' markers, and 40 classes of
    which some have 2 rows."""
    n = 400
    frame = pd.DataFrame({
        "age": RNG.integers(18, 90, n).astype(float),
        "city": RNG.choice(["Oslo", "Lima", "Pune", "Kyiv"], n),
        "member": RNG.choice([True, False], n),
        "joined": pd.date_range("2020-01-01", periods=n, freq="D").astype(str),
        "score": RNG.normal(size=n),
        "label": [f"c{i % 38}" for i in range(n - 4)] + ["c38", "c38", "c39", "c39"],
    })
    frame.loc[RNG.choice(n, 40, replace=False), "age"] = np.nan
    frame.loc[RNG.choice(n, 30, replace=False), "city"] = None
    frame["score"] = frame["score"].astype(object)
    frame.loc[RNG.choice(n, 10, replace=False), "score"] = "?"
    frame.to_csv(tmp_path / "rows.csv", index=False)
    assert pretrain("my_table", tmp_path / "rows.csv", tmp_path / "run", capsys,
                    "data.target=label") == 400


@pytest.mark.filterwarnings("ignore:train.batch_size")
def test_clouds_of_ten_to_a_million_points(tmp_path, capsys):
    for name, scale in (("pole", [0.1, 0.1, 2.0]), ("roof", [2.0, 2.0, 0.1])):
        folder = tmp_path / "clouds" / name
        folder.mkdir(parents=True)
        for i, points in enumerate((10, 50, 1000, 5000, 20000)):
            np.save(folder / f"{i}.npy", (RNG.normal(size=(points, 3)) * scale).astype(np.float32))
        np.save(folder / "big.npy", (RNG.normal(size=(1_000_000, 3)) * scale).astype(np.float32))
    assert pretrain("my_clouds", tmp_path / "clouds", tmp_path / "run", capsys) == 12


@pytest.mark.parametrize("recipe", ["my_series", "ts_jepa_masked"])
@pytest.mark.filterwarnings("ignore:train.batch_size")
def test_series_of_any_length_some_shorter_than_a_patch(recipe, tmp_path, capsys):
    """A UCR-style `.ts` file of variable-length series from 2 to 300 steps."""
    lines = ["@problemName mixed", "@timestamps false", "@univariate true", "@equalLength false",
             "@classLabel true calm wavy", "@data"]
    for i in range(40):
        label = ("calm", "wavy")[i % 2]
        t = (2, 300)[i] if i < 2 else int(RNG.integers(2, 301))
        wave = np.sin(np.arange(t) / (2 if label == "wavy" else 20)) + 0.1 * RNG.normal(size=t)
        lines.append(",".join(f"{v:.4f}" for v in wave) + f":{label}")
    (tmp_path / "mixed_TRAIN.ts").write_text("\n".join(lines) + "\n")
    assert pretrain(recipe, tmp_path / "mixed_TRAIN.ts", tmp_path / "run", capsys) == 40


def test_what_is_still_refused_is_one_line_naming_the_file(tmp_path, capsys):
    """An audio file that is not audio, a cloud of 2 points, a table whose label column holds
    one class (a column of measurements is a regression target now: `test_regression.py`), a
    video that is not one: each stops before the first step, naming the file."""
    (tmp_path / "wavs" / "a").mkdir(parents=True)
    (tmp_path / "wavs" / "b").mkdir(parents=True)
    for i in range(4):
        sf.write(tmp_path / "wavs" / "a" / f"{i}.wav", RNG.normal(size=800).astype(np.float32), 8000)
        sf.write(tmp_path / "wavs" / "b" / f"{i}.wav", RNG.normal(size=800).astype(np.float32), 8000)
    (tmp_path / "wavs" / "b" / "broken.wav").write_bytes(b"RIFF0000WAVEjunk")
    err = refused("my_audio", tmp_path / "wavs", tmp_path / "r1", capsys)
    assert "broken.wav" in err and "data.on_error=skip" in err

    (tmp_path / "clouds" / "a").mkdir(parents=True)
    (tmp_path / "clouds" / "b").mkdir(parents=True)
    for i in range(4):
        np.save(tmp_path / "clouds" / "a" / f"{i}.npy", RNG.normal(size=(40, 3)))
        np.save(tmp_path / "clouds" / "b" / f"{i}.npy", RNG.normal(size=(40, 3)))
    np.save(tmp_path / "clouds" / "b" / "tiny.npy", RNG.normal(size=(2, 3)))
    err = refused("my_clouds", tmp_path / "clouds", tmp_path / "r2", capsys)
    assert "tiny.npy" in err

    pd.DataFrame({"x": RNG.normal(size=20), "y": ["same"] * 20}).to_csv(  # one class only
        tmp_path / "rows.csv", index=False)
    err = refused("my_table", tmp_path / "rows.csv", tmp_path / "r3", capsys)
    assert "rows.csv" in err and "data.target" in err
