"""The core's contracts as types (`polyjepa.contracts`): parts are checked when built, hooks get
their defaults, objectives from a third party build their own heads (`Objective.parts`), and one
builder (`polyjepa.build.assemble`) puts a run together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _helpers import build, single_thread, tiny_recipe, write_recipe  # noqa: F401
from torch import nn

from polyjepa import build as B
from polyjepa.contracts import HOOKS, Objective, conform
from polyjepa.data import Collate
from polyjepa.errors import ConfigError, ContractError
from polyjepa.train import pretrain
from polyjepa.types import Masks

OBJECTIVE_MODULE = Path(__file__).parent / "third_party" / "polyjepa_objective.py"
OBJECTIVE_EPS = {"polyjepa.components": {
    "tabular.mean_latent": "polyjepa_objective:MeanLatentPrediction",
    "tabular.not_an_objective": "polyjepa_objective:NotAnObjective"}}


@pytest.fixture
def objective_installed(site):
    site.install("polyjepa-objective", OBJECTIVE_EPS,
                 {"polyjepa_objective": OBJECTIVE_MODULE.read_text()})
    site.activate()


def test_a_part_without_a_required_member_is_named_when_built():
    with pytest.raises(ContractError) as info:
        conform(nn.Linear(3, 4), "tokenizer", "model.tokenizer 'x.linear' (somebody)")
    message = str(info.value)
    assert message.startswith("model.tokenizer 'x.linear' (somebody) does not satisfy "
                              "polyjepa.contracts.Tokenizer")
    assert message.endswith("it has no dim (see that protocol's docstring)")


def test_missing_hooks_get_their_defaults_and_present_ones_are_kept():
    tokenizer = nn.Linear(3, 4)
    tokenizer.dim = 4
    tokenizer.layout = {"num_tokens": 3}
    conform(tokenizer, "tokenizer", "model.tokenizer")
    assert tokenizer.layout == {"num_tokens": 3}
    assert tokenizer.step_actions is None and tokenizer.uses_future is False
    other = nn.Linear(3, 4)
    other.dim = 4
    conform(other, "tokenizer", "model.tokenizer")
    other.layout["grid"] = (1, 3)
    assert HOOKS["tokenizer"]["layout"] == {}  # each part gets its own copy of a default


def test_a_plain_function_masker_is_called_with_the_batch_size():
    calls = []

    def masker(batch_size, generator):
        calls.append(batch_size)
        return Masks(torch.zeros(batch_size, 1, dtype=torch.long),
                     torch.ones(batch_size, 1, 1, dtype=torch.long))

    collate = Collate(masker)
    assert masker.reads_input is False and masker.progressive is False
    batch = collate([((torch.zeros(2), 0), 7, 0), ((torch.ones(2), 1), 7, 0)])
    assert calls == [2] and batch.masks.context.shape == (2, 1)


def test_a_masker_that_reads_input_is_given_the_batch():
    seen = []

    def masker(x, generator):
        seen.append(x.clone())
        return Masks(torch.zeros(len(x), 1, dtype=torch.long),
                     torch.ones(len(x), 1, 1, dtype=torch.long))

    masker.reads_input = True
    Collate(masker)([((torch.full((2,), 3.0), 0), 1, 0)])
    assert torch.equal(seen[0], torch.full((1, 2), 3.0))


def test_a_third_party_objective_builds_its_own_head_and_trains(objective_installed, tmp_path):
    raw = tiny_recipe(objective={"name": "tabular.mean_latent"})
    raw["model"]["predictor"] = {"name": "mlp", "hidden_dim": 8}
    run = B.assemble(build(raw))
    objective = run.objective
    assert isinstance(objective, Objective)
    assert type(objective).__name__ == "MeanLatentPrediction"
    assert objective.head.out_dim == objective.online.dim == 16  # sized by its parts hook
    assert objective.head.net[0].in_features == 16  # in_dim: the backbone's width
    assert run.collate.num_views == 0  # the class says so
    done = pretrain(write_recipe(raw, tmp_path), [], tmp_path / "run")
    losses = [json.loads(line)["loss_mean_latent"] for line in
              (done / "metrics.jsonl").read_text().splitlines() if "loss_mean_latent" in line]
    assert losses and all(torch.isfinite(torch.tensor(losses)))


def test_a_third_party_objective_without_its_head_says_which(objective_installed):
    raw = tiny_recipe(objective={"name": "tabular.mean_latent"})
    raw["model"].pop("predictor")
    with pytest.raises(ConfigError, match="model.predictor: the tabular.mean_latent objective "
                                        "needs one"):
        B.assemble(build(raw))


def test_an_objective_that_does_not_subclass_the_base_is_rejected(objective_installed):
    raw = tiny_recipe(objective={"name": "tabular.not_an_objective"})
    with pytest.raises(ContractError, match="objective 'tabular.not_an_objective' "
                                            r"\(polyjepa-objective\) is a NotAnObjective, not a "
                                            "subclass of polyjepa.contracts.Objective"):
        B.assemble(build(raw))


def test_assemble_builds_the_masker_once_for_the_collate_and_the_objective(monkeypatch):
    built = []
    real = B.build_masker

    def counting(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(B, "build_masker", counting)
    run = B.assemble(build(tiny_recipe()))
    assert len(built) == 1 and run.collate.masker is built[0]
    assert run.splits.train is not None and len(run.splits.test) == 400


def test_an_objective_without_forward_cannot_be_built():
    class Forgetful(Objective):
        def __init__(self) -> None:
            super().__init__()

    with pytest.raises(TypeError, match="abstract method 'forward'|abstract method forward"):
        Forgetful()
