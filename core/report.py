"""`polyjepa report`: one self-contained HTML page for a run, or for several compared.

The page holds, from what the run directories hold:
- **summary**: recipe and paper, data, model size, steps, wall time, samples/s, device and
  precision, polyjepa version and commit, the command that reproduces the run (`run.json`);
- **training curves** (`metrics.jsonl`): loss raw and smoothed, learning rate, EMA momentum, weight
  decay, the collapse monitors with their warning threshold, the online probe, every other logged
  value, skipped steps marked; several runs are overlaid;
- **evaluation** (`eval*.json` from `polyjepa eval`): the protocols' tables beside random init,
  raw features and the modality's label-free baselines (time series: MiniRocket), the
  label-efficiency curve with its intervals shaded, the learning curve over kept checkpoints;
  for several runs a table of mean ± std across them;
- **embeddings**: the test embeddings in 2-D (PCA and t-SNE, scikit-learn), coloured by label,
  pretrained and random init side by side (needs an evaluated run whose data is readable).

Figures are matplotlib PNGs embedded as base64 `data:` URIs, so the file references nothing
outside itself; curves are thinned to at most `MAX_POINTS` points per series. A run still training
(partial metrics), one stopped by a non-finite loss or one without labels gives a page all the
same, each section saying what it lacks.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from polyjepa.paths import read_json_dict, write_atomic

log = logging.getLogger(__name__)

MAX_POINTS = 2000
"""Points per plotted series at most (long runs are thinned evenly, the last point kept)."""
MAP_POINTS = 500
"""Test samples in the 2-D embedding maps at most."""
SCHEDULES = ("lr", "momentum", "wd")
MONITORS = ("embed_std", "rankme")
BOOKKEEPING = {"step", "samples_per_s", "skipped_steps", "skipped_samples", "probe/seconds"}


@dataclass
class RunRecord:
    """What one run directory holds, read without torch."""

    path: Path
    config: dict
    metrics: list[dict]
    info: dict
    evals: dict[str, dict] = field(default_factory=dict)  # eval file stem -> its JSON
    finished: bool = False  # encoder.pt written

    @property
    def name(self) -> str:
        return self.path.name


def read_run(path: str | Path) -> RunRecord:
    """A run directory's config, metrics (any complete lines so far), run info and evaluations."""
    path = Path(path)
    config_file = path / "config.yaml"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} is not a polyjepa run directory (no config.yaml)")
    config = yaml.safe_load(config_file.read_text()) or {}
    metrics = []
    metrics_file = path / "metrics.jsonl"
    if metrics_file.is_file():
        for line in metrics_file.read_text().splitlines():
            try:
                metrics.append(json.loads(line))
            except ValueError:  # a line being written by a run still training
                continue
    info = read_json_dict(path / "run.json")
    evals = {p.stem: data for p in sorted(path.glob("eval*.json"))
             if (data := read_json_dict(p)) and p.stem != "eval_embeddings"}
    return RunRecord(path, config, metrics, info, evals, (path / "encoder.pt").is_file())


# ------------------------------------------------------------------------------------ figures
def _figure_html(fig: Any, alt: str) -> str:
    """A matplotlib figure as an embedded PNG `<img>` (closed afterwards)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img class="fig" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def thin(steps: Sequence[float], values: Sequence[float], limit: int = MAX_POINTS
         ) -> tuple[np.ndarray, np.ndarray]:
    """At most `limit` evenly spaced points of a series, the last one kept."""
    x, y = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    if len(x) <= limit:
        return x, y
    keep = np.unique(np.r_[np.linspace(0, len(x) - 1, limit - 1).astype(int), len(x) - 1])
    return x[keep], y[keep]


def smooth(values: np.ndarray, weight: float = 0.9) -> np.ndarray:
    """TensorBoard's exponential moving average, debiased; non-finite values are skipped."""
    out, last, norm = np.empty_like(values), 0.0, 0.0
    for i, v in enumerate(values):
        if math.isfinite(v):
            last, norm = weight * last + (1 - weight) * v, weight * norm + (1 - weight)
        out[i] = last / norm if norm else float("nan")
    return out


def series(run: RunRecord, key: str) -> tuple[list[float], list[float]]:
    """`(steps, values)` of one logged key (rows without it skipped)."""
    rows = [(r["step"], r[key]) for r in run.metrics if key in r and "step" in r
            and isinstance(r[key], int | float)]
    return [s for s, _ in rows], [float(v) for _, v in rows]


def curve_figures(runs: list[RunRecord]) -> list[str]:
    """The training-curve figures, each run a line."""
    plt = _plt()
    keys = sorted({k for run in runs for row in run.metrics for k, v in row.items()
                   if isinstance(v, int | float) and not isinstance(v, bool)} - BOOKKEEPING)
    if not keys:
        return []
    figures = []
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for run in runs:
        x, y = thin(*series(run, "loss"))
        if len(x):
            line, = ax.plot(x, y, alpha=0.3, lw=0.8)
            ax.plot(x, smooth(y), color=line.get_color(), lw=1.6, label=f"{run.name} (smoothed)")
        _mark_skipped(ax, run)
    ax.set(xlabel="step", ylabel="loss", title="training loss (raw and smoothed)")
    ax.legend(fontsize=7)
    figures.append(_figure_html(fig, "training loss"))
    groups = [("schedules", [k for k in SCHEDULES if k in keys]),
              ("collapse monitors", [k for k in MONITORS if k in keys]),
              ("online probe (validation split)", [k for k in keys if k.startswith("probe/")]),
              ("other logged values", [k for k in keys if k != "loss" and k not in SCHEDULES
                                       and k not in MONITORS and not k.startswith("probe/")])]
    for title, names in groups:
        if names:
            figures.append(_grid(runs, names, title))
    return figures


def _mark_skipped(ax: Any, run: RunRecord) -> None:
    steps, skipped = series(run, "skipped_steps")
    marks = [s for i, s in enumerate(steps) if i and skipped[i] > skipped[i - 1]]
    for s in marks[:50]:
        ax.axvline(s, color="red", lw=0.6, alpha=0.5)


def _grid(runs: list[RunRecord], names: list[str], title: str) -> str:
    plt = _plt()
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        for run in runs:
            x, y = thin(*series(run, name))
            if len(x):
                ax.plot(x, y, lw=1.2, label=run.name)
        threshold = _threshold(runs[0], name)
        if threshold is not None:
            ax.axhline(threshold, color="red", ls="--", lw=0.8, label="warning threshold")
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _figure_html(fig, title)


def _threshold(run: RunRecord, name: str) -> float | None:
    train = run.config.get("train", {})
    return float(train.get("collapse_std", 0.01)) if name == "embed_std" else None


# --------------------------------------------------------------------------------- evaluation
def _number(value: Any) -> str:
    if isinstance(value, dict) and "mean" in value:
        return f"{value['mean']:.3f} ± {value.get('std', 0.0):.3f}"
    if isinstance(value, int | float):
        return f"{value:.3f}"
    return html.escape(str(value))


def _probe_rows(result: dict) -> list[tuple[str, dict]]:
    """`(protocol, {encoder: value})` for every protocol scored for the encoders."""
    rows = [(name, value) for name, value in result.items()
            if isinstance(value, dict) and "pretrained" in value and "random_init" in value]
    for name, value in (result.get("targets") or {}).items():
        if isinstance(value, dict) and "pretrained" in value:
            rows.append((f"target {name} ({value.get('metric', '')})", value))
    return rows


def eval_table(result: dict) -> str:
    rows = _probe_rows(result)
    if not rows:
        return ""
    from polyjepa.evaluate import encoder_names

    names = encoder_names(result)
    head = "".join(f"<th>{html.escape(e.replace('_', ' '))}</th>" for e in names)
    body = "".join(f"<tr><td>{html.escape(name)}</td>"
                   + "".join(f"<td>{_number(value.get(e, ''))}</td>" for e in names) + "</tr>"
                   for name, value in rows)
    return f"<table><tr><th>protocol</th>{head}</tr>{body}</table>"


def other_protocols(result: dict) -> str:
    """Modality protocols (forecast, control, ...) as a JSON block."""
    known = {name for name, _ in _probe_rows(result)} | {
        "targets", "label_efficiency", "n_train", "n_test", "command", "random_init_each",
        "checkpoint", "split", "baselines"}
    rest = {k: v for k, v in result.items() if k not in known}
    if not rest:
        return ""
    return f"<pre>{html.escape(json.dumps(rest, indent=1)[:20000])}</pre>"


def efficiency_figure(result: dict, title: str) -> str:
    """Score against labels (log scale) for every encoder, 95 % intervals shaded."""
    summary = result.get("label_efficiency") or {}
    budgets = [b for b in summary.get("budgets", []) if "pretrained" in b]
    if not budgets:
        return ""
    from polyjepa.evaluate import encoder_names

    plt = _plt()
    budgets = sorted(budgets, key=lambda b: b["n_labels"])
    x = np.array([b["n_labels"] for b in budgets], dtype=float)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for name in encoder_names(result):
        mean = np.array([b[name]["mean"] for b in budgets])
        low = np.array([b[name]["low"] for b in budgets])
        high = np.array([b[name]["high"] for b in budgets])
        ax.plot(x, mean, marker="o", ms=3, label=name.replace("_", " "))
        ax.fill_between(x, low, high, alpha=0.2)
    ax.set_xscale("log")
    ax.set(xlabel="labelled training examples", ylabel=summary.get("metric", "score"), title=title)
    ax.legend(fontsize=7)
    return _figure_html(fig, title)


def learning_curve(run: RunRecord) -> str:
    """Linear probe against the step of each kept encoder (`eval_stepN.json`), and the end."""
    points = []
    for stem, result in run.evals.items():
        step = result.get("checkpoint")
        if stem.startswith("eval_step") and isinstance(step, int) and "linear_probe" in result:
            points.append((step, result["linear_probe"]))
    final = run.evals.get("eval", {}).get("linear_probe")
    if final and run.metrics:
        points.append((max(r.get("step", 0) for r in run.metrics), final))
    if len(points) < 2:
        return ""
    plt = _plt()
    points.sort(key=lambda p: p[0])
    fig, ax = plt.subplots(figsize=(6, 3))
    for name in ("pretrained", "random_init"):
        ax.plot([p[0] for p in points], [_scalar(p[1].get(name)) for p in points], marker="o",
                label=name.replace("_", " "))
    ax.set(xlabel="step", ylabel="linear probe", title=f"learning curve: {run.name}")
    ax.legend(fontsize=7)
    return _figure_html(fig, "learning curve")


def _scalar(value: Any) -> float:
    if isinstance(value, dict):
        return float(value.get("mean", float("nan")))
    return float(value) if isinstance(value, int | float) else float("nan")


def across_table(runs: list[RunRecord]) -> str:
    """Mean ± std across the runs' final evaluations (`eval.json`)."""
    from polyjepa.evaluate import across_runs

    results = [run.evals["eval"] for run in runs if "eval" in run.evals]
    if len(results) < 2:
        return ""
    return (f"<p>{len(results)} runs, mean ± std across them:</p>"
            + eval_table(across_runs(results)))


# --------------------------------------------------------------------------------- embeddings
def embedding_map(run: RunRecord, limit: int = MAP_POINTS) -> dict | None:
    """2-D PCA and t-SNE of up to `limit` test embeddings, pretrained and one random init, with
    their labels; None when the run has no encoder or its data cannot be read. Cached in
    `eval_embeddings.json` (rebuilt when `encoder.pt` is newer)."""
    cache = run.path / "eval_embeddings.json"
    encoder = run.path / "encoder.pt"
    if not encoder.is_file():
        return None
    if cache.is_file() and cache.stat().st_mtime >= encoder.stat().st_mtime:
        return read_json_dict(cache) or None
    try:
        data = _compute_map(run.path, limit)
    except Exception as exc:  # noqa: BLE001 - the page shows the rest and says why this is empty
        log.warning("report: no embedding map for %s (%s)", run.path, exc)
        return {"error": f"{type(exc).__name__}: {exc}"}
    try:
        write_atomic(cache, json.dumps(data).encode())
    except OSError:
        pass
    return data


def _compute_map(run_dir: Path, limit: int) -> dict:
    import torch
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    from polyjepa.build import build_backbone, load_splits, recipe_from_dict
    from polyjepa.data import DataSplit
    from polyjepa.evaluate import _features, encoder_file
    from polyjepa.hub import encoder_from_blob, read_any, read_run_config
    from polyjepa.train import seed_everything

    recipe = recipe_from_dict(read_run_config(run_dir), str(run_dir / "config.yaml"), [])
    file = encoder_file(run_dir, None)
    blob, _ = read_any(file)
    dev = torch.device("cpu")
    splits = load_splits(recipe)
    test = splits.test
    picks = np.sort(np.random.default_rng(0).permutation(len(test))[:limit])
    subset = DataSplit(test, picks)
    seed_everything(recipe.cfg.train.seed + 1)
    encoders = {"pretrained": encoder_from_blob(blob, file), "random_init":
                build_backbone(recipe, blob["meta"])}
    out: dict = {}
    for name, backbone in encoders.items():
        x, y = _features(backbone, subset, recipe.cfg.eval, dev)
        x = np.nan_to_num(np.asarray(x, dtype=np.float64))
        out["labels"] = np.asarray(y).tolist()
        pca = PCA(n_components=2, random_state=0).fit_transform(x)
        perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 4)))
        tsne = TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=0,
                    max_iter=500).fit_transform(x)
        out[name] = {"pca": pca.round(4).tolist(), "tsne": tsne.round(4).tolist()}
    out["class_names"] = list(blob["meta"].get("class_names", []))
    return out


def map_figure(data: dict) -> str:
    plt = _plt()
    labels = np.asarray(data["labels"])
    fig, axes = plt.subplots(2, 2, figsize=(8, 7))
    for col, name in enumerate(("pretrained", "random_init")):
        for row, method in enumerate(("pca", "tsne")):
            ax = axes[row][col]
            xy = np.asarray(data[name][method])
            ax.scatter(xy[:, 0], xy[:, 1], c=labels, cmap="tab10", s=6)
            ax.set_title(f"{name.replace('_', ' ')}: {method.upper()}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    return _figure_html(fig, "embedding maps")


# ------------------------------------------------------------------------------------- summary
def parameters(run: RunRecord) -> int | None:
    """Parameters of the exported encoder (None before `encoder.pt` exists)."""
    if not run.finished:
        return None
    import torch

    try:
        blob = torch.load(run.path / "encoder.pt", map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - an unreadable file: no count
        return None
    state = blob.get("state_dict", {}) if isinstance(blob, dict) else {}
    return int(sum(v.numel() for v in state.values() if hasattr(v, "numel")
                   and v.is_floating_point()))


def summary_rows(run: RunRecord) -> list[tuple[str, str]]:
    cfg, info = run.config, run.info
    train = cfg.get("train", {})
    steps = [r["step"] for r in run.metrics if "step" in r]
    rates = [r["samples_per_s"] for r in run.metrics if "samples_per_s" in r]
    params = parameters(run)
    losses = [r["loss"] for r in run.metrics if isinstance(r.get("loss"), float)]
    state = "finished" if run.finished else "in progress or stopped (no encoder.pt yet)"
    if losses and not math.isfinite(losses[-1]):
        state += "; the last logged loss is not finite"
    wall = info.get("wall_s")
    rows = [
        ("run", str(run.path)),
        ("state", state),
        ("recipe", f"{cfg.get('modality', '?')} · {info.get('recipe', '?')} · scale "
                   f"{cfg.get('scale', '?')}"),
        ("paper", str(cfg.get("paper") or "—")),
        ("data", "synthetic" if cfg.get("synthetic") else str((cfg.get("data") or {}).get(
            "path", "—"))),
        ("objective", str((cfg.get("objective") or {}).get("name", "?"))),
        ("encoder parameters", f"{params:,}" if params is not None else "—"),
        ("steps", f"{steps[-1] if steps else 0} of {info.get('steps', train.get('max_steps', '?'))}"
                  f" (batch {info.get('batch_size', train.get('batch_size', '?'))}"
                  + (f"; {info['epochs']:.1f} epochs, {info['budget']}" if "budget" in info
                     else "") + ")"),
        ("encoder.pt", (info.get("selection") or {}).get("verdict", "the last step's")),
        ("wall time", f"{wall / 60:.1f} min" if isinstance(wall, int | float) else "—"),
        ("samples/s (median of logged windows)",
         f"{float(np.median(rates)):.1f}" if rates else "—"),
        ("device / precision", f"{info.get('device', train.get('device', '?'))} / "
                               f"{info.get('precision', train.get('precision', '?'))}"),
        ("polyjepa / torch", f"{info.get('polyjepa', '?')} (commit {info.get('commit') or '?'}) / "
                             f"{info.get('torch', '?')}"),
        ("reproduce", " ".join(info.get("command", [])) or "—"),
    ]
    return rows


# --------------------------------------------------------------------------------------- page
STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}td,th{border:1px solid #ddd;
padding:.25em .6em;text-align:left}th{background:#f3f3f3}img.fig{display:block;max-width:100%;
margin:.8em 0}pre{background:#f7f7f7;padding:.6em;overflow:auto;font-size:.8em}
.note{color:#666}"""


def build_report(run_dirs: Sequence[str | Path], maps: bool = True) -> str:
    """The HTML page for one or several runs."""
    runs = [read_run(p) for p in run_dirs]
    title = runs[0].name if len(runs) == 1 else f"{len(runs)} runs"
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>polyjepa report: "
             f"{html.escape(title)}</title><style>{STYLE}</style></head><body>",
             f"<h1>polyjepa report: {html.escape(title)}</h1>"]
    parts.append("<h2 id='summary'>Summary</h2>")
    for run in runs:
        parts.append("<table>" + "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
            for k, v in summary_rows(run)) + "</table>")
    parts.append("<h2 id='curves'>Training curves</h2>")
    figures = curve_figures(runs)
    parts += figures or ["<p class='note'>No metrics logged yet.</p>"]
    parts.append("<h2 id='evaluation'>Evaluation</h2>")
    evaluated = [run for run in runs if run.evals]
    if not evaluated:
        parts.append("<p class='note'>Not evaluated yet: run <code>polyjepa eval "
                     + html.escape(" ".join(str(r.path) for r in runs)) + "</code>.</p>")
    for run in evaluated:
        result = run.evals.get("eval") or next(iter(run.evals.values()))
        parts.append(f"<h3>{html.escape(run.name)}</h3>")
        parts.append(eval_table(result) or "<p class='note'>No probe scores.</p>")
        parts.append(other_protocols(result))
        parts.append(efficiency_figure(result, f"label efficiency: {run.name}"))
        for name, target in ((result.get("label_efficiency") or {}).get("targets") or {}).items():
            parts.append(efficiency_figure({**result, "label_efficiency": target},
                                           f"label efficiency, {name}: {run.name}"))
        parts.append(learning_curve(run))
    parts.append(across_table(runs))
    parts.append("<h2 id='embeddings'>Embeddings</h2>")
    data = embedding_map(evaluated[0]) if maps and evaluated else None
    if data and "error" not in data:
        parts.append(f"<p>{len(data['labels'])} test samples of {html.escape(evaluated[0].name)}"
                     ", coloured by label.</p>")
        parts.append(map_figure(data))
    else:
        why = data["error"] if data else "needs an evaluated run with its encoder and data"
        parts.append(f"<p class='note'>No embedding map: {html.escape(why)}.</p>")
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def write_report(run_dirs: Sequence[str | Path], out: str | Path | None = None,
                 maps: bool = True) -> Path:
    """Write the page (default: `report.html` in the run, or `report_runs.html` in the runs'
    common folder) whole or not at all; returns its path."""
    dirs = [Path(p) for p in run_dirs]
    if out is None:
        if len(dirs) == 1:
            out = dirs[0] / "report.html"
        else:
            import os

            out = Path(os.path.commonpath([d.resolve() for d in dirs])) / "report_runs.html"
    out = Path(out)
    write_atomic(out, build_report(dirs, maps).encode())
    return out
