"""Checkpoint selection (`train.select`): `encoder.pt` is the best of step 0 (the random
initialisation), the probed steps and the last, and the run says plainly when step 0 won."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _helpers import build, single_thread, tiny_recipe  # noqa: F401

from polyjepa.checkpoint import load_file
from polyjepa.cli import main
from polyjepa.errors import ConfigError
from polyjepa.evaluate import evaluate_run, format_table
from polyjepa.report import write_report
from polyjepa.selection import Selector, candidate_every, selection_rule
from polyjepa.train import kept_encoder_path


def test_val_probe_falls_back_to_rankme_when_the_validation_split_cannot_decide():
    enough = np.repeat([0, 1, 2], 3)
    assert selection_rule("val_probe", enough) == ("val_probe", None)
    by, why = selection_rule("val_probe", np.array([0, 0, 0, 1, 1, 2, 2, 2]))
    assert by == "rankme" and "too small to decide" in why and "2 in its smallest" in why
    by, why = selection_rule("val_probe", np.full(20, -1))  # unlabelled
    assert by == "rankme" and "no labels" in why
    assert selection_rule("rankme", None) == ("rankme", None)


def test_candidates_come_often_enough_for_a_short_run():
    assert candidate_every(500, 10_000, "val_probe") == 500
    assert candidate_every(500, 120, "val_probe") == 30  # 4 candidates after step 0
    assert candidate_every(500, 120, "last") == 500  # no selection: the cadence as given
    assert candidate_every(500, 2, "rankme") == 1


def test_the_best_score_wins_and_a_tie_goes_to_the_earlier_step():
    s = Selector("val_probe")
    assert s.offer(0, {"probe/few_shot": 0.8, "probe/linear_mse": 0.5})
    assert not s.offer(10, {"probe/few_shot": 0.8, "probe/linear_mse": 0.5})  # a full tie
    assert s.best_step == 0
    assert s.offer(20, {"probe/few_shot": 0.8, "probe/linear_mse": 0.4})  # tie broken by the mse
    assert not s.offer(30, {"probe/few_shot": 0.7, "probe/linear_mse": 0.1})  # accuracy first
    assert s.offer(40, {"probe/few_shot": 0.9, "probe/linear_mse": 0.9})
    assert not s.offer(50, {"probe/knn": 1.0})  # no score: not a candidate
    assert s.best_step == 40 and [c[0] for c in s.candidates] == [0, 10, 20, 30, 40]
    assert s.verdict().startswith("encoder.pt is step 40's encoder, selected by val_probe")
    again = Selector("rankme")
    again.load_state_dict(json.loads(json.dumps(s.state_dict())))  # through a checkpoint
    assert again == s


def test_the_verdict_says_when_the_random_initialisation_won():
    s = Selector("rankme", fallback="the validation split has no labels")
    s.offer(0, {"probe/rankme": 12.0})
    s.offer(100, {"probe/rankme": 3.0})
    text = s.verdict()
    assert text.startswith("encoder.pt is the random initialisation (step 0)")
    assert "pretraining did not beat the random network" in text
    assert "no labels" in text and "best later 3 at step 100" in text
    assert s.summary()["step"] == 0 and s.summary()["step0_score"] == 12.0


@pytest.mark.parametrize("override,message", [
    ("train.select=best", "train.select: unknown value 'best'"),
    ("train.select=rankme", "set train.probe_every"),
    ("train.probe_every=5 train.select=val_probe", "set data.val_fraction"),
])
def test_bad_selection_keys_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        build(tiny_recipe(), override.split())


def hurting_recipe(directory: Path, select: str) -> Path:
    """A run built so that training hurts: the target encoder is the online one (EMA momentum
    0) and the learning rate is high, so JEPA's latents collapse towards a constant (measured:
    validation accuracy 0.73 -> 0.62, RankMe 10.7 -> 3.5 within 10 steps)."""
    raw = tiny_recipe(train={"max_steps": 40, "probe_every": 10, "select": select},
                      ema={"start": 0.0, "end": 0.0, "schedule": "constant"})
    raw["optim"] = {"lr": 0.1, "warmup_steps": 0}
    raw["data"] = {"val_fraction": 0.2}
    path = directory / f"hurt_{select}.yaml"
    path.write_text(json.dumps(raw))
    return path


@pytest.mark.parametrize("select", ["val_probe", "rankme"])
def test_selection_returns_step_0_when_training_hurts(tmp_path, capsys, select):
    recipe = hurting_recipe(tmp_path, select)
    assert main(["pretrain", str(recipe), "--out", str(tmp_path / "run"), "--no-report"]) == 0
    run = tmp_path / "run"
    last_line = capsys.readouterr().out.strip().splitlines()[-1]
    assert last_line.startswith("encoder.pt is the random initialisation (step 0)")
    assert "pretraining did not beat the random network" in last_line
    selection = json.loads((run / "run.json").read_text())["selection"]
    assert selection["step"] == 0 and selection["by"] == select
    assert [c[0] for c in selection["candidates"]] == [0, 10, 20, 30, 40]
    exported, first, final = (load_file(p)["state_dict"] for p in (
        run / "encoder.pt", kept_encoder_path(run, 0), kept_encoder_path(run, 40)))
    assert all(torch.equal(exported[k], first[k]) for k in exported)  # the random network
    assert not all(torch.equal(final[k], first[k]) for k in final)  # training did change it
    keys = ["eval.init_seeds=1", "eval.protocols=[linear_probe,label_efficiency]",
            "eval.shots=[5]", "eval.fractions=[1.0]", "eval.draws=5"]
    result = evaluate_run(run, device="cpu", overrides=keys)
    assert result["selection"]["step"] == 0
    # paired with the network the run started from, the difference is exactly nothing ...
    for budget in result["label_efficiency"]["budgets"]:
        own = budget["versus"]["own_init"]
        assert own["difference"]["mean"] == 0.0 and own["verdict"] == "no difference"
    # ... while the trained encoder of the last step is worse than it
    last = evaluate_run(run, device="cpu", overrides=keys, checkpoint=40)
    assert all(b["versus"]["own_init"]["difference"]["mean"] < 0
               for b in last["label_efficiency"]["budgets"])
    assert "(encoder.pt is the random initialisation (step 0)" in format_table(result)
    page = write_report([run]).read_text()
    assert "encoder.pt is the random initialisation (step 0)" in page


def test_selection_survives_a_resume(tmp_path):
    """A run stopped half-way and resumed selects what an uninterrupted run selects."""
    recipe = hurting_recipe(tmp_path, "val_probe")
    whole = tmp_path / "whole"
    assert main(["pretrain", str(recipe), "--out", str(whole), "--no-report"]) == 0
    half = tmp_path / "half"
    assert main(["pretrain", str(recipe), "train.max_steps=20", "--out", str(half),
                 "--no-report"]) == 0
    assert main(["pretrain", str(recipe), "train.max_steps=40", "--out", str(half), "--resume",
                 "--no-report"]) == 0
    a, b = (json.loads((r / "run.json").read_text())["selection"] for r in (whole, half))
    assert a["step"] == b["step"] == 0
    assert [c[0] for c in b["candidates"]] == [0, 5, 10, 15, 20, 30, 40]
