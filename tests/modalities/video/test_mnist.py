"""The Moving MNIST generator: IDX reading, determinism, bouncing dynamics and rendering."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from polyjepa.errors import DataError
from polyjepa.modalities.video.mnist import DIGIT, MovingMNIST, read_idx


def write_idx(path, array: np.ndarray, type_code: int = 0x08) -> None:
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def digits(n: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Distinct square blobs as digits: digit k is a filled block of side 8 + k."""
    images = np.zeros((n, DIGIT, DIGIT), dtype=np.uint8)
    for k in range(n):
        side = 8 + k
        images[k, :side, :side] = 200 + k
    return images, np.arange(n) % 10


def test_read_idx_round_trip_plain_and_gzipped(tmp_path):
    images, labels = digits()
    for suffix in ("", ".gz"):
        write_idx(tmp_path / f"img{suffix}", images)
        write_idx(tmp_path / f"lab{suffix}", labels.astype(np.uint8))
        assert np.array_equal(read_idx(tmp_path / f"img{suffix}"), images)
        assert np.array_equal(read_idx(tmp_path / f"lab{suffix}"), labels)


@pytest.mark.parametrize("content,match", [(b"", "not an IDX"), (b"\x01\x02\x08\x01", "not an IDX"),
                                           (bytes([0, 0, 8, 1, 0, 0, 0, 9, 1, 2]), "truncated")])
def test_read_idx_rejects_bad_files_naming_them(tmp_path, content, match):
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(DataError, match=match) as info:
        read_idx(path)
    assert "bad-idx" in str(info.value)


def test_clips_are_deterministic_per_seed_and_index_whatever_the_order():
    gen = MovingMNIST(*digits(), num_frames=8, seed=3)
    late, _ = gen.clip(7)
    first, truth = gen.clip(0)
    again, truth_again = MovingMNIST(*digits(), num_frames=8, seed=3).clip(0)
    assert np.array_equal(first, again) and np.array_equal(truth.velocities, truth_again.velocities)
    assert np.array_equal(late, gen.clip(7)[0])
    assert not np.array_equal(first, MovingMNIST(*digits(), num_frames=8, seed=4).clip(0)[0])
    assert first.shape == (8, 64, 64) and first.dtype == np.uint8


def test_digits_bounce_inside_the_canvas_at_constant_speed():
    gen = MovingMNIST(*digits(), num_frames=200, num_digits=3, speed=(3.0, 6.0), seed=1)
    for i in range(5):
        truth = gen.truth(i)
        path = gen.trajectories(truth)  # [T, D, 2]
        room = 64 - DIGIT
        assert path.min() >= 0 and path.max() <= room + 1e-9
        step = np.abs(np.diff(path, axis=0))  # per axis |dx| <= |vx|, = |vx| away from walls
        assert (step <= np.abs(truth.velocities)[None] + 1e-9).all()
        free = (path[1:] > 6) & (path[1:] < room - 6) & (path[:-1] > 6) & (path[:-1] < room - 6)
        assert np.allclose(step[free], np.broadcast_to(np.abs(truth.velocities), step.shape)[free])
        main = np.abs(truth.velocities).argmax(1)  # >= 2.1 px/frame: crosses the room often
        along = path[:, np.arange(3), main]  # [T, D]
        assert (along.max(0) > room - 6).all() and (along.min(0) < 6).all()  # both walls hit
        assert np.all((truth.speeds >= 3.0) & (truth.speeds <= 6.0))


def test_frames_draw_each_digit_where_its_trajectory_says():
    images, labels = digits()
    gen = MovingMNIST(images, labels, num_frames=5, num_digits=1, seed=2)
    frames, truth = gen.clip(0)
    picks = gen.digit_indices(0)
    corners = np.rint(gen.trajectories(gen.truth(0))).astype(int)
    for t in range(5):
        x, y = corners[t, 0]
        assert np.array_equal(frames[t, y:y + DIGIT, x:x + DIGIT], images[picks[0]])
        assert frames[t].sum() == images[picks[0]].sum()  # nothing else drawn
    assert truth.classes.tolist() == [labels[picks[0]]]


def test_overlapping_digits_take_the_pixelwise_maximum():
    images, labels = digits()
    gen = MovingMNIST(images, labels, num_frames=1, num_digits=2, canvas=DIGIT, seed=0)
    frames, _ = gen.clip(0)  # a 28-pixel canvas: both digits sit at (0, 0)
    picks = gen.digit_indices(0)
    assert np.array_equal(frames[0], np.maximum(images[picks[0]], images[picks[1]]))


def test_bad_settings_are_refused():
    images, labels = digits()
    with pytest.raises(ValueError, match="canvas"):
        MovingMNIST(images, labels, canvas=20)
    with pytest.raises(DataError, match="28, 28"):
        MovingMNIST(images[:, :20], labels)


def test_shared_mnist_digits(shared_data):
    folder = shared_data / "video" / "mnist_t10k"
    if not folder.is_dir():
        pytest.skip(f"MNIST digits not found at {folder}")
    gen = MovingMNIST.from_folder(folder, num_frames=10)
    assert gen.images.shape == (10000, 28, 28) and set(gen.labels.tolist()) == set(range(10))
    frames, truth = gen.clip(0)
    assert frames.shape == (10, 64, 64) and frames.max() > 200
    assert all(0 <= c <= 9 for c in truth.classes)


def test_export_npy_and_mp4_round_trip(tmp_path):
    from polyjepa.modalities.video.export import export_npy, export_videos, main
    from polyjepa.modalities.video.readers import VideoDataConfig

    gen = MovingMNIST(*digits(), num_frames=6, num_digits=2, seed=3)
    path = export_npy(gen, 5, tmp_path / "mm.npy", progress=False)
    array = np.load(path)
    assert array.shape == (5, 6, 64, 64) and array.dtype == np.uint8
    np.testing.assert_array_equal(array[4], gen.clip(4)[0])
    truth = np.load(tmp_path / "mm_truth.npz")
    np.testing.assert_allclose(truth["velocities"][2], gen.truth(2).velocities)
    assert truth["classes"].shape == (5, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mm.npy", "mm_truth.npz"]

    folder = export_videos(gen, 3, tmp_path / "mp4", progress=False)
    manifest = (folder / "manifest.csv").read_text().splitlines()
    assert manifest[0] == "path,label" and len(manifest) == 4
    assert manifest[1] == f"clip_000000.mp4,{gen.truth(0).classes[0]}"
    # polyjepa's own reader reads them back: same frames up to the codec's loss
    from polyjepa.modalities.video import load_file

    cfg = VideoDataConfig(num_frames=6, sampling="uniform", grayscale=True)
    clips = load_file(cfg, str(folder / "manifest.csv"), None, {"class_names": []})
    assert len(clips) == 3
    for k, source in enumerate(clips.sources):
        i = int(source.path.stem.split("_")[1])
        assert source.label == str(gen.truth(i).classes[0])
        decoded = clips[k][0].squeeze(1).numpy() * 255
        assert np.abs(decoded - gen.clip(i)[0]).mean() < 8  # a lossy codec, the same picture
    images, labels = digits()
    (tmp_path / "digits").mkdir()
    write_idx(tmp_path / "digits" / "t10k-images-idx3-ubyte", images)
    write_idx(tmp_path / "digits" / "t10k-labels-idx1-ubyte", labels.astype(np.uint8))
    command = [str(tmp_path / "digits"), "--clips", "2", "--frames", "4", "--out"]
    assert main([*command, str(tmp_path / "cli.npy")]) == 0
    assert np.load(tmp_path / "cli.npy").shape == (2, 4, 64, 64)
    assert main([*command, str(tmp_path / "mp4")]) == 2  # an existing folder is not overwritten
    assert main([str(tmp_path), "--out", str(tmp_path / "x.npy")]) == 2  # no digits there


def test_digits_can_turn_once_at_a_random_frame():
    images, labels = digits()
    gen = MovingMNIST(images, labels, num_frames=10, num_digits=1, canvas=400, speed=(2.0, 2.0),
                      seed=3, turn_at=(4, 4), turn_angles=(90.0,))
    truth = gen.truth(0)
    assert list(truth.turn_steps) == [4] and list(truth.turns) == [0]
    path = gen.trajectories(truth)[:, 0]  # [T, 2]; a wide canvas: no bounce in 10 frames
    steps = np.diff(path, axis=0)
    v = truth.velocities[0]
    assert np.allclose(steps[:4], v)  # straight until frame 4
    assert np.allclose(steps[4:], [-v[1], v[0]])  # then turned by 90 degrees
    several = MovingMNIST(images, labels, num_frames=12, num_digits=1, seed=0, turn_at=(3, 8))
    drawn = [several.truth(i) for i in range(200)]
    assert {int(t.turn_steps[0]) for t in drawn} == set(range(3, 9))
    assert {int(t.turns[0]) for t in drawn} == set(range(5))  # the five default angles
    assert MovingMNIST(images, labels, seed=0).truth(0).turns is None  # off by default
    with pytest.raises(ValueError, match="turn_at"):
        MovingMNIST(images, labels, num_frames=10, turn_at=(0, 4))
