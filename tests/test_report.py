"""`polyjepa report`: a self-contained HTML page per run (and for runs compared), from real short
runs: every section is there with real figures, nothing is fetched from outside, unfinished,
NaN-stopped and unevaluated runs still give a page; TensorBoard's scalars equal metrics.jsonl."""

from __future__ import annotations

import base64
import json
import math
import shutil
import struct
import subprocess
from html.parser import HTMLParser

import pytest
from _helpers import (  # noqa: F401
    DEMOS,
    SHORT_DEMO_RUN,
    SYNTHETIC_FIT,
    read_metrics,
    single_thread,
    skip_without_extras,
    tiny_recipe,
    write_recipe,
)

from polyjepa import cli, report
from polyjepa.evaluate import evaluate_run, format_table, save_report
from polyjepa.report import build_report, efficiency_figure, eval_table, other_protocols, thin, write_report
from polyjepa.train import pretrain


class Page(HTMLParser):
    """The tags, images and references of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.images: list[str] = []
        self.refs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("id"):
            self.ids.append(found["id"] or "")
        if tag == "img":
            self.images.append(found.get("src") or "")
        self.refs += [v or "" for k, v in attrs if k in ("src", "href")]


def parse(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


def png_size(src: str) -> tuple[int, int]:
    data = base64.b64decode(src.split(",", 1)[1])
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.fixture(scope="module")
def evaluated_run(tmp_path_factory):
    """A short tabular run with an online probe, evaluated as `polyjepa eval` saves it."""
    tmp = tmp_path_factory.mktemp("report")
    raw = tiny_recipe(train={"max_steps": 12, "log_every": 2, "probe_every": 6,
                             "probe_samples": 200, "tensorboard": True},
                      data={"val_fraction": 0.1},
                      eval={"protocols": ["linear_probe", "knn", "label_efficiency"],
                            "shots": [1, 5], "fractions": [], "draws": 2, "init_seeds": 2})
    run = pretrain(write_recipe(raw, tmp), [], tmp / "run")
    result = evaluate_run(run)
    save_report(run, "eval", result, format_table(result), ["polyjepa", "eval", str(run)])
    return run


def test_a_report_has_every_section_with_real_figures(evaluated_run):
    path = write_report([evaluated_run])
    assert path == evaluated_run / "report.html"
    text = path.read_text()
    page = parse(text)
    assert {"summary", "curves", "evaluation", "embeddings"} <= set(page.ids)
    assert len(page.images) >= 5  # loss, schedules, probe, other values, efficiency, map
    for src in page.images:
        width, height = png_size(src)
        assert width > 200 and height > 100
    for word in ("training loss", "online probe", "label efficiency", "embedding maps",
                 "linear_probe", "random init", "raw features", "encoder parameters"):
        assert word in text, word
    info = json.loads((evaluated_run / "run.json").read_text())
    assert info["command"][:2] == ["polyjepa", "pretrain"] and info["wall_s"] > 0
    assert " ".join(info["command"]) in text


def test_a_report_references_nothing_outside_itself(evaluated_run):
    page = parse(build_report([evaluated_run]))
    assert page.refs, "figures are embedded as references to data: URIs"
    for ref in page.refs:
        assert ref.startswith("data:image/png;base64,"), ref[:60]
        assert "http" not in ref[:40] and "//" not in ref[:40]


def test_unfinished_nan_stopped_and_unevaluated_runs_give_a_page(evaluated_run, tmp_path):
    running = tmp_path / "running"
    running.mkdir()
    shutil.copy(evaluated_run / "config.yaml", running)
    rows = (evaluated_run / "metrics.jsonl").read_text().splitlines()
    (running / "metrics.jsonl").write_text("\n".join(rows[:2]) + "\n" + rows[2][:15])  # mid-line
    text = build_report([running])
    assert "in progress or stopped" in text and "Not evaluated yet" in text

    stopped = tmp_path / "stopped"
    shutil.copytree(evaluated_run, stopped, ignore=shutil.ignore_patterns("eval*", "encoder.pt"))
    with (stopped / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"loss": math.nan, "step": 14}) + "\n")
    text = build_report([stopped])
    assert "the last logged loss is not finite" in text and "No embedding map" in text

    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(evaluated_run / "config.yaml", empty)
    assert "No metrics logged yet" in build_report([empty])
    with pytest.raises(FileNotFoundError, match="not a polyjepa run directory"):
        build_report([tmp_path / "nothing"])


def test_runs_are_overlaid_and_compared(evaluated_run, tmp_path):
    second = tmp_path / "second"
    shutil.copytree(evaluated_run, second)
    path = write_report([evaluated_run, second], tmp_path / "both.html")
    text = path.read_text()
    assert "2 runs, mean ± std across them" in text
    assert text.count("<table>") >= 4  # two summaries, two evaluations, the comparison


def test_the_cli_writes_and_rebuilds_reports(evaluated_run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(evaluated_run, copy, ignore=shutil.ignore_patterns("report*.html"))
    assert cli.main(["report", str(copy), "--no-maps"]) == 0
    assert (copy / "report.html").is_file()
    assert "report:" in capsys.readouterr().out


def test_long_curves_are_thinned_to_the_limit():
    x, y = thin(range(10_000), [float(i) for i in range(10_000)], limit=2000)
    assert len(x) <= 2000 and x[0] == 0 and x[-1] == 9999 and (y == x).all()


def test_a_modality_baseline_is_a_column_and_a_curve(monkeypatch):
    def scores(mean: float) -> dict:
        return {"mean": mean, "low": mean - 0.1, "high": mean + 0.1}

    probe = {"pretrained": 0.9, "random_init": 0.5, "raw_features": 0.6, "minirocket": 0.95}
    budgets = [{"budget": f"{k}_per_class", "n_labels": 4 * k,
                **{name: scores(v - 0.1 / k) for name, v in probe.items()}} for k in (1, 5)]
    result = {"linear_probe": probe, "baselines": ["minirocket"], "n_train": 8, "n_test": 4,
              "label_efficiency": {"metric": "accuracy", "budgets": budgets}}
    table = eval_table(result)
    assert "<th>raw features</th><th>minirocket</th>" in table and "<td>0.950</td>" in table
    assert other_protocols(result) == ""  # `baselines` is not a protocol of its own
    legends = []
    monkeypatch.setattr(report, "_figure_html",
                        lambda fig, alt: legends.append(fig.axes[0].get_legend_handles_labels()[1]))
    efficiency_figure(result, "label efficiency")
    assert legends == [["pretrained", "random init", "raw features", "minirocket"]]
    without = {"linear_probe": {k: v for k, v in probe.items() if k != "minirocket"}}
    assert "minirocket" not in eval_table(without) and eval_table(without).count("<th>") == 4


def test_tensorboard_scalars_equal_the_metrics_file(evaluated_run):
    event = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = event.EventAccumulator(str(evaluated_run / "tensorboard"))
    acc.Reload()
    rows = read_metrics(evaluated_run)
    logged = {k for r in rows for k in r if k != "step"}
    assert logged <= set(acc.Tags()["scalars"])
    for key in ("loss", "lr", "probe/linear"):
        expected = [(r["step"], r[key]) for r in rows if key in r]
        got = [(e.step, e.value) for e in acc.Scalars(key)]
        assert [s for s, _ in got] == [s for s, _ in expected]
        assert [v for _, v in got] == pytest.approx([v for _, v in expected], rel=1e-6)


def test_the_page_renders_in_headless_chromium(evaluated_run, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no headless Chromium here (Debian package `chromium`): rendering unchecked")
    page = write_report([evaluated_run], tmp_path / "page.html")
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    f"--screenshot={shot}", "--window-size=1200,4000", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    width, height = struct.unpack(">II", shot.read_bytes()[16:24])
    assert width == 1200 and height == 4000
    script = ("<script>window.onload=()=>{document.title=[document.documentElement.scrollHeight,"
              "...[...document.images].map(i=>i.getBoundingClientRect().width"
              "*i.getBoundingClientRect().height)].join(',')}</script>")
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", script + "</body>"))
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
                          probe.as_uri()], check=True, capture_output=True, text=True,
                         timeout=120).stdout
    height, *areas = dom.split("<title>", 1)[1].split("</title>", 1)[0].split(",")
    assert float(height) > 2000  # laid out: summary, tables and every figure, one under another
    assert len(areas) == len(parse(page.read_text()).images)
    assert all(float(a) > 10_000 for a in areas)  # every figure drawn, at least 100 x 100 px


def test_pretrain_writes_a_report_unless_told_not_to(tmp_path, capsys):
    recipe = write_recipe(tiny_recipe(train={"max_steps": 2}), tmp_path)
    assert cli.main(["pretrain", str(recipe), "--out", str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "report.html").is_file()
    assert "report:" in capsys.readouterr().out
    assert cli.main(["pretrain", str(recipe), "--out", str(tmp_path / "b"), "--no-report"]) == 0
    assert not (tmp_path / "b" / "report.html").exists()


@pytest.mark.parametrize("name", DEMOS)
def test_every_demo_recipe_gets_a_report(name, tmp_path):
    """Two steps of each demo on its plugin's synthetic data, with the collapse monitor on:
    the page has the summary (recipe, steps) and loss and monitor curves as real images."""
    skip_without_extras(name)
    run = pretrain(name, [*SHORT_DEMO_RUN, "train.max_steps=2", "train.monitor_every=1",
                          "optim.warmup_steps=0", *SYNTHETIC_FIT.get(name, [])], tmp_path / name)
    page = parse(write_report([run]).read_text())
    text = (run / "report.html").read_text()
    assert {"summary", "curves"} <= set(page.ids), page.ids
    assert name in text and len(page.images) >= 2
    assert all(min(png_size(src)) > 100 for src in page.images)
