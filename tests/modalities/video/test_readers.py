"""Video readers: PyAV files (seeking), frame folders and arrays, clip sampling, bad inputs."""

from __future__ import annotations

import av
import numpy as np
import pytest
import torch
from _helpers import logged
from PIL import Image

from polyjepa.errors import DataError
from polyjepa.files import list_files
from polyjepa.modalities.video.export import write_video
from polyjepa.modalities.video.readers import (
    VideoClips,
    VideoDataConfig,
    clip_indices,
    is_frame_folder,
    probe,
    probe_sources,
    read_frames,
)


def numbered_frames(n: int, h: int = 32, w: int = 48) -> np.ndarray:
    """Frames whose brightness encodes their index (k * 8 + 4), so decoded order is checkable."""
    values = (np.arange(n) * 8 + 4).astype(np.uint8)
    return np.broadcast_to(values[:, None, None, None], (n, h, w, 3)).copy()


def brightness(frames: np.ndarray) -> list[int]:
    return [int(round((float(f.mean()) - 4) / 8)) for f in frames]


def source(path, label=None):
    from polyjepa.modalities.video.readers import VideoSource

    count, size = probe(path)
    return VideoSource(path, label, count, size)


def test_mp4_probe_and_seeking_decode_give_the_asked_frames(tmp_path):
    path = tmp_path / "a.mp4"
    write_video(path, numbered_frames(30))
    assert probe(path) == (30, (32, 48))
    frames = read_frames(source(path), [22, 24, 26], None, gray=False)
    assert frames.shape == (3, 32, 48, 3) and brightness(frames) == [22, 24, 26]
    small = read_frames(source(path), [3], (16, 24), gray=True)  # scaled while decoding
    assert small.shape == (1, 16, 24, 1) and brightness(small) == [3]


@pytest.mark.parametrize("suffix,codec", [(".avi", "mpeg4"), (".webm", "libvpx-vp9"),
                                          (".mkv", "mpeg4"), (".gif", "gif")])
def test_other_containers(tmp_path, suffix, codec):
    if codec not in av.codecs_available:
        pytest.skip(f"this FFmpeg has no {codec} encoder")
    path = tmp_path / f"a{suffix}"
    write_video(path, numbered_frames(12), codec=codec)
    count, size = probe(path)
    assert count == 12 and size == (32, 48)
    assert brightness(read_frames(source(path), [5], None, gray=False)) == [5]


def test_frame_folder_and_arrays(tmp_path):
    folder = tmp_path / "cls" / "clip"
    folder.mkdir(parents=True)
    for k, frame in enumerate(numbered_frames(6)):
        Image.fromarray(frame).save(folder / f"{k:03d}.png")
    assert is_frame_folder(folder) and not is_frame_folder(tmp_path / "cls")
    assert probe(folder) == (6, (32, 48))
    assert brightness(read_frames(source(folder), [4, 1], None, gray=False)) == [4, 1]
    np.save(tmp_path / "gray.npy", numbered_frames(5)[..., 0])  # [T, H, W]
    np.savez(tmp_path / "rgb.npz", video=numbered_frames(5))
    for name in ("gray.npy", "rgb.npz"):
        assert probe(tmp_path / name) == (5, (32, 48))
        frames = read_frames(source(tmp_path / name), [2], (8, 8), gray=False)
        assert frames.shape == (1, 8, 8, 3) and brightness(frames) == [2]


def test_listing_finds_files_and_frame_folders_with_class_labels(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "jump" / "clip1").mkdir(parents=True)
    write_video(tmp_path / "run" / "a.mp4", numbered_frames(8))
    for k, frame in enumerate(numbered_frames(8)):
        Image.fromarray(frame).save(tmp_path / "jump" / "clip1" / f"{k}.jpg")
    cfg = VideoDataConfig(path=str(tmp_path))
    files, _ = list_files(str(tmp_path), cfg, None, "data.path", "videos", is_frame_folder)
    assert sorted((f.path.name, f.label) for f in files) == [("a.mp4", "run"), ("clip1", "jump")]


def test_clip_sampling_random_centred_uniform_and_short_policies(tmp_path):
    path = tmp_path / "a.mp4"
    write_video(path, numbered_frames(30))
    src = source(path, "x")
    clips = VideoClips([src], ["x"], VideoDataConfig(num_frames=4, frame_stride=3))
    clip, label = clips[0]
    assert clip.shape == (4, 3, 32, 48) and 0 <= clip.min() and clip.max() <= 1 and label == 0
    assert brightness((clip * 255).permute(0, 2, 3, 1).numpy()) == [10, 13, 16, 19]  # centred
    g = lambda s: torch.Generator().manual_seed(s)  # noqa: E731
    starts = {brightness((clips.sample(0, g(s))[0] * 255).permute(0, 2, 3, 1).numpy())[0]
              for s in range(150)}
    assert min(starts) == 0 and max(starts) == 30 - 10 and len(starts) > 8  # every start reachable
    assert torch.equal(clips.sample(0, g(5))[0], clips.sample(0, g(5))[0])
    uniform = VideoClips([src], ["x"], VideoDataConfig(num_frames=4, sampling="uniform"))
    assert brightness((uniform[0][0] * 255).permute(0, 2, 3, 1).numpy()) == [0, 10, 19, 29]
    assert clip_indices(5, 4, 2, 0, "loop") == [0, 2, 4, 1]
    assert clip_indices(5, 4, 2, 0, "pad") == [0, 2, 4, 4]


def test_short_videos_are_counted_and_skipped_or_kept(tmp_path, caplog):
    from polyjepa.files import LabelledFile

    write_video(tmp_path / "short.mp4", numbered_frames(3))
    write_video(tmp_path / "long.mp4", numbered_frames(20))
    files = [LabelledFile(tmp_path / "short.mp4", None), LabelledFile(tmp_path / "long.mp4", None)]
    with logged(caplog, "1 videos are shorter than a clip .* skipped"):
        kept = probe_sources(files, VideoDataConfig(num_frames=8, short_policy="skip"), "data")
    assert [s.path.name for s in kept] == ["long.mp4"]
    with logged(caplog, "looped"):
        kept = probe_sources(files, VideoDataConfig(num_frames=8), "data")
    clip = VideoClips(kept, [], VideoDataConfig(num_frames=8))[0][0]
    assert brightness((clip * 255).permute(0, 2, 3, 1).numpy()) == [0, 1, 2, 0, 1, 2, 0, 1]


def test_bad_inputs_are_named_data_errors(tmp_path):
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("this is not a video")
    with pytest.raises(DataError, match="notes.mp4.*not a video"):
        probe(not_video)
    empty = tmp_path / "empty.mp4"
    write_video(empty, numbered_frames(0))  # a container with a header and no frame
    assert empty.stat().st_size > 0
    with pytest.raises(DataError, match="empty.mp4.*no frames"):
        probe(empty)
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(numbered_frames(1)[0]).save(folder / "0.png")
    Image.fromarray(numbered_frames(1, 16, 16)[0]).save(folder / "1.png")
    with pytest.raises(DataError, match="different sizes.*0.png is 32x48.*1.png is 16x16"):
        probe(folder)
    np.save(tmp_path / "flat.npy", np.zeros((4, 5)))
    with pytest.raises(DataError, match="flat.npy.*T, H, W"):
        probe(tmp_path / "flat.npy")


def test_a_4k_video_is_decoded_at_the_asked_size(tmp_path):
    path = tmp_path / "uhd.mp4"
    frames = np.zeros((3, 2160, 3840, 3), dtype=np.uint8)
    frames[:, :1080] = 200  # top half bright
    write_video(path, frames, gop=3)
    assert probe(path) == (3, (2160, 3840))
    out = read_frames(source(path), [2], (90, 160), gray=True)
    assert out.shape == (1, 90, 160, 1)
    assert out[0, :40].mean() > 150 and out[0, 50:].mean() < 50


def test_load_data_splits_class_folders_and_reads_clips(tmp_path):
    from polyjepa.modalities.video import load_data, raw_features

    for label in ("up", "down"):
        (tmp_path / label).mkdir()
        for k in range(5):
            write_video(tmp_path / label / f"{k}.mp4", numbered_frames(12, 16, 16))
    cfg = VideoDataConfig(path=str(tmp_path), num_frames=4, frame_stride=2, size=[8, 8],
                          grayscale=True, test_fraction=0.2)
    train, test, meta = load_data(cfg, None)
    assert (len(train), len(test)) == (8, 2) and meta["class_names"] == ["down", "up"]
    assert meta["num_frames"] == 4 and meta["channels"] == 1 and meta["frame_size"] == [8, 8]
    assert sorted(test.labels.tolist()) == [0, 1]  # stratified
    assert raw_features(test).shape == (2, 4 * 64)


def test_moving_mnist_as_a_data_source(tmp_path):
    from polyjepa.modalities.video import load_data
    from polyjepa.modalities.video.mnist import MovingMNISTConfig

    from .test_mnist import digits, write_idx

    images, labels = digits(20)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", images)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels.astype(np.uint8))
    cfg = VideoDataConfig(path=str(tmp_path), num_frames=6, test_fraction=0.25,
                          moving_mnist=MovingMNISTConfig(train_clips=30, test_clips=10))
    train, test, meta = load_data(cfg, None)
    assert (len(train), len(test)) == (30, 10) and meta["frame_size"] == [64, 64]
    clip, label = train[3]
    assert clip.shape == (6, 1, 64, 64) and int(label) == train.truth(3).classes[0]
    # test clips only use the held-out quarter of the digit images
    assert set(test.generator.labels.tolist()) <= set(labels[15:].tolist())
    assert torch.equal(train[3][0], train[3][0])  # deterministic


def test_nan_frames_in_an_array_are_a_named_error(tmp_path):
    frames = np.random.rand(4, 8, 8).astype(np.float32)
    frames[2, 3, 3] = np.nan
    np.save(tmp_path / "nan.npy", frames)
    with pytest.raises(DataError, match="nan.npy.*NaN"):
        read_frames(source(tmp_path / "nan.npy"), [0, 2], None, gray=True)
