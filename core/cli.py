"""`polyjepa` command line: list, recipes, pretrain, eval, report, finetune, import, embed,
export, push."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import traceback
from pathlib import Path

from polyjepa import __version__
from polyjepa.errors import PolyjepaError
from polyjepa.log import show_on_stderr

DEBUG_ENV = "POLYJEPA_DEBUG"


def _cmd_list(args: argparse.Namespace) -> None:
    from polyjepa.listing import installed

    found = installed(refresh=args.refresh)
    print("modalities:")
    for name, origin in found.modalities:
        print(f"  {name:<28} ({origin})")
    print("components:")
    for name, kind, origin in found.components:
        print(f"  {name:<28} {kind:<13} ({origin})")
    for failure in found.failures:
        print(f"failed to load: {failure}")


def _cmd_recipes(args: argparse.Namespace) -> None:
    from polyjepa import catalog

    if args.name is None:
        rows = catalog.summary_rows()
        widths = {k: max(len(k), *(len(r[k]) for r in rows)) for k in rows[0] if k != "paper"}
        print("  ".join(k.ljust(w) for k, w in widths.items()) + "  paper")
        for row in rows:
            print("  ".join(row[k].ljust(w) for k, w in widths.items()) + f"  {row['paper']}")
        print("details and every key: polyjepa recipes NAME; a duration estimate: add --time")
        return
    print(catalog.describe(args.name, args.overrides))
    if args.time:
        t = catalog.time_steps(args.name, args.overrides)
        print(f"\ntimed here: {t['seconds_per_step']:.3f} s per step ({t['samples_per_s']:.0f} "
              f"samples/s); {t['max_steps']} steps take about {t['estimated_minutes']:.1f} min "
              f"(the run's length here: {t['length']}; data loading, probes and evaluation not "
              "included)")


def _cmd_pretrain(args: argparse.Namespace) -> None:
    from polyjepa.train import pretrain

    if args.nproc > 1 and "RANK" not in os.environ:
        sys.exit(_launch_torchrun(args.nproc))
    encoder = Path(args.out) / "encoder.pt"
    before = encoder.stat().st_mtime_ns if encoder.is_file() else None
    run_dir = pretrain(args.recipe, args.overrides, args.out, resume=args.resume)
    if int(os.environ.get("RANK", 0)) != 0:
        return
    unchanged = before is not None and encoder.is_file() and encoder.stat().st_mtime_ns == before
    if args.report and not unchanged:  # a finished run asked again: its report stands
        _write_report([run_dir])
    if (run_dir / "encoder.pt").exists():
        print(f"trained encoder: {run_dir / 'encoder.pt'}")
        print(f"evaluate it with: polyjepa eval {run_dir}")
        selection = json.loads((run_dir / "run.json").read_text()).get("selection")
        if selection:  # the run's verdict, last
            print(selection["verdict"])
    else:
        words = ["polyjepa", "pretrain", args.recipe, *args.overrides, "--out", str(run_dir),
                 "--resume"]
        print(f"stopped; checkpoint saved in {run_dir / 'checkpoints'}. Resume with: "
              + " ".join(shlex.quote(w) for w in words))


def _launch_torchrun(nproc: int) -> int:
    """Re-run this command under torchrun with `nproc` processes on this node."""
    import subprocess

    argv = sys.argv[1:]
    i = argv.index("--nproc")
    argv = argv[:i] + argv[i + 2:]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc_per_node={nproc}", "-m", "polyjepa", *argv]
    return subprocess.call(cmd)


def _cmd_eval(args: argparse.Namespace) -> None:
    from polyjepa import evaluate as E

    runs = list(dict.fromkeys(w for w in args.run_dir if "=" not in w))  # each once, in order
    overrides = [w for w in args.run_dir if "=" in w] + args.overrides
    if not runs:
        raise PolyjepaError("eval: name at least one run directory")
    options = dict(data_path=args.data, device=args.device, overrides=overrides,
                   checkpoint=args.checkpoint, progress=not args.json)
    command = ["polyjepa", "eval", *args.run_dir, *args.overrides,
               *(["--data", args.data] if args.data else []),
               *(["--checkpoint", str(args.checkpoint)] if args.checkpoint is not None else [])]
    if len(runs) == 1:
        result = E.evaluate_run(runs[0], **options)
        reports = [(Path(runs[0]), result, E.format_table(result), False)]
    else:
        result = E.evaluate_runs(runs, **options)
        reports = [(Path(run), each, E.format_table(each), False)
                   for run, each in zip(runs, result["runs"].values(), strict=True)]
        common = Path(os.path.commonpath([Path(r).resolve() for r in runs]))
        reports.append((common, result, E.format_runs(result), True))
    print(json.dumps(result) if args.json else reports[-1][2], flush=True)
    saved = []
    split = reports[0][1].get("split", "test")
    for directory, each, text, several in reports if args.save else []:
        name = E.report_name(args.checkpoint, split, several, args.data is not None)
        try:
            saved += E.save_report(directory, name, each, text, command)[:1]
        except OSError as exc:  # a read-only run folder: the result is printed all the same
            print(f"polyjepa eval: could not save {name}.json in {directory} ({exc}); pass "
                  "--no-save to skip saving", file=sys.stderr)
    if saved and not args.json:
        print("saved: " + ", ".join(str(p) for p in saved) + " (and a .txt beside each)")
    if args.save and args.report:
        for run in runs:
            _write_report([run], quiet=args.json)
        if len(runs) > 1:
            _write_report(runs, quiet=args.json)


def _write_report(runs: list, quiet: bool = False) -> None:
    """The runs' `report.html` (a failure to write it is said, never fatal)."""
    from polyjepa.report import write_report

    try:
        path = write_report(runs)
    except Exception as exc:  # noqa: BLE001 - the run and its results are saved; the page is extra
        print(f"polyjepa: no report written ({type(exc).__name__}: {exc}); rebuild it with "
              f"polyjepa report {' '.join(str(r) for r in runs)}", file=sys.stderr)
        return
    if not quiet:
        print(f"report: {path}")
    if len(runs) == 1:  # the run's tracker runs (train.loggers) get the page as an artefact
        from polyjepa.trackers import attach_report

        attach_report(Path(runs[0]), Path(path))


def _cmd_report(args: argparse.Namespace) -> None:
    from polyjepa.report import write_report

    path = write_report(args.run_dir, args.out, maps=args.maps)
    print(f"report: {path}")


def _cmd_finetune(args: argparse.Namespace) -> None:
    from polyjepa.finetune import finetune_run, format_result

    result = finetune_run(args.run_dir, args.overrides, device=args.device,
                          progress=not args.no_progress)
    print(json.dumps(result) if args.json else format_result(result))


def _cmd_import(args: argparse.Namespace) -> None:
    from polyjepa.hub import import_checkpoint

    run_dir = import_checkpoint(args.file, args.out, source=args.source, overrides=args.overrides)
    print(f"imported {args.file} into {run_dir}; evaluate it with: polyjepa eval {run_dir}")


def _cmd_embed(args: argparse.Namespace) -> None:
    from polyjepa.embedding import embed

    result = embed(args.run_dir, args.data, pooling=args.pooling, device=args.device,
                   overrides=args.overrides)
    files = result.save(args.out)
    print(f"wrote {result.x.shape[0]} embeddings of width {result.x.shape[1]} to {files[0]}"
          + (f"; ids and labels to {files[1]}" if len(files) > 1 else " (with ids and labels)"))


def _cmd_export(args: argparse.Namespace) -> None:
    from polyjepa.export import export_run

    out = export_run(args.run_dir, args.format, args.out, args.overrides)
    print(f"exported {args.run_dir} as {args.format} to {out}; load it with "
          f"polyjepa.load_encoder({str(out)!r})" if args.format == "hf" else
          f"exported {args.run_dir} as ONNX to {out} (encoder.onnx, onnx.json)")


def _cmd_push(args: argparse.Namespace) -> None:
    from polyjepa.export import push

    url = push(args.run_dir, args.repo_id, private=args.private)
    print(f"pushed {args.run_dir} to {url}; load it with polyjepa.load_encoder({args.repo_id!r})")


def _keys_epilog(section: str) -> str:
    """`section.key=default` for every key of a recipe section, for a command's --help."""
    import dataclasses

    from polyjepa import config as C

    cls = {"eval": C.EvalConfig, "finetune": C.FinetuneConfig}[section]
    defaults = cls()
    keys = [f"{section}.{f.name}={C.to_dict(getattr(defaults, f.name))}"
            for f in dataclasses.fields(cls)]
    return (f"{section}.* keys and their defaults (docs/evaluation.md; `polyjepa recipes NAME` "
            "shows a recipe's values):\n  " + "\n  ".join(keys))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="polyjepa", description=__doc__)
    p.add_argument("--version", action="version", version=f"polyjepa {__version__}")
    p.add_argument("--traceback", action="store_true",
                   help=f"on an error, print its full chained traceback before the one-line "
                        f"message (also with {DEBUG_ENV}=1)")
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="installed modalities and components (kept in a cache file "
                                     "until a plugin changes; see polyjepa.listing)")
    ls.add_argument("--refresh", action="store_true",
                    help="import every plugin again instead of reading the cache file")
    ls.set_defaults(fn=_cmd_list)
    rec = sub.add_parser("recipes", help="shipped recipes; with a NAME, its header and every key "
                                        "with its value, type and default")
    rec.add_argument("name", nargs="?", help="a shipped recipe name or a YAML path")
    rec.add_argument("overrides", nargs="*", help="key.sub=value overrides to resolve with")
    rec.add_argument("--time", action="store_true",
                     help="train 20 steps here and estimate the whole run's duration")
    rec.set_defaults(fn=_cmd_recipes)
    pre = sub.add_parser("pretrain", help="pretrain an encoder from a recipe")
    pre.add_argument("recipe", help="a shipped recipe name (see `polyjepa recipes`) or a YAML path")
    pre.add_argument("overrides", nargs="*", help="key.sub=value overrides of the recipe")
    pre.add_argument("--out", required=True, help="run directory")
    pre.add_argument("--resume", action="store_true", help="continue the run in --out")
    pre.add_argument("--no-report", dest="report", action="store_false",
                     help="do not write report.html into the run directory at the end")
    pre.add_argument("--nproc", type=int, default=1,
                     help="processes on this machine (launches torchrun; DDP, gloo on CPU)")
    pre.set_defaults(fn=_cmd_pretrain)
    ev = sub.add_parser("eval", help="linear probe + kNN (+ label efficiency, ...) vs random-init "
                                     "and raw-feature baselines, for one run or several",
                        epilog=_keys_epilog("eval"),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ev.add_argument("run_dir", nargs="+",
                    help="one or more run directories (e.g. pretraining seeds: reported each and "
                         "mean ± std across them), then data.*/eval.* overrides, e.g. "
                         "eval.protocols=[linear_probe,label_efficiency] or eval.split=val")
    ev.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    ev.add_argument("--data", help="evaluate on this data instead of the recipe's")
    ev.add_argument("--checkpoint", type=int, metavar="STEP",
                    help="evaluate the encoder kept at this step (train.keep_checkpoints)")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--no-save", dest="save", action="store_false",
                    help="do not write eval.json / eval.txt into the run directory (named "
                         "eval_stepN, eval_val for --checkpoint N, eval.split=val; eval_runs.* in "
                         "the runs' common folder for several runs)")
    ev.add_argument("--device", default="auto")
    ev.add_argument("--no-report", dest="report", action="store_false",
                    help="do not rewrite report.html in each run directory")
    rep = sub.add_parser("report", help="one self-contained HTML page of a run (curves, "
                         "evaluation, embedding maps), or of several runs compared")
    rep.add_argument("run_dir", nargs="+", help="run directories (several: overlaid and compared)")
    rep.add_argument("--out", help="the HTML file (default: RUN/report.html, or report_runs.html "
                     "in the runs' common folder)")
    rep.add_argument("--no-maps", dest="maps", action="store_false",
                     help="skip the embedding maps (they embed up to 500 test samples)")
    rep.set_defaults(fn=_cmd_report)
    ev.set_defaults(fn=_cmd_eval)
    ft = sub.add_parser("finetune", help="train encoder + linear head on labels; report beside "
                                         "the frozen linear probe",
                        epilog=_keys_epilog("finetune"),
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ft.add_argument("run_dir")
    ft.add_argument("overrides", nargs="*", help="finetune.*/data.*/eval.* overrides")
    ft.add_argument("--json", action="store_true", help="print one JSON object")
    ft.add_argument("--device", default="auto")
    ft.add_argument("--no-progress", action="store_true", help="no progress bar")
    ft.set_defaults(fn=_cmd_finetune)
    im = sub.add_parser("import", help="turn another framework's checkpoint into a run directory")
    im.add_argument("file", help="checkpoint file, e.g. AudioNTT2020-BYOLA-64x96d512.pth")
    im.add_argument("overrides", nargs="*",
                    help="data.* overrides: data to compute input statistics on and evaluate with")
    im.add_argument("--out", required=True, help="run directory to create")
    im.add_argument("--from", dest="source", help="importer name (default: detect), e.g. "
                                                  "byol_a_official")
    im.set_defaults(fn=_cmd_import)
    em = sub.add_parser("embed", help="write pooled embeddings of a dataset, with sample ids and "
                                      "labels, to .npz (or .npy + .csv)")
    em.add_argument("run_dir")
    em.add_argument("data", help="data path, read like the recipe's data.path; labels optional "
                                 "(a table without its label column, a flat folder)")
    em.add_argument("overrides", nargs="*",
                    help="data.* overrides: how to read the data (e.g. data.label_regex=null); "
                         "the preprocessing stays the run's")
    em.add_argument("--out", required=True,
                    help="output file: .npz (arrays x, labels, ids, classes) or .npy (x) with a "
                         "sidecar .csv of row, id, label, class")
    em.add_argument("--pooling", help="override eval.pooling")
    em.add_argument("--device", default="auto")
    em.set_defaults(fn=_cmd_embed)
    ex = sub.add_parser("export", help="write a run's encoder as a Hugging Face Hub folder "
                                       "(safetensors, config, model card) or as ONNX")
    ex.add_argument("run_dir")
    ex.add_argument("overrides", nargs="*",
                    help="onnx: data.* overrides naming the data to trace on (default: the run's)")
    ex.add_argument("--format", choices=["hf", "onnx"], default="hf")
    ex.add_argument("--out", required=True, help="folder to create (empty or new)")
    ex.set_defaults(fn=_cmd_export)
    pu = sub.add_parser("push", help="upload a run's encoder to the Hugging Face Hub (the export "
                                     "--format hf folder; needs a network and a token)")
    pu.add_argument("run_dir")
    pu.add_argument("repo_id", help="org/name on the Hub (created when absent)")
    pu.add_argument("--private", action="store_true")
    pu.set_defaults(fn=_cmd_push)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args, extra = p.parse_known_args(argv)
    # `key=value` overrides may also follow the options (`pretrain R --out D train.max_steps=5`)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    show_on_stderr()
    try:
        args.fn(args)
    except BrokenPipeError:  # `polyjepa recipes NAME | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (PolyjepaError, OSError) as exc:  # OSError: unwritable folder, full disk, ...
        if args.traceback or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            traceback.print_exc()
        print(f"polyjepa {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0
