"""`polyjepa.testing.check_modality` over every installed modality (third-party ones too), and
on a plugin that breaks the contract (each problem is named)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from _helpers import BUILTIN_MODALITIES, single_thread  # noqa: F401

from polyjepa.registry import get_modality, list_modalities
from polyjepa.testing import ConformanceError, check_modality


@pytest.mark.parametrize("name", sorted(list_modalities()))
def test_every_installed_modality_conforms_and_its_recipes_train(name):
    trained = check_modality(name)
    if name in BUILTIN_MODALITIES:  # a third party's recipes live in its own package
        assert trained, f"{name}: no shipped recipe trained"


class NotPlainData:
    pass


def test_a_plugin_that_breaks_the_contract_gets_every_problem_named():
    tabular = get_modality("tabular")

    def synthetic(n: int = 200, seed: int = 0):
        train, test, meta = tabular.synthetic(n, seed)
        return train, test, {**meta, "scaler": NotPlainData()}

    broken = dataclasses.replace(tabular, name="broken", synthetic=synthetic,
                                 raw_features=lambda d: torch.zeros(len(d)))
    with pytest.raises(ConformanceError) as info:
        check_modality(broken, recipes=[])
    problems = str(info.value).splitlines()
    assert len(problems) == 2, problems
    assert problems[0].startswith("broken: meta is not plain data")
    assert "meta['scaler'] (NotPlainData)" in problems[0]
    assert problems[1] == "broken: raw_features must be [N, F] with N = 40, got (40,)"

    def no_defaults(n, seed):
        return tabular.synthetic(n, seed)

    with pytest.raises(ConformanceError, match="synthetic\\(\\) with its defaults"):
        check_modality(dataclasses.replace(tabular, synthetic=no_defaults), recipes=[])
