"""`polyjepa` command line: list, recipes, pretrain, eval, finetune, embed, import."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from pathlib import Path

import numpy as np

from polyjepa.errors import PolyjepaError


def _cmd_list(args: argparse.Namespace) -> None:
    from polyjepa.registry import list_components, list_modalities, plugin_failures

    print("modalities:")
    for name, origin in sorted(list_modalities().items()):
        print(f"  {name:<28} ({origin})")
    print("components:")
    for name, comp in list_components():
        print(f"  {name:<28} {comp.kind or 'any':<13} ({comp.origin})")
    for failure in plugin_failures():
        print(f"failed to load: {failure}")


def _cmd_recipes(args: argparse.Namespace) -> None:
    from polyjepa.config import list_recipes, read_recipe

    for name, path in list_recipes().items():
        raw = read_recipe(path)
        print(f"{name:<20} {raw.get('modality', '?'):<12} {raw.get('paper', '')}")


def _cmd_pretrain(args: argparse.Namespace) -> None:
    from polyjepa.train import pretrain

    if args.nproc > 1 and "RANK" not in os.environ:
        sys.exit(_launch_torchrun(args.nproc))
    run_dir = pretrain(args.recipe, args.overrides, args.out, resume=args.resume)
    if int(os.environ.get("RANK", 0)) != 0:
        return
    if (run_dir / "encoder.pt").exists():
        print(f"trained encoder: {run_dir / 'encoder.pt'}")
        print(f"evaluate it with: polyjepa eval {run_dir}")
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
    from polyjepa.evaluate import evaluate_run, evaluate_runs, format_runs, format_table

    runs = [w for w in args.run_dir if "=" not in w]
    overrides = [w for w in args.run_dir if "=" in w] + args.overrides
    if not runs:
        raise PolyjepaError("eval: name at least one run directory")
    options = dict(data_path=args.data, device=args.device, overrides=overrides,
                   checkpoint=args.checkpoint, progress=not args.json)
    if len(runs) == 1:
        result = evaluate_run(runs[0], **options)
        print(json.dumps(result) if args.json else format_table(result))
    else:
        result = evaluate_runs(runs, **options)
        print(json.dumps(result) if args.json else format_runs(result))


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
    from polyjepa.build import recipe_from_dict
    from polyjepa.evaluate import embed
    from polyjepa.hub import load_encoder, read_export, read_run_config
    from polyjepa.paths import data_root
    from polyjepa.train import resolve_device

    run_dir = Path(args.run_dir)
    recipe = recipe_from_dict(read_run_config(run_dir), str(run_dir / "config.yaml"))
    blob, _ = read_export(run_dir)
    dataset = recipe.plugin.load_file(recipe.cfg.data, args.data, data_root(recipe.cfg.data_root),
                                      blob["meta"])
    device = resolve_device(args.device)
    backbone = load_encoder(run_dir, device=str(device))
    x, _ = embed(backbone, dataset, args.pooling or recipe.cfg.eval.pooling,
                 recipe.cfg.eval.batch_size, device)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npy")
    np.save(tmp, x)
    os.replace(tmp, out)
    print(f"wrote {x.shape[0]} embeddings of width {x.shape[1]} to {out}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="polyjepa", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="installed modalities and components").set_defaults(fn=_cmd_list)
    sub.add_parser("recipes", help="shipped recipes").set_defaults(fn=_cmd_recipes)
    pre = sub.add_parser("pretrain", help="pretrain an encoder from a recipe")
    pre.add_argument("recipe", help="a shipped recipe name (see `polyjepa recipes`) or a YAML path")
    pre.add_argument("overrides", nargs="*", help="key.sub=value overrides of the recipe")
    pre.add_argument("--out", required=True, help="run directory")
    pre.add_argument("--resume", action="store_true", help="continue the run in --out")
    pre.add_argument("--nproc", type=int, default=1,
                     help="processes on this machine (launches torchrun; DDP, gloo on CPU)")
    pre.set_defaults(fn=_cmd_pretrain)
    ev = sub.add_parser("eval", help="linear probe + kNN (+ label efficiency, ...) vs random-init "
                                     "and raw-feature baselines, for one run or several")
    ev.add_argument("run_dir", nargs="+",
                    help="one or more run directories (e.g. pretraining seeds: reported each and "
                         "mean ± std across them), then data.*/eval.* overrides, e.g. "
                         "eval.protocols=[linear_probe,label_efficiency] or eval.split=val")
    ev.add_argument("overrides", nargs="*", help=argparse.SUPPRESS)
    ev.add_argument("--data", help="evaluate on this data instead of the recipe's")
    ev.add_argument("--checkpoint", type=int, metavar="STEP",
                    help="evaluate the encoder kept at this step (train.keep_checkpoints)")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--device", default="auto")
    ev.set_defaults(fn=_cmd_eval)
    ft = sub.add_parser("finetune", help="train encoder + linear head on labels; report beside "
                                         "the frozen linear probe")
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
    em = sub.add_parser("embed", help="write pooled embeddings of a dataset to .npy")
    em.add_argument("run_dir")
    em.add_argument("data", help="data path, read like the recipe's data.path")
    em.add_argument("--out", required=True, help="output .npy file")
    em.add_argument("--pooling", help="override eval.pooling")
    em.add_argument("--device", default="auto")
    em.set_defaults(fn=_cmd_embed)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args, extra = p.parse_known_args(argv)
    # `key=value` overrides may also follow the options (`pretrain R --out D train.max_steps=5`)
    if extra and hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        args.fn(args)
    except (PolyjepaError, OSError) as exc:  # OSError: unwritable folder, full disk, ...
        print(f"polyjepa {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0
