"""Video throughput, in one run (ratios are what to read; these machines are shared and noisy):

(a) clip decoding: 16-frame clips at random starts of a 600-frame 320 x 240 H.264 video (a key
    frame every 50), read with the plugin's seeking reader vs decoding the file from the start
    and keeping the clip's frames (what a reader without seeking does), clips/s and their ratio;
(b) Moving MNIST generation, clips/s (the shared MNIST digits when POLYJEPA_DATA_ROOT holds them,
    else synthetic digit images of the same size: the generator's cost does not depend on them);
(c) training samples/s of VJ-VCR (vj_vcr_demo) vs the generative pixel baseline
    (video_pixel_baseline) on the same model and clips (64 x 64 Moving MNIST, 15 frames; the
    synthetic 32 x 32 clips without the shared digits), and of the tubelet ViT (video_tube_jepa).

Rounds alternate A and B (ABBA) and the median of per-round ratios is reported. Prints:

    decode_seek_clips_per_s=...  decode_full_clips_per_s=...  decode_seek_speedup=...
    mmnist_clips_per_s=...
    vj_vcr_train_samples_per_s=...  pixel_baseline_train_samples_per_s=...
    vj_vcr_vs_pixel_speedup=...  tube_jepa_train_samples_per_s=...

Usage: python benchmarks/bench_video.py [--rounds 6] [--clips 8] [--train-steps 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import av
import numpy as np
from timing import abba, timed, train_samples_per_s

from polyjepa.modalities.video.export import write_video
from polyjepa.modalities.video.mnist import DIGIT, MovingMNIST
from polyjepa.modalities.video.readers import VideoSource, probe, read_frames

FRAMES, CLIP = 600, 16


def moving_pattern(num_frames: int, height: int = 240, width: int = 320) -> np.ndarray:
    """RGB frames of a moving gradient with noise, so the encoder cannot skip them."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:height, :width]
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        base = ((x + 3 * t) % 256 + (y // 2)) % 256
        noise = rng.integers(0, 16, (height, width))
        frames[t] = np.stack([base, (base + 85) % 256, (base + noise) % 256], axis=-1)
    return frames


def decode_full(path: Path, indices: list[int]) -> np.ndarray:
    """Decode from the first frame and keep `indices` (no seeking)."""
    wanted, out = set(indices), {}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                out[i] = frame.to_ndarray(format="rgb24")
            if i >= max(indices):
                break
    return np.stack([out[i] for i in indices])


def bench_decoding(rounds: int, clips: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.mp4"
        write_video(path, moving_pattern(FRAMES), gop=50)
        count, size = probe(path)
        source = VideoSource(path, None, count, size)
        starts = np.random.default_rng(1).integers(0, count - CLIP, clips)
        clip_indices = [list(range(s, s + CLIP)) for s in starts]
        first = clip_indices[0]
        seek = read_frames(source, first, None, gray=False)
        assert np.array_equal(seek, decode_full(path, first)), "seeking decode differs"
        t_full, t_seek, ratio = abba(
            lambda: [decode_full(path, ix) for ix in clip_indices],
            lambda: [read_frames(source, ix, None, gray=False) for ix in clip_indices], rounds)
    print(f"decode_seek_clips_per_s={clips / t_seek:.1f}")
    print(f"decode_full_clips_per_s={clips / t_full:.1f}")
    print(f"decode_seek_speedup={1 / ratio:.2f}")


def shared_digits() -> Path | None:
    root = os.environ.get("POLYJEPA_DATA_ROOT")
    folder = Path(root) / "video" / "mnist_t10k" if root else None
    return folder if folder is not None and folder.is_dir() else None


def mnist_generator() -> MovingMNIST:
    folder = shared_digits()
    if folder is not None:
        return MovingMNIST.from_folder(folder, num_frames=20, num_digits=2)
    images = np.random.default_rng(0).integers(0, 256, (1000, DIGIT, DIGIT), dtype=np.uint8)
    return MovingMNIST(images, np.arange(1000) % 10, num_frames=20, num_digits=2)


def bench_generation(clips: int = 500) -> None:
    generator = mnist_generator()
    seconds = timed(lambda: [generator.clip(i) for i in range(clips)])
    print(f"mmnist_clips_per_s={clips / seconds:.1f}")


def bench_training(steps: int, rounds: int) -> None:
    data = (["data.moving_mnist.train_clips=256", "data.moving_mnist.test_clips=32"]
            if shared_digits() else ["synthetic=true"])  # synthetic: 16 frames of 32 x 32
    rates: dict[str, list[float]] = {"vj_vcr_demo": [], "video_pixel_baseline": []}
    for r in range(max(rounds // 2, 1)):
        order = list(rates) if r % 2 == 0 else list(rates)[::-1]
        for recipe in order:
            rates[recipe].append(train_samples_per_s(recipe, data, steps))
    vcr, pixel = (float(np.median(v)) for v in rates.values())
    ratio = float(np.median([a / b for a, b in zip(*rates.values(), strict=True)]))
    print(f"vj_vcr_train_samples_per_s={vcr:.1f}")
    print(f"pixel_baseline_train_samples_per_s={pixel:.1f}")
    print(f"vj_vcr_vs_pixel_speedup={ratio:.2f}")
    tubes = train_samples_per_s("video_tube_jepa", data, steps)
    print(f"tube_jepa_train_samples_per_s={tubes:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--train-steps", type=int, default=4)
    args = parser.parse_args()
    bench_decoding(args.rounds, args.clips)
    bench_generation()
    bench_training(args.train_steps, args.rounds)


if __name__ == "__main__":
    main()
