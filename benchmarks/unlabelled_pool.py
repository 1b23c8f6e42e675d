"""What an unlabelled pool (`data.unlabelled`) does to the 5-per-class verdict (issue 28, item 3).

Each experiment has a small labelled set, a test split and an unlabelled pool disjoint from
both, and runs the modality's `my_*` recipe twice per seed, as a user would: on the labelled
set alone, and with the pool added (`data.unlabelled=POOL`); `polyjepa eval` then pools the seeds
of each (label efficiency, 5 labels per class, paired against 3 random initialisations).

* `fsdd_two_speakers` (audio): FSDD digits of george and jackson labelled (1,000 clips), theo's
  the test split, the other speakers' 1,500 clips the pool ("other speakers' clips").
* `italy_pool` (time series): ItalyPowerDemand's 67 training series labelled, the first 500 of
  its test file the test split, the other 529 the pool (as an unlabelled `.npy` [N, 1, 24]).
* `adult_pool` (tabular): 300 rows of UCI Adult's training file labelled, 2,000 others the test
  split, 1,500 others without the income column the pool.

ItalyPowerDemand and FSDD digits are development-group sets of `data_cards/unseen.md`, Adult
the tabular demo's own table; nothing of the held-out group is used. Runs resume (a run with
an `encoder.pt` is kept).

Usage:
    python benchmarks/unlabelled_pool.py [--experiments fsdd_two_speakers,italy_pool]
        [--seeds 0,1,2] [--out runs/pool] [--shared ../shared/data]
Prints `pool.<experiment>.<alone|pooled>.<key>=value` lines and writes OUT/pool_results.md.
"""

from __future__ import annotations

import argparse
import csv
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from unseen import (
    DEFAULT_SHARED,
    FSDD,
    REPO,
    Context,
    Missing,
    Row,
    UnseenSet,
    _materialise,
    _shared,
    fmt,
    name_values,
    run_row,
    say,
    ucr,
)

LABELLED_SPEAKERS = ("george", "jackson")
TEST_SPEAKER = "theo"
ITALY_TEST = 500
ADULT_PARTS = ((0, 300), (300, 2300), (2300, 3800))  # labelled, test, pool rows (shuffled)


def fsdd_two_speakers(ctx: Context) -> tuple[list[str], list[str]]:
    """Manifests `path,label,split` (two speakers train, theo test) and `path` (the others)."""
    recordings = _shared(ctx, FSDD)
    folder = ctx.data_dir / "fsdd_two_speakers"

    def write(tmp: Path) -> int:
        clips = sorted(recordings.glob("*.wav"))
        with (tmp / "labelled.csv").open("w", newline="") as f:
            out = csv.writer(f)
            out.writerow(["path", "label", "split"])
            for clip in clips:
                digit, speaker, _ = clip.stem.split("_")
                if speaker in LABELLED_SPEAKERS or speaker == TEST_SPEAKER:
                    out.writerow([clip, digit, "test" if speaker == TEST_SPEAKER else "train"])
        pool = [c for c in clips if c.stem.split("_")[1] not in (*LABELLED_SPEAKERS, TEST_SPEAKER)]
        (tmp / "pool.csv").write_text("path\n" + "".join(f"{c}\n" for c in pool))
        return len(clips)

    if ctx.build:
        _materialise(folder, {"labelled": LABELLED_SPEAKERS, "test": TEST_SPEAKER}, write)
    return [f"data.path={folder / 'labelled.csv'}"], [f"data.unlabelled={folder / 'pool.csv'}"]


def italy_pool(ctx: Context) -> tuple[list[str], list[str]]:
    """The training file as it is; the test file split into a 500-series test file and a pool."""
    train = Path(ucr("ItalyPowerDemand")(ctx)[0].split("=", 1)[1])
    folder = ctx.data_dir / "italy_pool"

    def write(tmp: Path) -> int:
        from polyjepa.modalities.timeseries.readers import read_ts

        lines = train.with_name("ItalyPowerDemand_TEST.ts").read_text().splitlines()
        start = next(i for i, line in enumerate(lines) if line.strip().lower() == "@data") + 1
        body = [line for line in lines[start:] if line.strip()]
        (tmp / "test.ts").write_text("\n".join(lines[:start] + body[:ITALY_TEST]) + "\n")
        (tmp / "pool.ts").write_text("\n".join(lines[:start] + body[ITALY_TEST:]) + "\n")
        pool = read_ts(tmp / "pool.ts")
        np.save(tmp / "pool.npy", np.stack(pool.series).astype(np.float32))  # no labels
        (tmp / "pool.ts").unlink()
        return len(body)

    if ctx.build:
        _materialise(folder, {"test": ITALY_TEST}, write)
    return ([f"data.path={train}", f"data.test_path={folder / 'test.ts'}"],
            [f"data.unlabelled={folder / 'pool.npy'}"])


def adult_pool(ctx: Context) -> tuple[list[str], list[str]]:
    """UCI Adult's training file (bundled): 300 labelled rows, 2,000 test rows and a pool of
    1,500 other rows without the income column, drawn disjoint and seeded."""
    import pandas as pd

    folder = ctx.data_dir / "adult_pool"
    source = REPO / "modalities" / "tabular" / "data" / "adult-train.csv.gz"

    def write(tmp: Path) -> int:
        frame = pd.read_csv(source, header=None, skipinitialspace=True)
        frame.columns = [*(f"c{i}" for i in range(frame.shape[1] - 1)), "income"]
        order = np.random.default_rng(0).permutation(len(frame))
        labelled, test, pool = (frame.iloc[order[a:b]] for a, b in ADULT_PARTS)
        labelled.to_csv(tmp / "labelled.csv", index=False)
        test.to_csv(tmp / "test.csv", index=False)
        pool.drop(columns=["income"]).to_csv(tmp / "pool.csv", index=False)
        return len(frame)

    if ctx.build:
        _materialise(folder, {"parts": ADULT_PARTS}, write)
    return ([f"data.path={folder / 'labelled.csv'}", f"data.test_path={folder / 'test.csv'}",
             "data.target=income"], [f"data.unlabelled={folder / 'pool.csv'}"])


EXPERIMENTS: dict[str, tuple[str, str, Callable[[Context], tuple[list[str], list[str]]]]] = {
    "fsdd_two_speakers": ("audio", "my_audio", fsdd_two_speakers),
    "italy_pool": ("timeseries", "my_series", italy_pool),
    "adult_pool": ("tabular", "my_table", adult_pool),
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--experiments", default=",".join(EXPERIMENTS))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", type=Path, default=Path("runs/pool"))
    p.add_argument("--shared", type=Path, default=DEFAULT_SHARED)
    args = p.parse_args(argv)
    names = [n.strip() for n in args.experiments.split(",") if n.strip()]
    unknown = sorted(set(names) - set(EXPERIMENTS))
    if unknown:
        p.error(f"--experiments: unknown {', '.join(unknown)}; known: {', '.join(EXPERIMENTS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    ctx = Context((args.out / "data").resolve(), args.shared.resolve())
    lines, failed = [], False
    for name in names:
        modality, recipe, build = EXPERIMENTS[name]
        try:
            keys, pool = build(ctx)
        except Missing as exc:
            say(f"skip {name}: {exc}")
            continue
        for variant, extra in (("alone", []), ("pooled", pool)):
            row = Row(UnseenSet(f"{name}_{variant}", "pool", modality, lambda _: []), "my", recipe)
            run_row(row, [*keys, *extra], seeds, args.out, [], lambda text: say(text))
            failed |= bool(row.error)
            for line in name_values(row):
                print(line.replace("unseen.", "pool.", 1), flush=True)
            lines.append(f"| {name} | {variant} | {fmt(row.values.get('pre5'))} | "
                         f"{fmt(row.values.get('rnd5'))} | {fmt(row.values.get('raw5'))} | "
                         f"{fmt(row.values.get('diff5'))} [{fmt(row.values.get('lo5'))}, "
                         f"{fmt(row.values.get('hi5'))}] | {row.values.get('verdict5', '-')} | "
                         f"{'/'.join(row.steps)} |")
    command = shlex.join(["python", "benchmarks/unlabelled_pool.py", *(argv or sys.argv[1:])])
    table = ["| experiment | pretraining on | 5 per class: pretrained | random init | raw | "
             "difference [95 % interval] | verdict | selected steps |",
             "|---|---|---|---|---|---|---|---|", *lines]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pool_results.md").write_text(f"`{command}`\n\n" + "\n".join(table) + "\n")
    say(f"table: {args.out / 'pool_results.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
