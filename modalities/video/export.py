"""Write videos, and export generated Moving MNIST for other tools.

    python -m polyjepa.modalities.video.export DIGITS_DIR --clips 10000 --out mmnist.npy
    python -m polyjepa.modalities.video.export DIGITS_DIR --clips 500 --out mmnist_mp4/

`.npy` output: one uint8 array `[N, T, H, W]` (note: the original Moving MNIST file,
`mnist_test_seq.npy`, is `[T, N, H, W]`), written as it is generated. A folder: one `.mp4` per
clip and a `manifest.csv` (`path,label`, the class of the first digit) that polyjepa's video
reader and other tools read. Either way `<out>_truth.npz` (or `truth.npz` in the folder) holds
every clip's ground truth: `classes [N, D]`, initial `positions [N, D, 2]` and `velocities
[N, D, 2]` (pixels per frame, x right, y down). Outputs appear only when complete.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
from tqdm.auto import tqdm

from polyjepa.errors import DataError
from polyjepa.extras import require
from polyjepa.modalities.video.mnist import MovingMNIST

CODECS = ("libx264", "mpeg4")  # the first the installed FFmpeg can encode


def _av() -> ModuleType:
    return require("av", "video", "writing video files")


def default_codec() -> str:
    return next(c for c in CODECS if c in _av().codecs_available)


def write_video(path: str | Path, frames: np.ndarray, rate: int = 25, codec: str | None = None,
                gop: int = 10) -> None:
    """Encode `[T, H, W]` (gray) or `[T, H, W, 3]` (RGB) uint8 frames into a video file.

    `codec` defaults to H.264 when the installed FFmpeg has it, else MPEG-4 part 2; `gif` writes
    a palette GIF. Frames are written to a temporary file renamed into place when complete.
    """
    path = Path(path)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{path}: frames must be uint8 [T, H, W] or [T, H, W, 3], got "
                         f"{frames.dtype} {list(frames.shape)}")
    av = _av()
    codec = codec or default_codec()
    tmp = path.with_name(f".{path.name}.tmp{path.suffix}")
    try:
        with av.open(str(tmp), "w") as container:
            stream = container.add_stream(codec, rate=rate)
            stream.height, stream.width = frames.shape[1:3]
            stream.pix_fmt = "rgb8" if codec == "gif" else "yuv420p"
            stream.codec_context.gop_size = gop
            container.start_encoding()  # a header even for zero frames
            for frame in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _truth(generator: MovingMNIST, num_clips: int) -> dict[str, np.ndarray]:
    truths = [generator.truth(i) for i in range(num_clips)]
    return {"classes": np.stack([t.classes for t in truths]),
            "positions": np.stack([t.positions for t in truths]),
            "velocities": np.stack([t.velocities for t in truths])}


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez(tmp, **arrays)  # type: ignore[arg-type]  # array names, never the allow_pickle flag
    os.replace(tmp, path)


def export_npy(generator: MovingMNIST, num_clips: int, out: str | Path,
               progress: bool = True) -> Path:
    """Clips `0..num_clips-1` as one `[N, T, H, W]` uint8 `.npy` (memory-mapped while written)
    and their ground truth beside it (`<stem>_truth.npz`); returns the `.npy` path."""
    out = Path(out)
    side = generator.canvas
    tmp = out.with_name(f".{out.name}.tmp.npy")
    try:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                          shape=(num_clips, generator.num_frames, side, side))
        for i in tqdm(range(num_clips), desc="clips", unit="clip", disable=not progress):
            array[i] = generator.clip(i)[0]
        array.flush()
        del array
        _save_npz(out.with_name(out.stem + "_truth.npz"), _truth(generator, num_clips))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def export_videos(generator: MovingMNIST, num_clips: int, out: str | Path, rate: int = 10,
                  progress: bool = True) -> Path:
    """Clips as `clip_000000.mp4 …` in folder `out` with `manifest.csv` and `truth.npz`; the
    folder is built beside `out` and renamed into place when complete."""
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; export into a new folder")
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        rows = []
        for i in tqdm(range(num_clips), desc="clips", unit="clip", disable=not progress):
            frames, truth = generator.clip(i)
            name = f"clip_{i:06d}.mp4"
            write_video(tmp / name, frames, rate=rate)
            rows.append((name, int(truth.classes[0])))
        with open(tmp / "manifest.csv", "w", newline="") as f:
            csv.writer(f).writerows([("path", "label"), *rows])
        _save_npz(tmp / "truth.npz", _truth(generator, num_clips))
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m polyjepa.modalities.video.export",
                                     description="Export generated Moving MNIST clips.")
    parser.add_argument("digits", help="folder with the MNIST IDX files")
    parser.add_argument("--out", required=True, help="a .npy file, or a new folder for .mp4 clips")
    parser.add_argument("--clips", type=int, default=10000)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--num-digits", type=int, default=2)
    parser.add_argument("--canvas", type=int, default=64)
    parser.add_argument("--speed", type=float, nargs=2, default=(2.0, 5.0))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rate", type=int, default=10, help="frames per second of .mp4 clips")
    args = parser.parse_args(argv)
    try:
        generator = MovingMNIST.from_folder(args.digits, num_frames=args.frames,
                                            num_digits=args.num_digits, canvas=args.canvas,
                                            speed=tuple(args.speed), seed=args.seed)
        if args.out.endswith(".npy"):
            path = export_npy(generator, args.clips, args.out)
        else:
            path = export_videos(generator, args.clips, args.out, rate=args.rate)
    except (DataError, ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
