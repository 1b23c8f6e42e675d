"""Plugin discovery through real installed distributions (a `*.dist-info` folder on sys.path),
not a monkeypatched registry: third-party components, broken plugins, name clashes, errors."""

from __future__ import annotations

import importlib.metadata as metadata
import os
import re
import subprocess
import sys

import pytest
import torch
from _helpers import BUILTIN_MODALITIES, Site

from polyjepa import registry
from polyjepa.build import build_backbone, load_recipe
from polyjepa.errors import ConfigError, RegistryError
from polyjepa.hub import load_encoder
from polyjepa.train import pretrain


def ours(modalities: dict[str, str]) -> dict[str, str]:
    """The modalities polyjepa itself provides (an environment may have others installed, as
    CI has the image example)."""
    return {name: origin for name, origin in modalities.items() if origin == "polyjepa"}


def components() -> dict[str, registry.Component]:
    return dict(registry.list_components())


# --- built-ins ---------------------------------------------------------------------------------


def test_builtin_tabular_comes_from_the_polyjepa_distribution_entry_point(site):
    eps = {ep.name: ep for ep in metadata.entry_points(group=registry.MODALITY_GROUP)}
    assert eps["tabular"].value == "polyjepa.modalities.tabular:plugin"
    assert eps["tabular"].dist.name == "polyjepa"
    assert registry.list_modalities()["tabular"] == "polyjepa"
    assert registry.get_modality("tabular").name == "tabular"
    feature = components()["tabular.feature"]
    assert (feature.kind, feature.origin) == ("tokenizer", "polyjepa")
    assert components()["transformer"].origin == "polyjepa"
    assert registry.plugin_failures() == []


# --- a third-party component -------------------------------------------------------------------


def test_third_party_tokenizer_is_listed_with_its_distribution(site):
    site.install_extra()
    site.activate()
    comps = components()
    assert "tabular.mlp_tokenizer" in comps
    comp = comps["tabular.mlp_tokenizer"]
    assert comp.origin == "polyjepa-extra"
    assert comp.kind == "tokenizer"
    assert comp.factory.__module__ == "polyjepa_extra"
    # kind filtering: a tokenizer is not offered for the masker slot
    assert "tabular.mlp_tokenizer" in dict(registry.list_components("tokenizer"))
    assert "tabular.mlp_tokenizer" not in dict(registry.list_components("masker"))
    assert registry.get_component("tabular.mlp_tokenizer", "tokenizer", "tabular") is comp
    with pytest.raises(RegistryError, match="unknown masker"):
        registry.get_component("tabular.mlp_tokenizer", "masker", "tabular")
    assert registry.plugin_failures() == []


def test_reset_picks_up_a_distribution_installed_after_the_first_lookup(site):
    assert "tabular.mlp_tokenizer" not in components()
    site.install_extra()
    site.activate()  # sys.path change + reset, as after `pip install`
    assert components()["tabular.mlp_tokenizer"].origin == "polyjepa-extra"


def test_recipe_with_third_party_tokenizer_trains_end_to_end(site, tiny_recipe, tmp_path):
    site.install_extra()
    site.activate()
    path = tiny_recipe({"model": {"tokenizer": {"name": "tabular.mlp_tokenizer", "dim": 16,
                                                "hidden": 4}}})
    run = pretrain(path, [], tmp_path / "run")
    assert (run / "encoder.pt").is_file()
    assert (run / "checkpoints" / "last.pt").is_file()
    # the exported encoder holds the third-party tokenizer's weights and loads back through it
    backbone = load_encoder(run)
    tokenizer = backbone.tokenizer
    assert type(tokenizer).__name__ == "MLPTokenizer"
    assert tuple(tokenizer.w2.shape) == (6, 4, 16)  # 6 numeric columns in the synthetic table
    blob = torch.load(run / "encoder.pt", weights_only=True)
    assert "tokenizer.w2" in blob["state_dict"]
    assert blob["config"]["model"]["tokenizer"]["name"] == "tabular.mlp_tokenizer"
    x = {"num": torch.randn(3, 6), "cat": torch.zeros(3, 3, dtype=torch.long)}
    assert backbone(x).shape == (3, 9, 16)


def test_unknown_tokenizer_names_modality_and_available_ones(site, tiny_recipe, tmp_path):
    site.install_extra()
    site.activate()
    path = tiny_recipe({"model": {"tokenizer": {"name": "tabular.transformer_tok"}}})
    recipe = load_recipe(path)
    with pytest.raises(ConfigError) as info:
        build_backbone(recipe, {"num_numeric": 2, "cardinalities": [3], "num_tokens": 3})
    msg = str(info.value)
    assert "unknown tokenizer 'tabular.transformer_tok'" in msg
    assert "modality 'tabular'" in msg
    assert "model.tokenizer" in msg and str(path) in msg
    assert "tabular.feature" in msg and "tabular.mlp_tokenizer" in msg
    assert "did you mean" not in msg  # nothing is close to it
    # components of other kinds are not offered as tokenizers
    assert "random_subsets" not in msg and "transformer," not in msg

    with pytest.raises(RegistryError) as info:
        registry.get_component("tabular.nope", "tokenizer", "tabular")
    assert "unknown tokenizer 'tabular.nope' for modality 'tabular'" in str(info.value)
    assert "available: tabular.feature, tabular.mlp_tokenizer" in str(info.value)


def test_near_miss_gets_a_did_you_mean(site):
    site.install_extra()
    site.activate()
    with pytest.raises(RegistryError, match="did you mean 'tabular.mlp_tokenizer'"):
        registry.get_component("tabular.mlp_tokeniser", "tokenizer", "tabular")
    with pytest.raises(RegistryError, match="did you mean 'transformer'"):
        registry.get_component("transfromer", "encoder", "tabular")
    with pytest.raises(RegistryError, match="unknown modality 'tabluar'.*did you mean 'tabular'"):
        registry.get_modality("tabluar")


# --- broken and clashing plugins ---------------------------------------------------------------


def test_broken_modality_is_reported_and_does_not_stop_tabular(site):
    site.install("polyjepa-broken", {registry.MODALITY_GROUP: {"brokenmod": "polyjepa_broken:plugin"}},
                 {"polyjepa_broken": "raise ImportError('needs libfoo, which is not installed')\n"})
    site.activate()
    with pytest.warns(UserWarning, match="polyjepa plugin failed to load: modality 'brokenmod'"):
        modalities = registry.list_modalities()
    assert ours(modalities) == dict.fromkeys(BUILTIN_MODALITIES, "polyjepa")
    assert "brokenmod" not in modalities
    (failure,) = registry.plugin_failures()
    assert "modality 'brokenmod'" in failure
    assert "polyjepa-broken" in failure
    assert "polyjepa_broken:plugin" in failure
    assert "needs libfoo" in failure
    assert re.search(r"at .*polyjepa_broken\.py:1$", failure), failure  # where it was raised
    # tabular still works, and asking for the broken one explains why it is missing
    assert registry.get_modality("tabular").name == "tabular"
    with pytest.raises(RegistryError) as info:
        registry.get_modality("brokenmod")
    assert "unknown modality 'brokenmod'" in str(info.value)
    assert "failed to load" in str(info.value) and "needs libfoo" in str(info.value)


def test_modality_entry_point_that_is_not_a_plugin_is_a_failure(site):
    site.install("polyjepa-notaplugin", {registry.MODALITY_GROUP: {"wrong": "polyjepa_np:plugin"}},
                 {"polyjepa_np": "plugin = {'name': 'wrong'}\n"})
    site.activate()
    with pytest.warns(UserWarning):
        assert "wrong" not in registry.list_modalities()
    (failure,) = registry.plugin_failures()
    assert "modality 'wrong'" in failure and "polyjepa-notaplugin" in failure
    assert "ModalityPlugin" in failure


def test_same_modality_name_from_two_distributions_is_an_error(site):
    site.install("polyjepa-rival", {registry.MODALITY_GROUP: {"tabular": "polyjepa_rival:plugin"}},
                 {"polyjepa_rival": "plugin = None\n"})
    site.activate()
    with pytest.raises(RegistryError) as info:
        registry.list_modalities()
    msg = str(info.value)
    assert "'tabular'" in msg and "defined twice" in msg
    assert "polyjepa-rival" in msg and "polyjepa_rival:plugin" in msg
    assert "'polyjepa_rival:plugin' by polyjepa-rival" in msg
    assert re.search(r"'polyjepa\.modalities\.tabular:plugin' by polyjepa(?![-\w])", msg), msg


def test_same_target_from_two_distributions_is_not_a_clash(site):
    site.install("polyjepa-alias", {registry.MODALITY_GROUP: {
        "tabular": "polyjepa.modalities.tabular:plugin"}})
    site.activate()
    assert set(BUILTIN_MODALITIES) <= set(registry.list_modalities())
    assert registry.get_modality("tabular").components["feature"].__name__ == "FeatureTokenizer"
    assert registry.plugin_failures() == []


def test_component_for_a_missing_modality_or_taken_name_is_a_failure(site):
    site.install_extra({"polyjepa.components": {
        "lidar.spectrogram": "polyjepa_extra:MLPTokenizer",
        "tabular.feature": "polyjepa_extra:MLPTokenizer",
        "noprefix": "polyjepa_extra:MLPTokenizer",
    }})
    site.activate()
    with pytest.warns(UserWarning, match="failed to load"):
        comps = components()
    failures = registry.plugin_failures()
    assert len(failures) == 3, failures
    by_name = {f.split("'")[1]: f for f in failures}
    assert "modality 'lidar' is not installed" in by_name["lidar.spectrogram"]
    assert "polyjepa-extra" in by_name["lidar.spectrogram"]
    assert "already provided by polyjepa" in by_name["tabular.feature"]
    assert "modality.name" in by_name["noprefix"]
    # the good component of the same distribution still loads; the built-in keeps its name
    assert comps["tabular.mlp_tokenizer"].origin == "polyjepa-extra"
    assert comps["tabular.feature"].origin == "polyjepa"
    assert not any(name.startswith("lidar.") for name in comps)


def test_polyjepa_list_cli_shows_builtins_third_party_and_failures(tmp_path):
    site = Site(tmp_path)
    site.install_extra()
    site.install("polyjepa-broken", {registry.MODALITY_GROUP: {"brokenmod": "polyjepa_broken:plugin"}},
                 {"polyjepa_broken": "raise ImportError('needs libfoo')\n"})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(tmp_path), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-m", "polyjepa", "list"], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    modalities = lines[lines.index("modalities:") + 1: lines.index("components:")]
    assert [line.split() for line in modalities if line.endswith("(polyjepa)")] == [
        [name, "(polyjepa)"] for name in BUILTIN_MODALITIES]
    rows = {line.split()[0]: line.split()[1:] for line in lines if line.startswith("  ")}
    assert rows["transformer"] == ["encoder", "(polyjepa)"]
    assert rows["tabular.feature"] == ["tokenizer", "(polyjepa)"]
    assert rows["tabular.mlp_tokenizer"] == ["tokenizer", "(polyjepa-extra)"]
    failed = [line for line in lines if line.startswith("failed to load:")]
    assert len(failed) == 1 and "brokenmod" in failed[0] and "polyjepa-broken" in failed[0]


def test_third_party_source_is_not_importable_without_installing(site):
    """Guard for the tests above: polyjepa_extra is only visible through the installed site."""
    assert "polyjepa_extra" not in sys.modules
    with pytest.raises(ImportError):
        __import__("polyjepa_extra")


def test_autoload_can_be_disabled_to_load_only_named_plugins(site, monkeypatch):
    site.install("polyjepa-broken", {registry.MODALITY_GROUP: {"brokenmod": "polyjepa_broken:plugin"}},
                 {"polyjepa_broken": "raise ImportError('needs libfoo')\n"})
    site.activate()
    monkeypatch.setenv(registry.DISABLE_AUTOLOAD_ENV, "1")
    monkeypatch.setenv(registry.PLUGINS_ENV, "tabular, audio")
    registry.reset()
    assert set(registry.list_modalities()) == {"tabular", "audio"}
    assert registry.plugin_failures() == []  # the broken one was never imported
    monkeypatch.setenv(registry.DISABLE_AUTOLOAD_ENV, "0")
    registry.reset()
    with pytest.warns(UserWarning, match="brokenmod"):
        assert set(BUILTIN_MODALITIES) <= set(registry.list_modalities())
