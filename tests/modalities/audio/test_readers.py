"""Tests of the audio readers: layouts, splits, decoding, crops, bad inputs, statistics, FSDD."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from _helpers import logged, single_thread  # noqa: F401  (autouse fixture)

from polyjepa.data import SeededDataset
from polyjepa.errors import ConfigError, DataError, PolyjepaError
from polyjepa.modalities.audio import LogMel, load_data, load_file, logmel_stats, raw_features, synthetic
from polyjepa.modalities.audio.readers import (
    EXTENSIONS,
    AudioArrays,
    AudioDataConfig,
    AudioFiles,
    Clip,
    LogMelConfig,
    check_clips,
    list_clips,
    read_audio,
    split_clips,
)

SR = 16000
CLIP = 0.95  # the default clip_seconds
CROP = int(round(CLIP * SR))  # 15200 samples
FSDD_REGEX = r"^(?P<label>\d)_(?P<speaker>[a-z]+)_(?P<index>\d+)\.wav$"


def tone(seconds: float, sr: int = SR, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def noise(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(-0.5, 0.5, int(round(seconds * sr))).astype(np.float32)


def write(path: Path, wave: np.ndarray, sr: int = SR, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wave, sr, **kwargs)
    return path


def cfg(path: Path | str, **overrides) -> AudioDataConfig:
    """A data section on `path`, with cheap log-mel statistics."""
    logmel = overrides.pop("logmel", LogMelConfig(norm_clips=16))
    return AudioDataConfig(path=str(path), logmel=logmel, **overrides)


def class_folder(root: Path, classes=("cat", "dog", "owl"), per_class: int = 5,
                 seconds: float = 0.2) -> Path:
    """`root/<class>/<i>.wav`, short tones with a class-specific pitch and a per-file phase."""
    for k, name in enumerate(classes):
        for i in range(per_class):
            write(root / name / f"{i}.wav", tone(seconds, freq=300 + 200 * k + 7 * i))
    return root


def paths(clips: list[Clip]) -> list[str]:
    return [str(c.path) for c in clips]


def fft_peak_hz(wave: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.argmax(spectrum) * sr / len(wave))


def files_dataset(clips: list[Clip], class_names=(), sr: int = SR, clip_seconds: float = CLIP,
                  crop: str = "center", cache: bool = True) -> AudioFiles:
    kept, frames = check_clips(clips, sr, "raise", "test")
    return AudioFiles(kept, frames, list(class_names), sr, clip_seconds, crop, cache)


# --- layouts -----------------------------------------------------------------------------------


def test_folder_per_class_labels_are_subfolder_names(tmp_path):
    root = class_folder(tmp_path / "data", per_class=4)
    write(root / "dog" / "deeper" / "x.wav", tone(0.1))  # nested deeper: still class "dog"
    clips, splits = list_clips(str(root), cfg(root), None, "data.path")
    assert splits == [None] * len(clips)
    assert len(clips) == 13
    for clip in clips:
        assert clip.label == clip.path.relative_to(root).parts[0]
    assert sorted({c.label for c in clips}) == ["cat", "dog", "owl"]

    train, test, meta = load_data(cfg(root), None)
    assert meta["class_names"] == ["cat", "dog", "owl"]
    assert meta["num_classes"] == 3
    for ds in (train, test):
        for clip, label in zip(ds.clips, ds.labels.tolist(), strict=True):
            assert meta["class_names"][label] == clip.label


def test_flat_folder_with_regex_labels_and_test_groups(tmp_path):
    regex = r"^(?P<label>[a-z]+)-(?P<speaker>s\d)-(?P<take>\d)\.wav$"
    for label in ("yes", "no"):
        for speaker in ("s1", "s2", "s3"):
            for take in range(2):
                write(tmp_path / f"{label}-{speaker}-{take}.wav", tone(0.1))
    clips, _ = list_clips(str(tmp_path), cfg(tmp_path, label_regex=regex), None, "data.path")
    assert len(clips) == 12
    for clip in clips:
        label, speaker, take = clip.path.stem.split("-")
        assert clip.label == label
        assert clip.groups == {"label": label, "speaker": speaker, "take": take}

    conf = cfg(tmp_path, label_regex=regex, test_groups={"speaker": ["s3"], "take": [1]})
    train, test = split_clips(clips, [None] * len(clips), conf, "data.path")
    assert {(c.groups["speaker"], c.groups["take"]) for c in test} == {("s3", "1")}
    assert len(test) == 2 and len(train) == 10
    assert set(paths(train)).isdisjoint(paths(test))

    tr, te, meta = load_data(conf, None)
    assert (len(tr), len(te)) == (10, 2)
    assert meta["class_names"] == ["no", "yes"]


def test_test_groups_key_not_in_regex_is_config_error(tmp_path):
    write(tmp_path / "a-1.wav", tone(0.1))
    write(tmp_path / "b-2.wav", tone(0.1))
    conf = cfg(tmp_path, label_regex=r"(?P<label>[a-z])-\d", test_groups={"speaker": ["x"]})
    clips, splits = list_clips(str(tmp_path), conf, None, "data.path")
    with pytest.raises(ConfigError, match="speaker"):
        split_clips(clips, splits, conf, "data.path")


def test_manifest_with_relative_paths_and_split_column(tmp_path):
    write(tmp_path / "audio" / "a.wav", tone(0.1))
    write(tmp_path / "audio" / "b.flac", tone(0.1, freq=880), format="FLAC")
    write(tmp_path / "meta" / "c.wav", tone(0.1, freq=660))
    write(tmp_path / "meta" / "sub dir" / "d.wav", tone(0.1, freq=550))
    manifest = tmp_path / "meta" / "list.csv"
    manifest.write_text("path,label,split\n"
                        "../audio/a.wav,dog,train\n"
                        "../audio/b.flac,cat,TRAIN\n"
                        "\n"
                        "c.wav,dog,test\n"
                        "sub dir/d.wav,cat,test\n")
    # relative to the data root, from a working directory where it does not exist
    clips, splits = list_clips("meta/list.csv", cfg("unused"), tmp_path, "data.path")
    assert [c.path.resolve() for c in clips] == [
        (tmp_path / "audio" / "a.wav").resolve(), (tmp_path / "audio" / "b.flac").resolve(),
        (tmp_path / "meta" / "c.wav").resolve(), (tmp_path / "meta" / "sub dir" / "d.wav").resolve()]
    assert [c.label for c in clips] == ["dog", "cat", "dog", "cat"]
    assert splits == ["train", "train", "test", "test"]

    train, test, meta = load_data(cfg("meta/list.csv"), tmp_path)
    assert [c.path.name for c in train.clips] == ["a.wav", "b.flac"]
    assert [c.path.name for c in test.clips] == ["c.wav", "d.wav"]
    assert meta["class_names"] == ["cat", "dog"]
    assert train.labels.tolist() == [1, 0] and test.labels.tolist() == [1, 0]


def test_manifest_bad_split_value_names_file_and_line(tmp_path):
    write(tmp_path / "a.wav", tone(0.1))
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,split\na.wav,dog,train\na.wav,dog,valid\n")
    with pytest.raises(DataError) as info:
        list_clips(str(manifest), cfg(manifest), None, "data.path")
    message = str(info.value)
    assert str(manifest) in message and "line 3" in message and "valid" in message


def test_manifest_missing_file_is_named(tmp_path):
    write(tmp_path / "a.wav", tone(0.1))
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\na.wav,dog\nmissing.wav,cat\n")
    clips, _ = list_clips(str(manifest), cfg(manifest), None, "data.path")
    with pytest.raises(DataError, match="missing.wav"):
        check_clips(clips, SR, "raise", "training clips")


def test_manifest_with_only_a_path_column(tmp_path):
    write(tmp_path / "a.wav", tone(0.1))
    write(tmp_path / "b.wav", tone(0.1))
    manifest = tmp_path / "m.csv"
    manifest.write_text("path\na.wav\nb.wav\n")
    clips, _ = list_clips(str(manifest), cfg(manifest), None, "data.path")
    assert [c.path.name for c in clips] == ["a.wav", "b.wav"]
    assert [c.label for c in clips] == [None, None]


def test_manifest_with_utf8_bom(tmp_path):
    write(tmp_path / "a.wav", tone(0.1))
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\na.wav,dog\n", encoding="utf-8-sig")
    clips, _ = list_clips(str(manifest), cfg(manifest), None, "data.path")
    assert [(c.path.name, c.label) for c in clips] == [("a.wav", "dog")]


def test_unlabelled_flat_folder_gives_label_minus_one(tmp_path):
    for i in range(6):
        write(tmp_path / f"clip{i}.wav", noise(0.3, seed=i))
    clips, _ = list_clips(str(tmp_path), cfg(tmp_path), None, "data.path")
    assert [c.label for c in clips] == [None] * 6
    train, test, meta = load_data(cfg(tmp_path, test_fraction=0.5), None)
    assert meta["class_names"] == [] and meta["num_classes"] == 0
    assert (len(train), len(test)) == (3, 3)
    assert train.labels.tolist() == [-1] * 3 and test.labels.tolist() == [-1] * 3
    assert int(train[0][1]) == -1


def test_stratified_seeded_split(tmp_path):
    root = class_folder(tmp_path, classes=("a", "b", "c", "d"), per_class=5, seconds=0.05)
    clips, splits = list_clips(str(root), cfg(root), None, "data.path")

    def split(seed):
        return split_clips(clips, splits, cfg(root, split_seed=seed), "data.path")

    train, test = split(0)
    assert len(test) == 4 and len(train) == 16
    assert sorted(c.label for c in test) == ["a", "b", "c", "d"]  # stratified: one per class
    assert set(paths(train)).isdisjoint(paths(test))
    assert sorted(paths(train) + paths(test)) == sorted(paths(clips))
    again = split(0)
    assert paths(again[0]) == paths(train) and paths(again[1]) == paths(test)
    others = [set(paths(split(seed)[1])) for seed in (1, 2, 3)]
    assert any(o != set(paths(test)) for o in others)


def test_stratified_split_with_few_clips_per_class(tmp_path):
    clips = [Clip(tmp_path / f"{c}{i}.wav", c) for c in "abcdefghij" for i in range(3)]
    try:
        train, test = split_clips(clips, [None] * len(clips), AudioDataConfig(path="x"), "x")
    except PolyjepaError:
        return  # a named error is acceptable
    assert len(train) + len(test) == len(clips) and test


# --- decoding ----------------------------------------------------------------------------------


def test_stereo_is_downmixed_to_the_channel_mean(tmp_path):
    left, right = tone(0.5, freq=440), noise(0.5, seed=3)
    path = write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), subtype="FLOAT")
    wave = read_audio(path, SR)
    assert wave.dtype == np.float32 and wave.shape == left.shape
    np.testing.assert_allclose(wave, (left + right) / 2, atol=1e-6)


def test_pcm_u8_decodes_close_to_pcm_16(tmp_path):
    x = tone(0.5, amp=0.8)
    a = read_audio(write(tmp_path / "u8.wav", x, subtype="PCM_U8"), SR)
    b = read_audio(write(tmp_path / "s16.wav", x, subtype="PCM_16"), SR)
    assert sf.info(str(tmp_path / "u8.wav")).subtype == "PCM_U8"
    assert a.shape == b.shape == x.shape
    assert np.abs(a - b).max() <= 1.5 / 128  # 8-bit quantisation step is 1/128
    assert np.abs(b).max() > 0.7  # scaled to [-1, 1], not left as raw integers
    assert not np.array_equal(a, b)


def test_resampling_8k_to_16k_doubles_length_and_keeps_pitch(tmp_path):
    x = tone(1.0, sr=8000, freq=440)
    wave = read_audio(write(tmp_path / "8k.wav", x, sr=8000), SR)
    assert abs(len(wave) - 2 * len(x)) <= 4
    assert abs(fft_peak_hz(wave, SR) - 440) < 2
    assert np.abs(wave).max() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("fmt,subtype,exact", [("FLAC", None, True), ("OGG", "VORBIS", False)])
def test_flac_and_ogg_are_read(tmp_path, fmt, subtype, exact):
    x = tone(0.5, freq=660)
    path = write(tmp_path / f"clip.{fmt.lower()}", x, format=fmt, subtype=subtype)
    wave = read_audio(path, SR)
    assert abs(len(wave) - len(x)) <= 4
    assert abs(fft_peak_hz(wave, SR) - 660) < 3
    if exact:  # lossless 16-bit
        np.testing.assert_allclose(wave, x, atol=1.0 / 32768)
    else:
        assert np.corrcoef(wave[: len(x)], x[: len(wave)])[0, 1] > 0.99


def test_mp3_loads_when_supported(tmp_path):
    if "MP3" not in sf.available_formats():
        pytest.skip("libsndfile without mp3; see test_mp3_unsupported_names_the_format")
    x = tone(1.0, freq=440)
    path = write(tmp_path / "clip.mp3", x, format="MP3")
    train = files_dataset([Clip(path, "a")], ["a"])
    wave = train.wave(0).numpy()
    assert abs(len(wave) - len(x)) < 0.05 * SR
    assert np.isfinite(wave).all()
    assert abs(fft_peak_hz(wave, SR) - 440) < 3


def test_mp3_unsupported_names_the_format(tmp_path, monkeypatch):
    x = tone(0.2)
    path = tmp_path / "clip.mp3"
    if "MP3" in sf.available_formats():
        write(path, x, format="MP3")
    else:
        path.write_bytes(b"\xff\xfb" + bytes(100))
    formats = {k: v for k, v in sf.available_formats().items() if k != "MP3"}
    monkeypatch.setattr(sf, "available_formats", lambda: formats)
    with pytest.raises(DataError) as info:
        check_clips([Clip(path, None)], SR, "raise", "training clips")
    assert "mp3" in str(info.value) and str(path) in str(info.value)
    with pytest.raises(DataError, match="mp3"):
        read_audio(path, SR)


def long_file_dataset(tmp_path, cache: bool) -> tuple[AudioFiles, np.ndarray]:
    path = write(tmp_path / "long.wav", noise(60.0, seed=7), subtype="PCM_16")
    whole = read_audio(path, SR)
    return files_dataset([Clip(path, "a")], ["a"], cache=cache), whole


def offset_for(seed: int, frames: int) -> int:
    """The crop offset `sample` draws with `torch.Generator().manual_seed(seed)`."""
    g = torch.Generator().manual_seed(seed)
    return int(torch.randint(0, frames - CROP + 1, (), generator=g))


def test_long_file_without_cache_decodes_only_the_crop(tmp_path, monkeypatch):
    ds, whole = long_file_dataset(tmp_path, cache=False)
    assert ds.frames == [len(whole)] == [60 * SR]
    requested = []
    read = sf.SoundFile.read

    def spy(self, frames=-1, *args, **kwargs):
        requested.append(frames)
        return read(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    seeds = list(range(4))
    crops = []
    for seed in seeds:
        crop, label = ds.sample(0, torch.Generator().manual_seed(seed))
        offset = offset_for(seed, len(whole))
        assert crop.shape == (CROP,) and crop.dtype == torch.float32 and int(label) == 0
        np.testing.assert_array_equal(crop.numpy(), whole[offset : offset + CROP])
        crops.append(crop)
    assert requested and all(0 < n <= CROP + 32 for n in requested)  # never the whole minute
    assert not torch.equal(crops[0], crops[1])
    assert ds._cache == {}


def test_uncached_crop_matches_cached_crop_for_every_offset(tmp_path):
    uncached, whole = long_file_dataset(tmp_path, cache=False)
    cached = files_dataset(uncached.clips, ["a"], cache=True)
    seed = next(s for s in range(10_000)
                if int(offset_for(s, len(whole)) / SR * SR) != offset_for(s, len(whole)))
    a, _ = uncached.sample(0, torch.Generator().manual_seed(seed))
    b, _ = cached.sample(0, torch.Generator().manual_seed(seed))
    assert torch.equal(a, b)


def test_long_resampled_file_without_cache_gives_exact_crop_length(tmp_path):
    path = write(tmp_path / "long8k.wav", tone(20.0, sr=8000, freq=440), sr=8000)
    ds = files_dataset([Clip(path, None)], cache=False)
    assert ds.frames == [20 * SR]
    whole = read_audio(path, SR)
    for seed in range(4):
        crop, label = ds.sample(0, torch.Generator().manual_seed(seed))
        offset = offset_for(seed, ds.frames[0])
        assert crop.shape == (CROP,) and int(label) == -1
        assert abs(fft_peak_hz(crop.numpy(), SR) - 440) < 2
        # one sample of slack: the start is rounded to a source (8 kHz) frame
        reference = whole[max(offset - 1, 0) : offset + CROP + 1]
        best = min(np.abs(crop.numpy()[100:-100] - reference[d + 100 : d + CROP - 100]).max()
                   for d in range(len(reference) - CROP + 1))
        assert best < 0.02


# --- crops -------------------------------------------------------------------------------------


def test_training_crops_are_seeded(tmp_path):
    path = write(tmp_path / "a.wav", noise(3.0, seed=1))
    ds = files_dataset([Clip(path, "a")], ["a"])
    whole = ds.wave(0)
    crops = {}
    for seed in range(5):
        crop, _ = ds.sample(0, torch.Generator().manual_seed(seed))
        again, _ = ds.sample(0, torch.Generator().manual_seed(seed))
        assert crop.shape == (CROP,)
        assert torch.equal(crop, again)
        offset = offset_for(seed, whole.shape[0])
        assert torch.equal(crop, whole[offset : offset + CROP])
        crops[seed] = crop
    assert len({tuple(c[:8].tolist()) for c in crops.values()}) == 5

    seeded = SeededDataset(ds)
    (x1, _), *_ = seeded[(0, 11, 0)]
    (x2, _), *_ = seeded[(0, 11, 0)]
    (x3, _), *_ = seeded[(0, 12, 0)]
    assert torch.equal(x1, x2) and not torch.equal(x1, x3) and x1.shape == (CROP,)


def test_short_clips_are_centre_padded(tmp_path):
    x = tone(0.5, freq=500)  # 8000 samples < 15200
    path = write(tmp_path / "short.wav", x, subtype="FLOAT")
    ds = files_dataset([Clip(path, "a")], ["a"])
    pad = (CROP - len(x)) // 2
    for view in (ds.sample(0, torch.Generator().manual_seed(0))[0], ds[0][0]):
        view = view.numpy()
        assert view.shape == (CROP,)
        assert not view[:pad].any() and not view[pad + len(x):].any()
        np.testing.assert_array_equal(view[pad : pad + len(x)], x)


def test_getitem_is_the_centre_crop(tmp_path):
    x = noise(2.0, seed=5)
    path = write(tmp_path / "two.wav", x, subtype="FLOAT")
    ds = files_dataset([Clip(path, "a")], ["a"])
    start = (len(x) - CROP) // 2
    view, label = ds[0]
    np.testing.assert_array_equal(view.numpy(), x[start : start + CROP])
    assert torch.equal(ds[0][0], view) and int(label) == 0


def test_eval_crop_full_pads_to_the_longest_clip(tmp_path):
    lengths = (0.3, 2.5, 1.0)
    clips = [Clip(write(tmp_path / f"{i}.wav", noise(s, seed=i), subtype="FLOAT"), "a")
             for i, s in enumerate(lengths)]
    ds = files_dataset(clips, ["a"], crop="full")
    longest = int(2.5 * SR)
    for i, seconds in enumerate(lengths):
        view, _ = ds[i]
        n = int(round(seconds * SR))
        assert view.shape == (longest,)
        np.testing.assert_array_equal(view[:n].numpy(), noise(seconds, seed=i))
        assert not view[n:].any()
    assert ds.sample(1, torch.Generator().manual_seed(0))[0].shape == (CROP,)  # training: crops
    with pytest.raises(ConfigError, match="eval_crop"):
        files_dataset(clips, ["a"], crop="middle")


# --- bad inputs --------------------------------------------------------------------------------


def check_one(path: Path) -> str:
    with pytest.raises(DataError) as info:
        check_clips([Clip(path, "a")], SR, "raise", "training clips")
    assert str(path) in str(info.value)
    return str(info.value)


def test_corrupt_file_is_named(tmp_path):
    path = tmp_path / "corrupt.wav"
    path.write_bytes(np.random.default_rng(0).bytes(4000))
    message = check_one(path)
    assert "cannot read audio" in message and "on_error=skip" in message
    with pytest.raises(DataError, match="corrupt.wav"):
        read_audio(path, SR)


def test_truncated_wav_loads_its_readable_part(tmp_path):
    x = noise(1.0, seed=2)
    path = write(tmp_path / "full.wav", x, subtype="PCM_16")
    data = path.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[: 44 + 16001])  # the middle of the data, mid-sample
    # documented behaviour: the readable frames load, no error
    ds = files_dataset([Clip(cut, "a")], ["a"], clip_seconds=0.25)
    assert ds.frames == [8000]
    np.testing.assert_array_equal(ds.wave(0).numpy(), read_audio(path, SR)[:8000])
    assert ds.sample(0, torch.Generator().manual_seed(0))[0].shape == (4000,)
    header_only = tmp_path / "header.wav"
    header_only.write_bytes(data[:30])
    check_one(header_only)


def test_zero_byte_file_is_named(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    check_one(path)
    with pytest.raises(DataError, match="empty.wav"):
        read_audio(path, SR)


def test_wav_with_zero_frames_is_named(tmp_path):
    path = write(tmp_path / "zero.wav", np.zeros(0, np.float32))
    assert "no audio samples" in check_one(path)
    with pytest.raises(DataError, match="zero.wav"):
        read_audio(path, SR)


def test_nan_samples_are_named(tmp_path):
    x = noise(0.2)
    x[100] = np.nan
    path = write(tmp_path / "nan.wav", x, subtype="FLOAT")
    with pytest.raises(DataError, match="nan.wav.*NaN"):
        read_audio(path, SR)


def test_unsupported_extension_in_manifest(tmp_path):
    write(tmp_path / "a.wav", tone(0.1))
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\na.wav,dog\nb.xyz,cat\n")
    with pytest.raises(DataError) as info:
        list_clips(str(manifest), cfg(manifest), None, "data.path")
    message = str(info.value)
    assert "b.xyz" in message and "line 3" in message and str(manifest) in message
    assert all(ext in message for ext in EXTENSIONS)


def test_regex_without_label_group_is_config_error(tmp_path):
    write(tmp_path / "1_x.wav", tone(0.1))
    with pytest.raises(ConfigError, match="label"):
        list_clips(str(tmp_path), cfg(tmp_path, label_regex=r"^(?P<digit>\d)_x\.wav$"), None, "p")
    with pytest.raises(ConfigError, match="label_regex"):
        list_clips(str(tmp_path), cfg(tmp_path, label_regex=r"(?P<label>\d"), None, "p")


def test_file_name_not_matching_regex_is_named(tmp_path):
    write(tmp_path / "1_ann_0.wav", tone(0.1))
    write(tmp_path / "oops.wav", tone(0.1))
    with pytest.raises(DataError) as info:
        list_clips(str(tmp_path), cfg(tmp_path, label_regex=FSDD_REGEX), None, "data.path")
    assert str(tmp_path / "oops.wav") in str(info.value) and "label_regex" in str(info.value)


def test_empty_folder_and_folder_without_audio(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError) as info:
        load_data(cfg(empty), None)
    assert str(empty) in str(info.value) and "no audio files" in str(info.value)
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("hi")
    with pytest.raises(DataError, match=r"found only \.txt"):
        load_data(cfg(notes), None)
    with pytest.raises(DataError, match="no such file"):
        load_data(cfg(tmp_path / "absent"), None)


def test_mixed_class_folders_and_loose_files(tmp_path):
    class_folder(tmp_path, per_class=1, seconds=0.05)
    write(tmp_path / "loose.wav", tone(0.05))
    with pytest.raises(DataError, match="loose.wav"):
        list_clips(str(tmp_path), cfg(tmp_path), None, "data.path")


def test_test_label_never_seen_in_training(tmp_path):
    train_dir = class_folder(tmp_path / "train", classes=("cat", "dog"), per_class=2)
    test_dir = class_folder(tmp_path / "test", classes=("cat", "emu"), per_class=1)
    with pytest.raises(DataError) as info:
        load_data(cfg(train_dir, test_path=str(test_dir)), None)
    assert "emu" in str(info.value) and str(test_dir / "emu" / "0.wav") in str(info.value)


def test_on_error_skip_drops_corrupt_file_with_a_counting_warning(tmp_path, caplog):
    root = class_folder(tmp_path / "data", classes=("cat", "dog"), per_class=5, seconds=0.3)
    bad = root / "dog" / "9.wav"
    bad.write_bytes(np.random.default_rng(1).bytes(3000))

    with pytest.raises(DataError) as info:
        load_data(cfg(root), None)
    assert str(bad) in str(info.value) and "on_error=skip" in str(info.value)

    with logged(caplog, "skipped 1 unreadable audio file") as messages:
        train, test, meta = load_data(cfg(root, on_error="skip"), None)
    assert len(messages) == 1 and "9.wav" in messages[0]
    kept = paths(train.clips) + paths(test.clips)
    assert len(kept) == 10 and str(bad) not in kept
    assert len(train.frames) == len(train.clips) == len(train.labels)
    assert len(test.frames) == len(test.clips) == len(test.labels)
    assert meta["class_names"] == ["cat", "dog"]
    assert np.isfinite([meta["norm_mean"], meta["norm_std"]]).all() and meta["norm_std"] > 0
    for ds in (train, test):  # every kept clip decodes
        for i in range(len(ds)):
            assert ds.sample(i, torch.Generator().manual_seed(i))[0].shape == (CROP,)


def test_on_error_skip_with_only_bad_files(tmp_path, caplog):
    (tmp_path / "a.wav").write_bytes(b"")
    with logged(caplog, "skipped 1"), pytest.raises(DataError, match="no readable audio"):
        check_clips([Clip(tmp_path / "a.wav", None)], SR, "skip", "training clips")


def test_load_file_appends_new_labels(tmp_path):
    root = class_folder(tmp_path, classes=("dog", "emu"), per_class=1, seconds=0.1)
    meta = {"class_names": ["cat", "dog"]}
    ds = load_file(cfg(root), str(root), None, meta)
    assert [c.label for c in ds.clips] == ["dog", "emu"]
    assert ds.labels.tolist() == [1, 2]
    assert ds.frontend_meta is meta


# --- silence and statistics --------------------------------------------------------------------


def test_all_silent_clip_through_logmel_is_finite():
    frontend = LogMel(SR, 64, 1024, None, 160, 60.0, 7800.0)
    out = frontend(torch.zeros(2, CROP))
    assert out.shape == (2, 1, 64, 1 + CROP // 160)
    assert torch.isfinite(out).all()
    assert torch.allclose(out, torch.full_like(out, float(np.log(np.finfo(np.float32).eps))))


def test_logmel_stats_on_all_silent_files_raise(tmp_path):
    for i in range(4):
        write(tmp_path / f"s{i}.wav", np.zeros(SR, np.float32))
    with pytest.raises(DataError, match="constant"):
        load_data(cfg(tmp_path, test_fraction=0.25), None)
    ds = AudioArrays([torch.zeros(SR)] * 3, torch.zeros(3, dtype=torch.long), SR, CLIP)
    with pytest.raises(DataError, match="normalize=false"):
        logmel_stats(ds, LogMel(SR), 3, 0)
    # without standardisation the silent set loads
    _, _, meta = load_data(cfg(tmp_path, test_fraction=0.25,
                               logmel=LogMelConfig(normalize=False)), None)
    assert (meta["norm_mean"], meta["norm_std"]) == (0.0, 1.0)


def test_logmel_stats_on_mixed_silent_and_real_clips(tmp_path):
    for i in range(3):
        write(tmp_path / "quiet" / f"s{i}.wav", np.zeros(SR, np.float32))
        write(tmp_path / "loud" / f"n{i}.wav", noise(1.0, seed=i))
    train, _, meta = load_data(cfg(tmp_path, test_fraction=0.34), None)
    mean, std = meta["norm_mean"], meta["norm_std"]
    assert np.isfinite([mean, std]).all() and std > 1.0
    eps_log = float(np.log(np.finfo(np.float32).eps))
    assert eps_log < mean < 0  # between silence and the noise's log-mel
    again = logmel_stats(train, LogMel.from_config(SR, LogMelConfig(norm_clips=16)), 16, 0)
    assert again == pytest.approx((mean, std))
    feats = raw_features(train)
    assert torch.isfinite(feats).all() and feats.shape == (len(train), 128)


# --- FSDD (shared data) ------------------------------------------------------------------------


def fsdd_config(shared_data: Path, **overrides) -> AudioDataConfig:
    return AudioDataConfig(
        path=str(shared_data / "audio/fsdd/recordings"), label_regex=FSDD_REGEX,
        test_groups=overrides.pop("test_groups", {"index": ["0", "1", "2", "3", "4"]}),
        logmel=overrides.pop("logmel", LogMelConfig(norm_clips=64)), **overrides)


def test_fsdd_demo_data_section(shared_data, monkeypatch):
    from polyjepa.build import load_datasets, load_recipe

    monkeypatch.setenv("POLYJEPA_DATA_ROOT", str(shared_data))
    recipe = load_recipe("byol_a_demo", ["data.logmel.norm_clips=64"])
    assert recipe.cfg.data.label_regex == FSDD_REGEX
    train, test, meta = load_datasets(recipe)
    assert (len(train), len(test)) == (2700, 300)
    assert meta["class_names"] == [str(d) for d in range(10)] and meta["num_classes"] == 10
    assert all(int(c.groups["index"]) < 5 for c in test.clips)
    assert all(int(c.groups["index"]) >= 5 for c in train.clips)
    assert set(paths(train.clips)).isdisjoint(paths(test.clips))
    assert torch.bincount(test.labels, minlength=10).tolist() == [30] * 10
    assert np.isfinite([meta["norm_mean"], meta["norm_std"]]).all() and meta["norm_std"] > 0
    wave, label = train.sample(0, torch.Generator().manual_seed(0))
    assert wave.shape == (meta["clip_samples"],) == (7600,)  # 0.95 s at 8 kHz
    assert meta["class_names"][int(label)] == train.clips[0].label


def test_fsdd_speaker_disjoint_split(shared_data):
    conf = fsdd_config(shared_data, test_groups={"speaker": ["theo"]},
                       logmel=LogMelConfig(normalize=False))
    train, test, meta = load_data(conf, None)
    assert (len(train), len(test)) == (2500, 500)
    assert {c.groups["speaker"] for c in test.clips} == {"theo"}
    assert "theo" not in {c.groups["speaker"] for c in train.clips}
    assert meta["num_classes"] == 10


# --- synthetic ---------------------------------------------------------------------------------


def test_synthetic_set():
    train, test, meta = synthetic(seed=0)
    assert (len(train), len(test)) == (400, 100)
    assert meta["num_classes"] == 5 and len(meta["class_names"]) == 5
    assert sorted(set(train.labels.tolist())) == [0, 1, 2, 3, 4]
    for key in ("n_mels", "num_frames", "norm_mean", "norm_std"):
        assert key in meta
    assert meta["num_frames"] == 1 + CROP // meta["logmel"]["hop_length"]
    assert np.isfinite([meta["norm_mean"], meta["norm_std"]]).all() and meta["norm_std"] > 0
    waves = torch.stack(train.waves + test.waves)
    assert torch.isfinite(waves).all() and waves.abs().max() <= 1.0

    again = synthetic(seed=0)
    assert all(torch.equal(a, b) for a, b in zip(train.waves, again[0].waves, strict=True))
    assert torch.equal(train.labels, again[0].labels) and again[2] == meta
    other = synthetic(seed=1)
    assert not torch.equal(waves[0], other[0].waves[0])

    feats = raw_features(test)
    assert feats.shape == (100, 2 * meta["n_mels"]) and torch.isfinite(feats).all()
    assert feats[:, meta["n_mels"]:].min() >= 0  # std half


def test_probe_groups_become_class_targets_for_probes(tmp_path):
    """`data.probe_groups: [speaker]`: who speaks, as an extra class target beside the digit."""
    for digit in range(2):
        for k, speaker in enumerate(("ann", "bob", "cy")):
            for take in range(3):
                write(tmp_path / f"{digit}_{speaker}_{take}.wav",
                      tone(0.2, freq=300 + 300 * digit + 40 * k + 5 * take))
    write(tmp_path / "1_dee_0.wav", tone(0.2))  # a test-only speaker
    conf = cfg(tmp_path, label_regex=FSDD_REGEX, test_groups={"index": ["0"]},
               probe_groups=["speaker"])
    train, test, _ = load_data(conf, None)
    speakers = {c.path.name: t for c, t in zip(train.clips, train.probe_targets()["speaker"],
                                                  strict=True)}
    assert speakers["0_ann_1.wav"] == 0 and speakers["1_bob_2.wav"] == 1 and speakers["0_cy_2.wav"] == 2
    test_speakers = dict(zip([c.path.name for c in test.clips], test.probe_targets()["speaker"],
                             strict=True))
    assert test_speakers["1_cy_0.wav"] == 2 and test_speakers["1_dee_0.wav"] == -1  # unseen: unknown
    assert load_data(cfg(tmp_path, label_regex=FSDD_REGEX, test_groups={"index": ["0"]}),
                     None)[0].probe_targets() == {}
    with pytest.raises(ConfigError, match="data.probe_groups: 'voice'"):
        load_data(cfg(tmp_path, label_regex=FSDD_REGEX, test_groups={"index": ["0"]},
                      probe_groups=["voice"]), None)
