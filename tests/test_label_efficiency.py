"""Label efficiency: seeded draws shared by every encoder, paired intervals and verdicts, the
evaluation protocol end to end, and pooling several runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from _helpers import single_thread, tiny_recipe, write_recipe  # noqa: F401
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

from polyjepa import label_efficiency as LE
from polyjepa.cli import main
from polyjepa.errors import ConfigError
from polyjepa.evaluate import (
    evaluate_run,
    evaluate_runs,
    format_efficiency,
    format_runs,
    format_table,
    summarize_efficiency,
)
from polyjepa.registry import get_modality
from polyjepa.train import pretrain


def classes(n: int, k: int, separation: float, seed: int, width: int = 8):
    """`n` points of `k` classes: class centres `separation` apart on the first axes + noise."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    x = rng.normal(size=(n, width)) + separation * np.eye(k, width)[y]
    return x.astype(np.float32), y


# ------------------------------------------------------------------------------ draws


def test_draws_are_seeded_and_shot_budgets_take_k_per_class():
    _, y = classes(200, 4, 0, seed=0)
    budget = LE.Budget("shots", 5)
    a = LE.draw_subset(y, budget, seed=0, draw=3)
    assert np.array_equal(a, LE.draw_subset(y, budget, seed=0, draw=3))
    assert not np.array_equal(a, LE.draw_subset(y, budget, seed=0, draw=4))
    assert not np.array_equal(a, LE.draw_subset(y, budget, seed=1, draw=3))
    assert np.bincount(y[a]).tolist() == [5, 5, 5, 5]
    # a draw depends on its own budget only, not on which other budgets are measured
    assert np.array_equal(a, LE.draw_subset(y.copy(), LE.Budget("shots", 5), 0, 3))


def test_a_shot_budget_larger_than_a_class_takes_all_of_it_and_says_so():
    y = np.array([0] * 30 + [1] * 3)
    subset = LE.draw_subset(y, LE.Budget("shots", 10), seed=0, draw=0)
    assert np.bincount(y[subset]).tolist() == [10, 3]
    x = np.random.default_rng(0).normal(size=(33, 4))
    features = {"pretrained": [(x, x)], "random_init": [(x, x)]}
    scores = LE.measure(features, y, y, LE.Budget("shots", 10), 4, 0, True)
    assert scores.capped and scores.n_labels == 13
    assert not LE.measure(features, y, y, LE.Budget("shots", 2), 4, 0, True).capped
    # k above every class's size: every draw is the whole set, measured once
    whole = LE.measure(features, y, y, LE.Budget("shots", 50), 4, 0, True)
    assert len(whole.draws["pretrained"]) == 1 and whole.examples


def test_fraction_draws_are_stratified_and_may_miss_a_small_class():
    y = np.array([0] * 90 + [1] * 9 + [2] * 1)
    subset = LE.draw_subset(y, LE.Budget("fraction", 0.1), seed=0, draw=0)
    assert np.bincount(y[subset], minlength=3).tolist() == [9, 1, 0]  # class 2 is absent
    assert len(LE.draw_subset(y, LE.Budget("fraction", 0.001), 0, 0)) == 1  # at least one label
    x, _ = classes(100, 3, 0, seed=1)
    one_class = LE.example_scores(x[:5], np.zeros(5, int), x, y, classify=True)
    assert one_class.mean() == pytest.approx(0.9)  # predicts the only class it saw


def test_budgets_reject_bad_values():
    with pytest.raises(ConfigError, match="eval.shots"):
        LE.budgets([0], [0.5])
    with pytest.raises(ConfigError, match="eval.fractions"):
        LE.budgets([1], [1.5])
    assert [b.name for b in LE.budgets([5, 1], [1.0], classify=False)] == ["1_of_labels"]


# ------------------------------------------------------------------------------ intervals


def test_identical_features_give_exactly_no_difference():
    x_tr, y_tr = classes(200, 4, 3.0, seed=0)
    x_te, y_te = classes(100, 4, 3.0, seed=1)
    features = {"pretrained": [(x_tr, x_te)], "random_init": [(x_tr, x_te)]}
    for budget in (LE.Budget("shots", 2), LE.Budget("fraction", 1.0)):
        row = LE.summarize(LE.measure(features, y_tr, y_te, budget, 6, 0, True))
        assert row["difference"] == {"mean": 0.0, "low": 0.0, "high": 0.0,
                                     "over": "draws" if budget.kind == "shots" else "test_examples"}
        assert row["verdict"] == "no difference"


def test_separating_features_help_and_noise_hurts():
    x_tr, y_tr = classes(300, 5, 4.0, seed=0)
    x_te, y_te = classes(200, 5, 4.0, seed=1)
    rng = np.random.default_rng(5)
    noise = [(rng.normal(size=x_tr.shape), rng.normal(size=x_te.shape)) for _ in range(3)]
    good, bad = [(x_tr, x_te)], noise
    rows = LE.label_efficiency({"pretrained": good, "random_init": bad, "raw_features": good},
                               y_tr, y_te, shots=[1, 5], fractions=[1.0], draws=8, seed=0)
    for scores in rows:
        row = LE.summarize(scores)
        assert row["verdict"] == "helps", row
        assert row["pretrained"]["low"] <= row["pretrained"]["mean"] <= row["pretrained"]["high"]
        assert row["random_init"]["init_min"] <= row["random_init"]["mean"] <= \
            row["random_init"]["init_max"]
        assert len(scores.init_means) == 3
    assert LE.summarize(rows[1])["pretrained"]["mean"] > 0.9
    flipped = LE.label_efficiency({"pretrained": bad[:1], "random_init": good}, y_tr, y_te,
                                  shots=[5], fractions=[], draws=8, seed=0)
    assert LE.summarize(flipped[0])["verdict"] == "hurts"


def test_each_modality_baseline_gets_a_paired_difference_and_verdict():
    x_tr, y_tr = classes(300, 5, 4.0, seed=0)
    x_te, y_te = classes(200, 5, 4.0, seed=1)
    rng = np.random.default_rng(5)
    good, bad = [(x_tr, x_te)], [(rng.normal(size=x_tr.shape), rng.normal(size=x_te.shape))]
    rows = LE.label_efficiency({"pretrained": good, "random_init": bad, "raw_features": good,
                                "field": bad, "copy": good}, y_tr, y_te, shots=[5],
                               fractions=[1.0], draws=4, seed=0)
    for scores in rows:
        row = LE.summarize(scores, versus=["field", "copy"])
        assert row["verdict"] == row["versus"]["field"]["verdict"] == "helps"
        assert row["versus"]["field"]["difference"] == row["difference"]  # the same scores
        assert row["versus"]["copy"]["verdict"] == "no difference"
        assert "versus" not in LE.summarize(scores)
    lines = format_efficiency(summarize_efficiency({"label": (rows, "accuracy")}, 4, 1,
                                                   ["field", "copy"]))
    header = lines[1].split()
    assert header.index("field") < header.index("copy") < header.index("verdict") < \
        header.index("field", header.index("verdict"))
    assert "vs field" in lines[1] and "verdict vs copy" in lines[1]
    plain = format_efficiency(summarize_efficiency({"label": (rows, "accuracy")}, 4, 1))
    assert "field" not in "\n".join(plain)


def test_the_paired_interval_is_narrower_than_the_unpaired_one():
    """Draw-to-draw variation is shared by both encoders; pairing removes it."""
    x_tr, y_tr = classes(400, 6, 2.0, seed=0)
    x_te, y_te = classes(300, 6, 2.0, seed=1)
    shifted = (x_tr + 0.1, x_te + 0.1)  # the same information, slightly moved
    row = LE.summarize(LE.measure({"pretrained": [(x_tr, x_te)], "random_init": [shifted]},
                                  y_tr, y_te, LE.Budget("shots", 1), 10, 0, True))
    width = row["difference"]["high"] - row["difference"]["low"]
    assert width < 0.2 * (row["pretrained"]["high"] - row["pretrained"]["low"])


def test_per_example_r2_scores_average_to_r2():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 5))
    y = x @ rng.normal(size=(5, 2)) + 0.5 * rng.normal(size=(300, 2))
    scores = LE.example_scores(x[:200], y[:200], x[200:], y[200:], classify=False)
    fitted = LinearRegression().fit(x[:200], y[:200]).predict(x[200:])
    assert scores.mean() == pytest.approx(r2_score(y[200:], fitted), abs=0.01)  # ridge ~ OLS here
    rows = LE.label_efficiency({"pretrained": [(x[:200], x[200:])],
                                "random_init": [(rng.normal(size=(200, 5)), rng.normal(size=(100, 5)))]},
                               y[:200], y[200:], shots=[5], fractions=[0.1, 1.0], draws=5, seed=0,
                               classify=False)
    assert [r.budget.name for r in rows] == ["0.1_of_labels", "1_of_labels"]  # no shots
    assert all(LE.summarize(r)["verdict"] == "helps" for r in rows)


def test_pooling_runs_averages_draw_by_draw():
    x_tr, y_tr = classes(200, 4, 2.0, seed=0)
    x_te, y_te = classes(100, 4, 2.0, seed=1)
    rng = np.random.default_rng(0)
    runs = []
    for shift in (0.0, 1.0):
        features = {"pretrained": [(x_tr + shift * rng.normal(size=x_tr.shape), x_te)],
                    "random_init": [(x_tr, x_te)]}
        runs.append(LE.measure(features, y_tr, y_te, LE.Budget("shots", 2), 5, 0, True))
    pooled = LE.pool_runs(runs)
    np.testing.assert_allclose(pooled.draws["pretrained"],
                               (runs[0].draws["pretrained"] + runs[1].draws["pretrained"]) / 2)
    np.testing.assert_allclose(pooled.draws["random_init"], runs[0].draws["random_init"])


# ------------------------------------------------------------------------------ end to end


@pytest.fixture(scope="module")
def seed_runs(tmp_path_factory):
    """Two 3-step runs (seeds 0 and 1) of the tiny recipe on the breast-cancer table."""
    runs = []
    for seed in (0, 1):
        directory = tmp_path_factory.mktemp(f"seed{seed}")
        raw = tiny_recipe(train={"max_steps": 3, "seed": seed}, synthetic=False,
                          data={"path": "sklearn:breast_cancer", "test_path": None})
        runs.append(pretrain(write_recipe(raw, directory), [], directory / "run"))
    return runs


EFFICIENCY = ["eval.protocols=[linear_probe,label_efficiency]", "eval.shots=[1,5]",
              "eval.fractions=[0.1,1.0]", "eval.draws=4", "eval.init_seeds=2"]


def test_label_efficiency_protocol_end_to_end(seed_runs):
    result = evaluate_run(seed_runs[0], device="cpu", overrides=EFFICIENCY)
    json.loads(json.dumps(result))
    assert set(result["linear_probe"]) == {"pretrained", "random_init", "raw_features"}
    summary = result["label_efficiency"]
    assert summary["metric"] == "accuracy" and summary["draws"] == 4 and summary["init_seeds"] == 2
    names = [b["budget"] for b in summary["budgets"]]
    assert names == ["1_per_class", "5_per_class", "0.1_of_labels", "1_of_labels"]
    for b in summary["budgets"]:
        assert set(b) >= {"pretrained", "random_init", "raw_features", "difference", "verdict",
                          "n_labels", "draws"}
        assert b["verdict"] in LE.VERDICTS
        assert b["difference"]["low"] <= b["difference"]["mean"] <= b["difference"]["high"]
    assert summary["budgets"][0]["n_labels"] == 2  # two classes, one label each
    assert summary["budgets"][-1]["draws"] == 1 and summary["budgets"][-1]["difference"]["over"] == \
        "test_examples"
    # the linear probe is read from the full-label budget (the same logistic regression)
    assert summary["budgets"][-1]["pretrained"]["mean"] == pytest.approx(
        result["linear_probe"]["pretrained"])
    assert summary["budgets"][-1]["raw_features"]["mean"] > 0.9
    table = format_table(result)
    assert "label efficiency" in table and "1_per_class" in table and "verdict" in table
    # the same seed draws the same subsets: the whole result repeats exactly
    assert evaluate_run(seed_runs[0], device="cpu", overrides=EFFICIENCY) == result


def test_eval_of_several_runs_reports_each_and_across(seed_runs, capsys):
    out = evaluate_runs(seed_runs, device="cpu", overrides=EFFICIENCY)
    each = [out["runs"][str(r)] for r in seed_runs]
    lin = out["across_runs"]["linear_probe"]["pretrained"]
    values = [r["linear_probe"]["pretrained"] for r in each]
    assert lin == {"mean": pytest.approx(np.mean(values)), "std": pytest.approx(np.std(values))}
    pooled = out["label_efficiency"]
    assert pooled["runs"] == 2 and len(pooled["budgets"]) == 4
    for i, b in enumerate(pooled["budgets"]):
        assert b["pretrained"]["mean"] == pytest.approx(np.mean(
            [r["label_efficiency"]["budgets"][i]["pretrained"]["mean"] for r in each]))
    assert "mean ± std over 2 runs" in format_runs(out)
    # through the command line
    assert main(["eval", *map(str, seed_runs), *EFFICIENCY, "--device", "cpu", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["runs"]) == {str(r) for r in seed_runs}
    # saved: each run's result in its directory, all of them in the runs' common folder
    common = Path(os.path.commonpath([r.resolve() for r in seed_runs]))
    for run in seed_runs:
        saved = json.loads((run / "eval.json").read_text())
        assert saved.pop("command")[:4] == ["polyjepa", "eval", *map(str, seed_runs)]
        assert saved == printed["runs"][str(run)]
    everything = json.loads((common / "eval_runs.json").read_text())
    everything.pop("command")
    assert everything == printed
    assert main(["eval", *map(str, seed_runs), "eval.protocols=[linear_probe]", "--device",
                 "cpu", "--no-save"]) == 0
    shown = capsys.readouterr().out
    assert "mean ± std over 2 runs" in shown and "mean over 2 runs: pretrained vs random init" in shown
    assert "saved:" not in shown
    assert json.loads((common / "eval_runs.json").read_text())["runs"] == printed["runs"]


def test_eval_needs_a_run_directory(capsys):
    assert main(["eval", "eval.protocols=[knn]"]) == 2
    assert "name at least one run directory" in capsys.readouterr().err


def test_runs_pool_the_modality_baselines_too(seed_runs, monkeypatch):
    raw = get_modality("tabular").raw_features

    def first_columns(dataset, rows, seed):  # label-free, nothing to fit
        return lambda data: raw(data).numpy()[:, :3]

    monkeypatch.setattr(get_modality("tabular"), "baselines", {"first3": first_columns})
    out = evaluate_runs(seed_runs, device="cpu", overrides=EFFICIENCY)
    assert out["across_runs"]["baselines"] == ["first3"]
    pooled = out["label_efficiency"]["budgets"]
    assert all(b["versus"]["first3"]["verdict"] in LE.VERDICTS for b in pooled)
    assert pooled[0]["first3"]["mean"] == pytest.approx(np.mean(
        [r["label_efficiency"]["budgets"][0]["first3"]["mean"] for r in out["runs"].values()]))
    text = format_runs(out)
    assert "\nfirst3 " in text and "label efficiency pooled over 2 runs" in text
    assert "pretrained - first3" in text and "vs first3: linear_probe" in text


def test_intervals_stay_inside_the_metric_range():
    """A t-interval over 3 draws of accuracies near 1 reaches past 1; the summary clips it (and
    differences to [-1, 1]) without moving any verdict; R² keeps its open lower end."""
    from polyjepa.evaluate import within_range

    scores = LE.BudgetScores(LE.Budget("shots", 5), 10, False,
                             {"pretrained": np.array([1.0, 0.9, 1.0]),
                              "random_init": np.array([0.1, 0.0, 0.2])}, [])
    raw = LE.summarize(scores)
    assert raw["pretrained"]["high"] > 1 and raw["random_init"]["low"] < 0  # unclipped
    row = within_range(LE.summarize(scores), "accuracy")
    assert row["pretrained"]["high"] == 1.0 and row["random_init"]["low"] == 0.0
    assert -1 <= row["difference"]["low"] <= row["difference"]["high"] <= 1
    assert row["verdict"] == raw["verdict"] == "helps"
    r2 = within_range(LE.summarize(scores), "r2")
    assert r2["pretrained"]["high"] == 1.0 and r2["random_init"]["low"] == raw["random_init"]["low"]
