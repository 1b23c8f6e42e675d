"""A run's length from its data (`train.max_epochs` between `train.min_steps` and
`train.max_steps`): resolved once, said in the run's first lines and `run.json`, and spanned by
every schedule."""

from __future__ import annotations

import json
import logging

import pytest
from _helpers import build, single_thread, tiny_recipe  # noqa: F401

from polyjepa.budget import resolve_budget
from polyjepa.config import TrainConfig
from polyjepa.errors import ConfigError
from polyjepa.log import RUN
from polyjepa.train import pretrain


def test_without_max_epochs_the_run_takes_max_steps_whatever_the_data():
    for samples in (50, 5_000, 500_000):
        budget = resolve_budget(TrainConfig(max_steps=300), 20, samples, 32)
        assert (budget.steps, budget.warmup_steps, budget.rule) == (300, 20, "train.max_steps")


def test_epochs_scale_the_steps_with_the_data_between_the_floor_and_the_ceiling():
    train = TrainConfig(max_steps=3000, max_epochs=20, min_steps=100)
    small, middle, large = (resolve_budget(train, 300, n, 32) for n in (50, 1_600, 100_000))
    assert small.steps == 100 and "raised to train.min_steps=100" in small.rule  # 1 batch/epoch
    assert middle.steps == 20 * 50 and middle.epochs == 20 and middle.rule == "train.max_epochs=20"
    assert large.steps == 3000 and "capped at train.max_steps=3000" in large.rule
    # warm-up keeps its share of the run: 300 of 3000 steps, so 100 of 1000
    assert (small.warmup_steps, middle.warmup_steps, large.warmup_steps) == (10, 100, 300)


def test_a_ceiling_below_the_floor_wins():
    """`train.max_steps=5` shortens any run, a `min_steps` of the recipe notwithstanding."""
    budget = resolve_budget(TrainConfig(max_steps=5, max_epochs=100, min_steps=200), 50, 40, 32)
    assert budget.steps == 5 and "capped at train.max_steps=5" in budget.rule
    assert budget.warmup_steps == 5  # warm-up never outlasts the run


def test_epochs_count_micro_batches_and_processes():
    one = resolve_budget(TrainConfig(max_steps=10_000, max_epochs=4), 0, 3_200, 32)
    accumulated = resolve_budget(TrainConfig(max_steps=10_000, max_epochs=4, accumulate=2), 0,
                                 3_200, 32)
    two_ranks = resolve_budget(TrainConfig(max_steps=10_000, max_epochs=4), 0, 3_200, 32, 2)
    assert (one.steps, accumulated.steps, two_ranks.steps) == (400, 200, 200)
    assert one.epochs == accumulated.epochs == two_ranks.epochs == 4


@pytest.mark.parametrize("override,message", [
    ("train.max_epochs=0", "train.max_epochs must be > 0"),
    ("train.min_steps=0", "train.min_steps must be >= 1"),
])
def test_bad_budget_keys_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        build(tiny_recipe(), [override])


def test_a_run_trains_its_resolved_budget_and_says_so(tmp_path, caplog):
    """1,600 synthetic rows in batches of 32: 50 steps an epoch, 3 epochs = 150 steps, under a
    ceiling of 10,000; the learning rate's cosine ends at the resolved last step."""
    raw = tiny_recipe(train={"max_steps": 10_000, "max_epochs": 3, "log_every": 1})
    raw["optim"] = {"lr": 1e-3, "warmup_steps": 1000}
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps(raw))
    logging.getLogger(RUN).setLevel(logging.INFO)
    try:
        with caplog.at_level(logging.INFO, logger=RUN):
            run = pretrain(recipe, [], tmp_path / "run")
    finally:
        logging.getLogger(RUN).setLevel(logging.NOTSET)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["step"] == 150
    assert rows[-1]["lr"] < 1e-6  # the cosine reached its end at the budget, not at 10,000
    peak = max(rows, key=lambda r: r["lr"])  # warm-up: 1000 of 10,000 steps, so 15 of 150
    assert peak["lr"] == pytest.approx(1e-3) and peak["step"] == 16
    info = json.loads((run / "run.json").read_text())
    assert (info["steps"], info["epochs"], info["train_samples"]) == (150, 3.0, 1600)
    assert "150 steps = 3.0 epochs of 1,600 training samples at batch 32" in caplog.text
