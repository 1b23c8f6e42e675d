"""The unseen-sets benchmark (issue 28): does the default recipe pay on data nobody tuned for?

`data_cards/unseen.md` fixes the 15 sets (7 development, 8 held out, 5 modalities) and the
protocol; this script builds the sets that are not files already, runs the protocol through
polyjepa's CLI (each pretraining and evaluation is the command a user would type) and reports.

1. Sets. Each builder is deterministic, writes only into the data folder (`--data-dir`, default
   OUT/data, i.e. runs/unseen/data) and returns the `data.*` keys that read the set:
   - UCR/UEA series from the `aeon` wheel: `data.path=.../NAME_TRAIN.ts` (the `_TEST` twin is
     found beside it);
   - scikit-learn's tables: `data.path=sklearn:NAME data.target=target` (20 % seeded test split);
   - FSDD digits, speaker-disjoint: the recordings folder, the card's label pattern and
     `data.test_groups={speaker: [theo]}`; FSDD speakers: the same folder, the speaker as the
     label pattern's `label` (stratified 20 % test split);
   - DALES objects: a manifest `path,label` of the `raw_xyz/*.xyz` files (class = file number //
     100: building, car, fence, pole, tree), pointing at the shared files (nothing copied);
   - MNIST point sets: MNIST test images 5,000-5,999, each image's pixels above half intensity
     as points (x, y, 0) in [-1, 1], `.npy` [P, 3] in class folders;
   - Moving MNIST digits (dev): 400 16-frame clips of one digit from images 0-4,999 bouncing in
     a 64 x 64 frame, drawn by polyjepa's own Moving MNIST generator, uint8 `.npy` [T, H, W] in
     class folders by digit;
   - MNIST motion direction (held out): 400 16-frame 64 x 64 clips, clip i showing image
     6,000 + i moving up, down, left or right (100 each, seeded order) at 3 pixels a frame from a
     uniform position, wrapping around the edges (so no single frame tells the direction);
     uint8 `.npy` [T, H, W] in class folders by direction.
   A builder whose source is absent (aeon not installed, `--shared` folder missing) skips its set
   with a message.
2. Runs. For each set, recipe (the modality's `my_*` recipe and `le_jepa_<modality>_demo`) and
   seed: `polyjepa pretrain RECIPE DATA_KEYS train.seed=S [--extra ...] --out
   OUT/SET/RECIPE/seedS` (skipped when its `encoder.pt` exists, continued with `--resume` from
   its last checkpoint when it was interrupted: the benchmark resumes), timed;
   then `polyjepa eval seed0 seed1 seed2 eval.protocols=[linear_probe,label_efficiency]
   eval.shots=[1,5,10] eval.fractions=[1.0] eval.init_seeds=3 --json` (its JSON is kept in
   OUT/SET/RECIPE/unseen_eval_vN.json and reused while no run is newer and N is current).
   Logs: OUT/SET/RECIPE/seedS.log and eval.log. A kept run is kept whatever `--extra` says
   now: use another `--out` for other settings.
3. Output: `name=value` lines (`unseen.<set>.<recipe>.pre5=`, `.rnd5=`, `.raw5=`, `.diff5=`,
   `.lo5=`, `.hi5=`, `.verdict5=`, `.vs_raw5=`, `.all_pre=`, ..., `.selected_steps=`,
   `.wall_s=`), a Markdown table in OUT/unseen_results.md, and per group and recipe kind the
   card's goal (`unseen.summary.<group>.<kind>.hurts=` etc.).

`vs_raw5` is the difference of the pooled means (pretrained − raw features at 5 labels per
class; eval's JSON gives paired intervals against random init and against a modality's label-free
baselines, e.g. MiniRocket for series: `.vs_mrk5=`, `.vs_mrk_lo5=`, `.vs_mrk_hi5=`,
`.vs_mrk_verdict5=`; should it give one against raw features, that one is used).

Usage:
    python benchmarks/unseen.py [--group dev|held-out|all] [--sets wine,iris] [--recipes my,lejepa]
        [--seeds 0,1,2] [--out runs/unseen] [--data-dir DIR] [--shared DIR] [--dry-run]
        [--extra train.max_steps=5 ...]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = REPO / ".." / "shared" / "data"
GROUPS = ("dev", "held-out")
KINDS = ("my", "lejepa")
MY_RECIPES = {"timeseries": "my_series", "tabular": "my_table", "audio": "my_audio",
              "pointcloud": "my_clouds", "video": "my_videos"}
MY_FALLBACK = {"my_series": "ts_jepa_masked"}
"""A `my_*` recipe not shipped yet -> the recipe that takes the same keys until it is."""
SHOTS = (1, 5, 10)
EVAL_VERSION = 2
"""Bumped when `polyjepa eval`'s output gains what the tables read (2: `own_init`, each run's own
step 0), so that kept evaluations are redone."""
EVAL_KEYS = ["eval.protocols=[linear_probe,label_efficiency]", "eval.shots=[1,5,10]",
             "eval.fractions=[1.0]", "eval.init_seeds=3"]
ALL_LABELS = "1_of_labels"  # the budget name of eval.fractions=[1.0]
SHORT = {"pretrained": "pre", "random_init": "rnd", "raw_features": "raw", "minirocket": "mrk",
         "own_init": "own"}
"""Encoders' names in `name=value` keys; others (a baseline eval adds later) keep their own."""
TITLES = {"pretrained": "pretrained", "random_init": "random init", "raw_features": "raw",
          "minirocket": "MiniRocket", "own_init": "own step 0"}
GOAL = {"helps_share": 0.7, "beats_raw_share": 0.5}  # and no set where it hurts

FSDD = "audio/fsdd/recordings"
FSDD_DIGIT_REGEX = r"^(?P<label>\d)_(?P<speaker>[a-z]+)_(?P<index>\d+)\.wav$"
FSDD_SPEAKER_REGEX = r"^\d_(?P<label>[a-z]+)_\d+\.wav$"
DALES = "pointcloud/dales_objects_500/raw_xyz"
DALES_CLASSES = ("building", "car", "fence", "pole", "tree")
MNIST_IMAGES = "video/mnist_t10k/t10k-images-idx3-ubyte.gz"
MNIST_LABELS = "video/mnist_t10k/t10k-labels-idx1-ubyte.gz"
CLIPS, FRAMES, CANVAS = 400, 16, 64
MOTION_SPEED = 3  # pixels per frame (Moving MNIST's are 2-5): 45 pixels in 15 steps, < one lap
DIRECTIONS = {"right": (1.0, 0.0), "left": (-1.0, 0.0), "down": (0.0, 1.0), "up": (0.0, -1.0)}


class Missing(Exception):
    """A set's source is absent: the set is skipped, with this message."""


@dataclass(frozen=True)
class Context:
    """Where builders read (`shared`) and write (`data_dir`); `build=False` (a dry run) returns
    the keys without writing anything."""

    data_dir: Path
    shared: Path
    build: bool = True


@dataclass(frozen=True)
class UnseenSet:
    name: str
    group: str  # dev | held-out
    modality: str
    builder: Callable[[Context], list[str]]
    marked: bool = False  # built from data whose other uses were tuned on (the card marks it)


# ------------------------------------------------------------------------------ set builders
def _shared(ctx: Context, relative: str) -> Path:
    path = ctx.shared / relative
    if not path.exists():
        raise Missing(f"{path} not found (give the shared data folder with --shared)")
    return path


def _materialise(folder: Path, spec: dict, write: Callable[[Path], int]) -> None:
    """Build `folder` with `write(tmp) -> count` unless it holds a build of the same `spec`;
    written into a sibling first and moved into place, so an interrupted build is redone."""
    stamp = folder / ".built.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("spec") == spec:
        return
    tmp = folder.with_name(folder.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    count = write(tmp)
    (tmp / ".built.json").write_text(json.dumps({"spec": spec, "count": count}))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)


def _idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX array (MNIST's format), gzipped."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    if data[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def mnist(ctx: Context) -> tuple[np.ndarray, np.ndarray]:
    """The shared MNIST test digits `[10000, 28, 28]` uint8 and their labels `[10000]`."""
    return _idx(_shared(ctx, MNIST_IMAGES)), _idx(_shared(ctx, MNIST_LABELS))


def ucr(name: str) -> Callable[[Context], list[str]]:
    def build(ctx: Context) -> list[str]:
        spec = importlib.util.find_spec("aeon")
        if spec is None or spec.origin is None:
            raise Missing("aeon is not installed (pip install aeon): its wheel ships the UCR sets")
        path = Path(spec.origin).parent / "datasets" / "data" / name / f"{name}_TRAIN.ts"
        if not path.is_file():
            raise Missing(f"{path} not found in the installed aeon")
        return [f"data.path={path}"]
    return build


def sklearn_table(name: str) -> Callable[[Context], list[str]]:
    def build(ctx: Context) -> list[str]:
        if importlib.util.find_spec("sklearn") is None:
            raise Missing("scikit-learn is not installed")
        return [f"data.path=sklearn:{name}", "data.target=target"]
    return build


def fsdd_digits(ctx: Context) -> list[str]:
    folder = _shared(ctx, FSDD)
    return [f"data.path={folder}", f"data.label_regex={FSDD_DIGIT_REGEX}",
            "data.test_groups={speaker: [theo]}"]


def fsdd_speakers(ctx: Context) -> list[str]:
    return [f"data.path={_shared(ctx, FSDD)}", f"data.label_regex={FSDD_SPEAKER_REGEX}"]


def dales_objects(ctx: Context) -> list[str]:
    raw = _shared(ctx, DALES).resolve()
    folder = ctx.data_dir / "dales_objects"
    manifest = folder / "manifest.csv"
    if ctx.build:
        files = sorted(raw.glob("*.xyz"))

        def write(tmp: Path) -> int:
            with (tmp / "manifest.csv").open("w", newline="") as f:
                out = csv.writer(f)
                out.writerow(["path", "label"])
                for p in files:
                    out.writerow([str(p), DALES_CLASSES[int(p.stem) // 100]])
            return len(files)

        _materialise(folder, {"source": str(raw), "files": len(files)}, write)
    return [f"data.path={manifest}"]


def mnist_points(ctx: Context) -> list[str]:
    folder = ctx.data_dir / "mnist_points"
    if ctx.build:
        images, labels = mnist(ctx)

        def write(tmp: Path) -> int:
            for i in range(5000, 6000):
                rows, cols = np.nonzero(images[i] > 127)  # above half intensity
                points = np.stack([cols / 13.5 - 1.0, 1.0 - rows / 13.5, np.zeros(len(rows))], 1)
                (tmp / str(labels[i])).mkdir(exist_ok=True)
                np.save(tmp / str(labels[i]) / f"{i:05d}.npy", points.astype(np.float32))
            return 1000
        _materialise(folder, {"images": [5000, 6000], "threshold": 127}, write)
    else:
        _shared(ctx, MNIST_IMAGES)
    return [f"data.path={folder}"]


def moving_mnist_digits(ctx: Context) -> list[str]:
    folder = ctx.data_dir / "moving_mnist_digits"
    if ctx.build:
        from polyjepa.modalities.video.mnist import MovingMNIST

        images, labels = mnist(ctx)
        generator = MovingMNIST(images[:5000], labels[:5000], num_frames=FRAMES, num_digits=1,
                                canvas=CANVAS, speed=(2.0, 5.0), seed=0)

        def write(tmp: Path) -> int:
            for i in range(CLIPS):
                frames, truth = generator.clip(i)
                digit = tmp / str(int(truth.classes[0]))
                digit.mkdir(exist_ok=True)
                np.save(digit / f"clip{i:03d}.npy", frames)
            return CLIPS
        _materialise(folder, {"images": [0, 5000], "clips": CLIPS, "frames": FRAMES, "seed": 0},
                     write)
    else:
        _shared(ctx, MNIST_IMAGES)
    return [f"data.path={folder}"]


def motion_clip(digit: np.ndarray, direction: str, rng: np.random.Generator) -> np.ndarray:
    """`[FRAMES, CANVAS, CANVAS]` uint8: `digit` placed at a uniform position of the frame and
    moved `MOTION_SPEED` pixels a frame in `direction`, wrapping around the edges (a torus), so
    that no single frame tells the direction: only the motion does."""
    first = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
    first[:digit.shape[0], :digit.shape[1]] = digit
    first = np.roll(first, tuple(rng.integers(0, CANVAS, 2)), axis=(0, 1))
    dx, dy = DIRECTIONS[direction]
    return np.stack([np.roll(first, (int(dy * MOTION_SPEED * t), int(dx * MOTION_SPEED * t)),
                             axis=(0, 1)) for t in range(FRAMES)])


def mnist_motion(ctx: Context) -> list[str]:
    folder = ctx.data_dir / "mnist_motion"
    if ctx.build:
        images, _ = mnist(ctx)
        names = list(DIRECTIONS)
        order = np.random.default_rng(0).permutation(np.arange(CLIPS) % len(names))  # 100 each

        def write(tmp: Path) -> int:
            for i in range(CLIPS):
                direction = names[order[i]]
                clip = motion_clip(images[6000 + i], direction, np.random.default_rng([0, i]))
                (tmp / direction).mkdir(exist_ok=True)
                np.save(tmp / direction / f"clip{6000 + i}.npy", clip)
            return CLIPS
        _materialise(folder, {"images": [6000, 6000 + CLIPS], "frames": FRAMES,
                              "speed": MOTION_SPEED, "wrap": True, "seed": 0}, write)
    else:
        _shared(ctx, MNIST_IMAGES)
    return [f"data.path={folder}"]


SETS = [
    UnseenSet("ArrowHead", "dev", "timeseries", ucr("ArrowHead")),
    UnseenSet("ItalyPowerDemand", "dev", "timeseries", ucr("ItalyPowerDemand")),
    UnseenSet("wine", "dev", "tabular", sklearn_table("wine")),
    UnseenSet("breast_cancer", "dev", "tabular", sklearn_table("breast_cancer")),
    UnseenSet("fsdd_digits", "dev", "audio", fsdd_digits),
    UnseenSet("dales_objects", "dev", "pointcloud", dales_objects),
    UnseenSet("moving_mnist_digits", "dev", "video", moving_mnist_digits),
    UnseenSet("OSULeaf", "held-out", "timeseries", ucr("OSULeaf")),
    UnseenSet("ACSF1", "held-out", "timeseries", ucr("ACSF1")),
    UnseenSet("PickupGestureWiimoteZ", "held-out", "timeseries", ucr("PickupGestureWiimoteZ")),
    UnseenSet("digits", "held-out", "tabular", sklearn_table("digits")),
    UnseenSet("iris", "held-out", "tabular", sklearn_table("iris")),
    UnseenSet("fsdd_speakers", "held-out", "audio", fsdd_speakers, marked=True),
    UnseenSet("mnist_points", "held-out", "pointcloud", mnist_points, marked=True),
    UnseenSet("mnist_motion", "held-out", "video", mnist_motion, marked=True),
]


def recipe_for(modality: str, kind: str) -> str:
    """The modality's `my_*` recipe (or the one standing in for it) or its LeJEPA demo."""
    if kind == "lejepa":
        return f"le_jepa_{modality}_demo"
    name = MY_RECIPES[modality]
    if name in MY_FALLBACK and not (REPO / "recipes" / f"{name}.yaml").is_file():
        return MY_FALLBACK[name]
    return name


# ------------------------------------------------------------------------------ running
def say(text: str) -> None:
    print(f"[unseen] {text}", file=sys.stderr, flush=True)


def shown(cmd: list[str]) -> str:
    """`cmd` (run as `python -m polyjepa ...`) as a user types it: `polyjepa ...`."""
    return shlex.join(["polyjepa", *cmd[3:]])


def polyjepa(*words: str) -> list[str]:
    return [sys.executable, "-m", "polyjepa", *words]


def last_error(log: Path) -> str:
    lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()] if log.is_file() else []
    errors = [x for x in lines if "error" in x.lower()]
    return (errors or lines or ["(no output)"])[-1].strip()[-300:]


@dataclass
class Row:
    """One set and recipe: its runs and what their evaluation says."""

    set: UnseenSet
    kind: str
    recipe: str
    runs: list[Path] = field(default_factory=list)
    wall: list[float | None] = field(default_factory=list)
    steps: list[str] = field(default_factory=list)
    values: dict[str, float | str] = field(default_factory=dict)
    seed_verdicts: list[str] = field(default_factory=list)
    encoders: list[str] = field(default_factory=list)  # as eval's JSON names them
    versus: list[str] = field(default_factory=list)  # label-free baselines with a paired interval
    error: str = ""


def pretrain(cmd: list[str], run_dir: Path) -> tuple[bool, float | None, str]:
    """Run one pretraining (unless its encoder exists); `(ok, wall seconds, error line)`."""
    stamp = run_dir / "unseen_wall.json"
    if (run_dir / "encoder.pt").is_file():
        if stamp.is_file():
            return True, float(json.loads(stamp.read_text())["wall_s"]), ""
        info = run_dir / "run.json"
        wall = json.loads(info.read_text()).get("wall_s") if info.is_file() else None
        return True, wall, ""
    if (run_dir / "checkpoints" / "last.pt").is_file():  # an interrupted run: continue it
        cmd = [*cmd, "--resume"]
    elif run_dir.exists():  # interrupted before its first checkpoint: nothing to keep
        shutil.rmtree(run_dir)
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    log = run_dir.with_suffix(".log")
    t0 = time.perf_counter()
    with log.open("w") as f:
        f.write(shown(cmd) + "\n")
        f.flush()
        code = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=Path.cwd())
    wall = time.perf_counter() - t0
    if code != 0 or not (run_dir / "encoder.pt").is_file():
        return False, wall, last_error(log)
    stamp.write_text(json.dumps({"wall_s": wall, "command": shown(cmd)}))
    return True, wall, ""


def evaluate(runs: list[Path], folder: Path) -> tuple[dict | None, str]:
    """`polyjepa eval RUNS ... --json` (or its kept result while no run is newer); `(result,
    error line)`; the result is marked `"kept": True` when it was not run again."""
    cmd = polyjepa("eval", *map(str, runs), *EVAL_KEYS, "--json")
    cache = folder / f"unseen_eval_v{EVAL_VERSION}.json"
    newest = max((r / "encoder.pt").stat().st_mtime for r in runs)
    if cache.is_file() and cache.stat().st_mtime > newest:
        kept = json.loads(cache.read_text())
        if kept.get("command") == shown(cmd):
            return {**kept["result"], "kept": True}, ""
    log = folder / "eval.log"
    with log.open("w") as err:
        err.write(shown(cmd) + "\n")
        err.flush()
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    objects = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if done.returncode != 0 or not objects:
        return None, last_error(log)
    result = json.loads(objects[-1])
    cache.write_text(json.dumps({"command": shown(cmd), "result": result}))
    return result, ""


def selected_step(run_dir: Path) -> str:
    info = run_dir / "run.json"
    selection = json.loads(info.read_text()).get("selection") if info.is_file() else None
    return "-" if not selection or selection.get("step") is None else str(selection["step"])


def read_result(row: Row, result: dict) -> None:
    """Fill `row.values` from eval's JSON: pooled label efficiency (several runs) or the run's."""
    per_run = result["runs"] if "runs" in result else {"run": result}
    summary = result.get("label_efficiency", {})
    if "budgets" not in summary:
        row.error = f"no pooled label efficiency ({summary.get('note', 'missing')})"
        return
    budgets = {b["budget"]: b for b in summary["budgets"]}
    for suffix, name in [*((str(k), f"{k}_per_class") for k in SHOTS), ("all", ALL_LABELS)]:
        b = budgets.get(name)
        if b is None:
            continue
        for encoder, stats in b.items():
            if isinstance(stats, dict) and "mean" in stats and encoder != "difference":
                key = SHORT.get(encoder, encoder)
                row.values[f"all_{key}" if suffix == "all" else f"{key}{suffix}"] = stats["mean"]
                row.encoders += [] if encoder in row.encoders else [encoder]
        if b.get("capped"):
            row.values[f"capped{suffix}"] = "yes"
    five = budgets.get("5_per_class")
    if five is None:
        return
    if "difference" in five:
        diff = five["difference"]
        row.values.update(diff5=diff["mean"], lo5=diff["low"], hi5=diff["high"],
                          verdict5=five["verdict"])
    for name, paired in five.get("versus", {}).items():  # e.g. MiniRocket, paired per draw
        key, diff = SHORT.get(name, name), paired["difference"]
        row.values.update({f"vs_{key}5": diff["mean"], f"vs_{key}_lo5": diff["low"],
                           f"vs_{key}_hi5": diff["high"], f"vs_{key}_verdict5": paired["verdict"]})
        row.versus.append(name)
    if "raw5" in row.values and "vs_raw5" not in row.values:  # no paired interval: the means
        row.values["vs_raw5"] = float(five["pretrained"]["mean"]) - float(row.values["raw5"])
    for each in per_run.values():
        b = {x["budget"]: x for x in each.get("label_efficiency", {}).get("budgets", [])}
        row.seed_verdicts.append(b.get("5_per_class", {}).get("verdict", "-"))


def beats_raw(row: Row) -> bool:
    """Pretrained above raw features at 5 per class: the paired verdict where eval gives one,
    else the pooled means."""
    verdict = row.values.get("vs_raw_verdict5")
    return verdict == "helps" if verdict is not None else float(row.values.get("vs_raw5", 0.0)) > 0


def run_row(row: Row, keys: list[str], seeds: list[int], out: Path, extra: list[str],
            progress: Callable[[str], None]) -> None:
    folder = out / row.set.name / row.recipe
    for seed in seeds:
        run_dir = folder / f"seed{seed}"
        cmd = polyjepa("pretrain", row.recipe, *keys, f"train.seed={seed}", *extra,
                       "--out", str(run_dir))
        done = (run_dir / "encoder.pt").is_file()
        progress(f"pretrain {row.set.name} {row.recipe} seed{seed}" + (" (done: kept)" if done else ""))
        ok, wall, error = pretrain(cmd, run_dir)
        row.wall.append(wall)
        row.steps.append(selected_step(run_dir) if ok else "x")
        if ok:
            row.runs.append(run_dir)
            if not done:
                say(f"  ... {wall:.1f} s")
        else:
            row.error = f"seed{seed}: {error}"
            say(f"  ... FAILED after {wall:.1f} s: {error} (log: {run_dir.with_suffix('.log')})")
    if not row.runs:
        return
    say(f"eval {row.set.name} {row.recipe} ({len(row.runs)} run(s))")
    t0 = time.perf_counter()
    result, error = evaluate(row.runs, folder)
    if result is None:
        row.error = row.error or f"eval: {error}"
        say(f"  ... eval FAILED: {error} (log: {folder / 'eval.log'})")
        return
    say("  ... eval kept from an earlier run" if result.pop("kept", False)
        else f"  ... eval {time.perf_counter() - t0:.1f} s")
    read_result(row, result)


# ------------------------------------------------------------------------------ reporting
def fmt(value: float | str | None, digits: int = 4) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def name_values(row: Row) -> list[str]:
    prefix = f"unseen.{row.set.name}.{row.recipe}"
    lines = [f"{prefix}.{k}={fmt(v)}" for k, v in row.values.items()]
    if row.seed_verdicts:
        lines.append(f"{prefix}.seed_verdicts5={'/'.join(row.seed_verdicts)}")
    lines.append(f"{prefix}.selected_steps={'/'.join(row.steps)}")
    walls = [w for w in row.wall if w is not None]
    if walls:
        lines.append(f"{prefix}.wall_s={np.mean(walls):.1f}")
        lines.append(f"{prefix}.wall_s_each={'/'.join(fmt(w, 1) for w in row.wall)}")
    if row.error:
        lines.append(f"{prefix}.error={row.error}")
    return lines


def summaries(rows: list[Row]) -> list[tuple[str, str, dict]]:
    """Per group and recipe kind: sets measured, where pretraining hurts / helps / beats raw."""
    out = []
    for group in GROUPS:
        for kind in KINDS:
            done = [r for r in rows if r.set.group == group and r.kind == kind
                    and "verdict5" in r.values]
            if not done:
                continue
            hurts = sum(r.values["verdict5"] == "hurts" for r in done)
            helps = sum(r.values["verdict5"] == "helps" for r in done)
            raw = sum(beats_raw(r) for r in done)
            s = {"sets": len(done), "hurts": hurts, "helps_share": helps / len(done),
                 "beats_raw_share": raw / len(done)}
            own = [r for r in done if "vs_own_verdict5" in r.values]
            if own:  # against the network each run started from: no initialisation luck
                s["hurts_vs_own"] = sum(r.values["vs_own_verdict5"] == "hurts" for r in own)
                s["helps_vs_own_share"] = sum(r.values["vs_own_verdict5"] == "helps"
                                              for r in own) / len(own)
            s["goal"] = "met" if (hurts == 0 and s["helps_share"] >= GOAL["helps_share"]
                                  and s["beats_raw_share"] >= GOAL["beats_raw_share"]) else "missed"
            out.append((group, kind, s))
    return out


def markdown(rows: list[Row], command: str) -> str:
    encoders = ["pretrained", "random_init", "raw_features"]
    encoders += [e for r in rows for e in r.encoders if e not in encoders]
    encoders = list(dict.fromkeys(encoders))
    versus = list(dict.fromkeys(v for r in rows for v in r.versus if v != "raw_features"))

    def accuracies(row: Row, encoder: str) -> str:
        key = SHORT.get(encoder, encoder)
        cells = [fmt(row.values.get(f"{key}{k}"), 3) + ("*" if f"capped{k}" in row.values else "")
                 for k in SHOTS]
        return " / ".join([*cells, fmt(row.values.get(f"all_{key}"), 3)])

    def against(row: Row, name: str) -> str:
        key = SHORT.get(name, name)
        v = row.values
        if f"vs_{key}_lo5" in v:
            return (f"{v[f'vs_{key}5']:+.3f} [{v[f'vs_{key}_lo5']:+.3f}, {v[f'vs_{key}_hi5']:+.3f}] "
                    f"{v[f'vs_{key}_verdict5']}")
        return f"{v[f'vs_{key}5']:+.3f}" if f"vs_{key}5" in v else "-"

    head = ["group", "set", "recipe", *(f"{TITLES.get(e, e)} 1 / 5 / 10 / all" for e in encoders),
            "pre − rnd at 5 [95 %]", "verdict (seeds)", "pre − raw at 5",
            *(f"pre − {TITLES.get(e, e)} at 5 [95 %]" for e in versus), "selected steps",
            "wall s per run"]
    lines = [f"# Unseen sets: results ({time.strftime('%Y-%m-%d %H:%M')})", "",
             f"Command: `{command}`. Protocol and sets: `data_cards/unseen.md`. Accuracy of a "
             "logistic-regression probe at 1, 5 and 10 labels per class (mean of 10 draws) and with "
             "every label, pooled over the seeds; random init: mean of 3 initialisations per seed; "
             "`*`: some classes have fewer examples than the budget; pre − rnd (and pre − a label-free "
             "baseline such as MiniRocket, where eval gives one): the pooled paired difference, its "
             "95 % interval and verdict; pre − raw: difference of the pooled means (eval gives no "
             "paired interval against raw features). Wall time: each pretraining run, seconds.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        v = r.values
        diff = (f"{v['diff5']:+.3f} [{v['lo5']:+.3f}, {v['hi5']:+.3f}]" if "diff5" in v else "-")
        verdict = f"{v.get('verdict5', '-')} ({', '.join(r.seed_verdicts)})" if r.seed_verdicts else "-"
        if r.error:
            verdict += f" — error: {r.error}"
        walls = "/".join(fmt(w, 0) for w in r.wall)
        cells = [r.set.group, r.set.name + (" (marked)" if r.set.marked else ""), r.recipe,
                 *(accuracies(r, e) for e in encoders), diff, verdict,
                 against(r, "raw_features"), *(against(r, e) for e in versus),
                 "/".join(r.steps) or "-", walls]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## The card's goal (at 5 labels per class: never hurts, helps on >= 70 % of the "
              "sets, beats the raw features on >= half)", ""]
    for group, kind, s in summaries(rows):
        lines.append(f"- {group}, {kind} recipes: {s['sets']} sets; hurts on {s['hurts']}; helps on "
                     f"{s['helps_share']:.0%}; beats raw on {s['beats_raw_share']:.0%}; goal "
                     f"{s['goal']}" + (" (the goal is stated for this group)"
                                       if (group, kind) == ("held-out", "my") else "")
                     + (f"; against each run's own step 0: hurts on {s['hurts_vs_own']}, helps "
                        f"on {s['helps_vs_own_share']:.0%}" if "hurts_vs_own" in s else ""))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ main
def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--group", choices=[*GROUPS, "all"], default="all")
    p.add_argument("--sets", help="comma-separated set names (default: every set of --group): "
                                  + ", ".join(s.name for s in SETS))
    p.add_argument("--recipes", default="my,lejepa", help="my, lejepa or both (comma-separated)")
    p.add_argument("--seeds", default="0,1,2", help="pretraining seeds (comma-separated)")
    p.add_argument("--out", type=Path, default=Path("runs/unseen"))
    p.add_argument("--data-dir", type=Path, help="where built sets go (default: OUT/data)")
    p.add_argument("--shared", type=Path, default=DEFAULT_SHARED,
                   help="the shared data folder (default: ../shared/data beside the repository)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--extra", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="overrides appended to every pretraining, e.g. train.max_steps=5")
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.recipes.split(",") if k.strip()]
    if not kinds or set(kinds) - set(KINDS):
        p.error(f"--recipes: give my, lejepa or both, not {args.recipes!r}")
    args.kinds = [k for k in KINDS if k in kinds]
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds: comma-separated integers, not {args.seeds!r}")
    chosen = [s for s in SETS if args.group == "all" or s.group == args.group]
    if args.sets:
        wanted = [w.strip().lower() for w in args.sets.split(",") if w.strip()]
        names = {s.name.lower(): s for s in SETS}
        unknown = [w for w in wanted if w not in names]
        if unknown:
            p.error(f"--sets: unknown {', '.join(unknown)}; sets: {', '.join(s.name for s in SETS)}")
        chosen = [s for s in chosen if s.name.lower() in wanted]
    args.chosen = chosen
    bad = [e for e in args.extra if "=" not in e]
    if bad:
        p.error(f"--extra takes key=value overrides, not {' '.join(bad)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    out = args.out
    ctx = Context((args.data_dir or out / "data").resolve(), args.shared.resolve(),
                  build=not args.dry_run)
    planned: list[tuple[UnseenSet, list[str]]] = []
    for s in args.chosen:
        try:
            if ctx.build:
                say(f"set {s.name}: preparing")
            planned.append((s, s.builder(ctx)))
        except Missing as exc:
            say(f"skip set {s.name}: {exc}")
    if "my" in args.kinds:
        for modality in sorted({s.modality for s, _ in planned}):
            if recipe_for(modality, "my") != MY_RECIPES[modality]:
                say(f"{MY_RECIPES[modality]} is not shipped yet: {recipe_for(modality, 'my')} "
                    "(same keys) stands in for it")
    total = len(planned) * len(args.kinds) * len(args.seed_list)
    if args.dry_run:
        for s, keys in planned:
            for kind in args.kinds:
                recipe = recipe_for(s.modality, kind)
                runs = [out / s.name / recipe / f"seed{seed}" for seed in args.seed_list]
                for seed, run_dir in zip(args.seed_list, runs, strict=True):
                    cmd = polyjepa("pretrain", recipe, *keys, f"train.seed={seed}", *args.extra,
                                   "--out", str(run_dir))
                    print(shown(cmd) + ("  # done: encoder.pt exists"
                                        if (run_dir / "encoder.pt").is_file() else ""))
                print(shown(polyjepa("eval", *map(str, runs), *EVAL_KEYS, "--json")))
        say(f"dry run: {len(planned)} sets, {total} pretraining runs")
        return 0
    command = shlex.join(["python", "benchmarks/unseen.py", *(sys.argv[1:] if argv is None else argv)])
    rows: list[Row] = []
    count = 0

    def progress(text: str) -> None:
        nonlocal count
        count += 1
        say(f"{count}/{total} {text}")

    out.mkdir(parents=True, exist_ok=True)
    for s, keys in planned:
        for kind in args.kinds:
            row = Row(s, kind, recipe_for(s.modality, kind))
            rows.append(row)
            run_row(row, keys, args.seed_list, out, args.extra, progress)
            print("\n".join(name_values(row)), flush=True)
            (out / "unseen_results.md").write_text(markdown(rows, command))
    for group, kind, s in summaries(rows):
        for key, value in s.items():
            print(f"unseen.summary.{group}.{kind}.{key}={fmt(value)}")
    say(f"table: {out / 'unseen_results.md'}")
    return 1 if any(r.error for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
