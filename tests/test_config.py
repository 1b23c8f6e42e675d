"""Recipe validation: unknown keys, wrong types, component options, inheritance, overrides; every
shipped recipe builds; a bad recipe given to `pretrain` leaves no run directory behind."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml
from _helpers import build as build_raw
from _helpers import tiny_recipe as tiny_raw
from conftest import advised_keys, unknown_advice

from polyjepa import config as C
from polyjepa.build import (
    build_augmentations,
    build_masker,
    build_objective,
    load_datasets,
    load_recipe,
    recipe_from_dict,
)
from polyjepa.errors import ConfigError, PolyjepaError
from polyjepa.hub import read_run_config
from polyjepa.modalities.tabular.readers import TabularDataConfig
from polyjepa.train import pretrain


def flatten(d: dict, prefix: str = "") -> dict[str, object]:
    """Nested dict -> {"a.b.c": value} (lists and scalars are leaves)."""
    out: dict[str, object] = {}
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def error_of(recipe: str | Path, overrides: list[str] = ()) -> str:
    with pytest.raises(ConfigError) as info:
        load_recipe(recipe, list(overrides))
    return str(info.value)


# --- unknown keys and wrong types ----------------------------------------------------------------


def test_unknown_top_level_key_names_key_and_file(tiny_recipe):
    path = tiny_recipe({"optimizer": {"lr": 0.1}})
    msg = error_of(path)
    assert str(path) in msg
    assert "unknown key 'optimizer'" in msg
    assert "optim" in msg.split("valid keys here:")[1]  # the key that was meant is listed


def test_unknown_nested_key_from_the_command_line(tiny_recipe):
    path = tiny_recipe()
    msg = error_of(path, ["train.max_stepz=5"])
    assert "unknown key 'train.max_stepz' (did you mean 'train.max_steps'?)" in msg
    assert str(path) in msg and "command-line" in msg
    assert "max_steps" in msg.split("valid keys here:")[1]


def test_unknown_nested_key_in_the_file_names_the_file_only(tiny_recipe):
    path = tiny_recipe({"ema": {"strat": 0.99}})
    msg = error_of(path)
    assert "unknown key 'ema.strat' (did you mean 'ema.start'?)" in msg and str(path) in msg
    assert "command-line" not in msg


def test_unknown_data_key_is_checked_against_the_modality_schema(tiny_recipe):
    msg = error_of(tiny_recipe(synthetic=False), ["data.pth=x.csv"])
    assert "unknown key 'data.pth'" in msg
    assert "path" in msg.split("valid keys here:")[1]


@pytest.mark.parametrize(("override", "key", "expected"), [
    ("train.batch_size=abc", "train.batch_size", "expected int, got 'abc'"),
    ("train.max_steps=2.5", "train.max_steps", "expected int, got 2.5"),
    ("train.max_steps=true", "train.max_steps", "expected int, got True"),
    ("optim.lr=fast", "optim.lr", "expected float, got 'fast'"),
    ("train.progress=[1]", "train.progress", "expected bool"),
    ("optim.betas=[0.9]", "optim.betas", "expected 2 values"),
    ("optim.betas=[0.9, x]", "optim.betas[1]", "expected float, got 'x'"),
    ("train=5", "train", "expected a mapping"),
    ("model.tokenizer=feature", "model.tokenizer", "expected a mapping"),
    ("data.categorical=[1.5]", "data.categorical", "got [1.5]"),
])
def test_wrong_type_names_key_and_expected_type(tiny_recipe, override, key, expected):
    msg = error_of(tiny_recipe(synthetic=False), [override])
    assert f": {key}: " in msg
    assert expected in msg


def test_wrong_type_in_file(tiny_recipe):
    path = tiny_recipe({"train": {"seed": "zero"}})
    msg = error_of(path)
    assert msg.startswith(str(path)) and "train.seed: expected int, got 'zero'" in msg


def test_ints_are_accepted_for_floats_and_none_for_optionals(tiny_recipe):
    cfg = load_recipe(tiny_recipe(), ["optim.lr=1", "optim.grad_clip_norm=null",
                                      "optim.weight_decay_end=0"]).cfg
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.grad_clip_norm is None
    assert cfg.optim.weight_decay_end == 0.0 and isinstance(cfg.optim.weight_decay_end, float)


def test_exponent_notation_is_a_float(tiny_recipe):
    assert load_recipe(tiny_recipe(), ["optim.lr=1e-3"]).cfg.optim.lr == pytest.approx(1e-3)


def test_data_section_that_is_not_a_mapping(tiny_recipe):
    msg = error_of(tiny_recipe(synthetic=False), ["data=sklearn:iris"])
    assert "data: expected a mapping" in msg


# --- component options (checked against the factory signature when the run is built) -----------


def test_unknown_component_option_lists_accepted_options(tiny_recipe, tmp_path):
    path = tiny_recipe()
    out = tmp_path / "run"
    with pytest.raises(ConfigError) as info:
        pretrain(path, ["model.encoder.dept=2"], out)
    msg = str(info.value)
    assert ("unknown key 'model.encoder.dept' for encoder 'transformer' (did you mean "
            "'model.encoder.depth'?)") in msg
    options = msg.split("its options:")[1]
    for name in ("depth", "num_heads", "mlp_ratio", "reg_tokens"):
        assert name in options
    assert "dim" not in options.replace("_dim", "")  # filled from the tokenizer, not an option
    assert not out.exists()


def test_component_section_without_name(tiny_recipe, tmp_path):
    path = tiny_recipe()
    raw = yaml.safe_load(path.read_text())
    del raw["masker"]["name"]
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"masker: missing 'name'"):
        pretrain(path, [], tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_value_rejected_by_a_component_names_the_field(tiny_recipe, tmp_path):
    with pytest.raises(ConfigError) as info:
        pretrain(tiny_recipe(), ["model.encoder.num_heads=3"], tmp_path / "run")
    assert "model.encoder" in str(info.value) and "not divisible by num_heads=3" in str(info.value)
    assert not (tmp_path / "run").exists()


# --- missing keys, unknown recipes, bad files --------------------------------------------------


@pytest.mark.parametrize(("drop", "key"), [
    (("objective",), "objective"),
    (("modality",), "modality"),
])
def test_missing_required_key(tiny_recipe, drop, key):
    path = tiny_recipe()
    raw = yaml.safe_load(path.read_text())
    node = raw
    for part in drop[:-1]:
        node = node[part]
    del node[drop[-1]]
    path.write_text(yaml.safe_dump(raw))
    msg = error_of(path)
    assert f"missing required key '{key}'" in msg and str(path) in msg


def test_transformer_without_tokenizer_is_an_error_at_build_time(tiny_recipe):
    raw = yaml.safe_load(tiny_recipe().read_text())
    del raw["model"]["tokenizer"]
    recipe = recipe_from_dict(raw, "r.yaml")
    meta = load_datasets(recipe)[2]
    with pytest.raises(ConfigError, match=r"r.yaml: model.tokenizer: encoder 'transformer' reads "
                                          r"tokens; name a tokenizer"):
        build_objective(recipe, meta)


def test_unknown_recipe_name_lists_shipped_recipes():
    msg = error_of("t_jepa_dmo")
    assert "unknown recipe 't_jepa_dmo'" in msg
    shipped = msg.split("shipped recipes:")[1]
    for name in C.list_recipes():
        assert name in shipped
    assert {"t_jepa", "t_jepa_demo"} <= set(C.list_recipes())


def test_missing_recipe_file(tmp_path):
    assert "recipe file not found" in error_of(tmp_path / "nope.yaml")


@pytest.mark.parametrize("text", ["model: [unclosed\n", "modality: tabular\n  bad: indent\n"])
def test_invalid_yaml(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    msg = error_of(path)
    assert msg.startswith(f"{path}: not valid YAML")


def test_recipe_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- modality\n- tabular\n")
    assert "a recipe is a YAML mapping, got list" in error_of(path)


def test_shipped_recipe_name_wins_over_a_folder_of_that_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "t_jepa").mkdir()  # e.g. the run directory of `pretrain t_jepa --out t_jepa`
    assert load_recipe("t_jepa_demo").cfg.train.max_steps == 3000


# --- base: inheritance -------------------------------------------------------------------------


def test_t_jepa_demo_is_t_jepa_with_only_its_overrides():
    base = flatten(C.to_dict(load_recipe("t_jepa").cfg))
    demo = flatten(C.to_dict(load_recipe("t_jepa_demo").cfg))
    own = C.read_yaml(C.list_recipes()["t_jepa_demo"])
    assert own.pop("base") == "t_jepa"
    own = flatten(own)
    assert own, "the demo overrides something"
    assert base.keys() == demo.keys()
    for key in base:
        if key in own:
            assert demo[key] == own[key], key
        else:
            assert demo[key] == base[key], key  # inherited, siblings of overridden keys included
    assert {k for k in base if base[k] != demo[k]} <= set(own)
    assert {"model.encoder.depth", "train.max_steps"} <= {k for k in own if own[k] != base[k]}


def test_base_chain_relative_file_and_overrides(tmp_path, monkeypatch):
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "mid.yaml").write_text("base: t_jepa_demo\ntrain: {max_steps: 7}\n")
    (recipes / "leaf.yaml").write_text("base: mid.yaml\ntrain: {batch_size: 8}\n"
                                       "model: {encoder: {num_heads: 1}}\n")
    monkeypatch.chdir(tmp_path)  # `mid.yaml` resolves next to leaf.yaml, not in the cwd
    cfg = load_recipe(recipes / "leaf.yaml", ["train.seed=3"]).cfg
    assert (cfg.train.max_steps, cfg.train.batch_size, cfg.train.seed) == (7, 8, 3)
    assert cfg.train.log_every == 25  # from t_jepa_demo
    assert cfg.model.encoder == {**load_recipe("t_jepa_demo").cfg.model.encoder, "num_heads": 1}
    assert cfg.model.encoder["reg_tokens"] == 1  # from t_jepa, through t_jepa_demo
    assert cfg.optim.lr == pytest.approx(3.66e-4)  # from t_jepa


def test_base_cycle_is_an_error(tmp_path):
    (tmp_path / "a.yaml").write_text("base: b.yaml\nmodality: tabular\n")
    (tmp_path / "b.yaml").write_text("base: a.yaml\n")
    (tmp_path / "self.yaml").write_text("base: self.yaml\n")
    assert "cycle" in error_of(tmp_path / "a.yaml")
    assert "cycle" in error_of(tmp_path / "self.yaml")


def test_base_must_be_a_name(tmp_path):
    (tmp_path / "a.yaml").write_text("base: [t_jepa]\n")
    assert "base: expected a recipe name or path" in error_of(tmp_path / "a.yaml")


# --- overrides ---------------------------------------------------------------------------------


def test_overrides_create_nested_values_and_merge_into_sections(tiny_recipe):
    cfg = load_recipe(tiny_recipe(), [
        "model.projector.out_dim=8",  # section absent (None) in the recipe: created
        "masker.num_targets=2",  # merged into the existing spec, name kept
        "eval.max_train=100",  # section absent from the file: created, defaults for the rest
        "data_root=/somewhere",
    ]).cfg
    assert cfg.model.projector == {"out_dim": 8}
    assert cfg.masker == {"name": "random_subsets", "num_targets": 2}
    assert cfg.eval.max_train == 100 and cfg.eval.knn_k == 20
    assert cfg.data_root == "/somewhere"


def test_overrides_are_read_as_yaml_and_do_not_touch_the_file(tiny_recipe):
    path = tiny_recipe()
    before = path.read_text()
    cfg = load_recipe(path, ["masker.context_ratio=[0.2, 0.3]", "train.device=cpu",
                             "optim.grad_clip_norm=null", 'paper="x: y"']).cfg
    assert cfg.masker["context_ratio"] == [0.2, 0.3]
    assert cfg.train.device == "cpu"
    assert cfg.paper == "x: y"
    assert path.read_text() == before


@pytest.mark.parametrize(("override", "expected"), [
    ("train.max_steps.x=1", "'max_steps' is not a section"),
    ("train.max_steps", "not of the form key.sub=value"),
    ("=3", "not of the form key.sub=value"),
])
def test_malformed_overrides(tiny_recipe, override, expected):
    msg = error_of(tiny_recipe(), [override])
    assert msg.startswith("command line:") and expected in msg


def test_tuple_fields_are_coerced(tiny_recipe):
    cfg = load_recipe(tiny_recipe({"optim": {"betas": [1, 0]}})).cfg
    assert cfg.optim.betas == (1.0, 0.0)
    assert all(isinstance(b, float) for b in cfg.optim.betas)
    cfg = load_recipe(tiny_recipe(), ["optim.betas=[0.8, 0.95]"]).cfg
    assert cfg.optim.betas == (0.8, 0.95) and isinstance(cfg.optim.betas, tuple)


# --- shipped recipes and saved configs ---------------------------------------------------------


@pytest.mark.parametrize("name", sorted(C.list_recipes()))
def test_every_shipped_recipe_validates_and_builds(name):
    recipe = load_recipe(name)
    assert recipe.cfg.paper, f"{name}: recipes cite the paper they reproduce"
    assert isinstance(recipe.cfg.data, recipe.plugin.data_config)
    # every component option is accepted by its factory (meta from the modality's synthetic data)
    _, _, meta = recipe.plugin.synthetic(seed=0)
    objective = build_objective(recipe, meta)
    assert sum(p.numel() for p in objective.parameters()) > 0
    build_masker(recipe, meta, objective.online.layout)
    build_augmentations(recipe, meta)
    # and the recipe survives a round trip through its resolved dict
    again = recipe_from_dict(C.to_dict(recipe.cfg), "round trip")
    assert again.cfg == recipe.cfg


def test_saved_config_revalidates_to_the_same_config(tiny_recipe, tmp_path):
    path = tiny_recipe({"optim": {"betas": [0.8, 0.9]}, "masker": {"context_ratio": [0.2, 0.4]}},
                       synthetic=False)
    overrides = ["train.seed=5", "data.test_fraction=0.25"]
    run = pretrain(path, overrides, tmp_path / "run")
    text = (run / "config.yaml").read_text()
    assert text.startswith(f"# resolved from {path} (with command-line overrides)")
    saved = read_run_config(run)
    assert "base" not in saved
    again = recipe_from_dict(saved, str(run / "config.yaml")).cfg
    expected = load_recipe(path, overrides).cfg
    assert again == expected
    assert again.optim.betas == (0.8, 0.9) and again.train.seed == 5
    assert isinstance(again.data, TabularDataConfig) and again.data.test_fraction == 0.25
    # every schema field is written out, so defaults changed later do not change an old run
    assert set(saved["train"]) == {f.name for f in dataclasses.fields(C.TrainConfig)}


# --- a bad recipe leaves nothing behind --------------------------------------------------------


def _write(tmp_path: Path, tiny_recipe, case: str) -> tuple[str | Path, list[str]]:
    """(recipe, overrides) of a bad-config case."""
    if case == "unknown top-level key":
        return tiny_recipe({"optimizer": {"lr": 1}}), []
    if case == "unknown nested key":
        return tiny_recipe(), ["train.max_stepz=5"]
    if case == "wrong type":
        return tiny_recipe(), ["train.batch_size=abc"]
    if case == "unknown component option":
        return tiny_recipe(), ["model.encoder.dept=2"]
    if case == "unknown tokenizer":
        return tiny_recipe(), ["model.tokenizer.name=tabular.featur"]
    if case == "missing required key":
        path = tiny_recipe()
        raw = yaml.safe_load(path.read_text())
        del raw["objective"]
        path.write_text(yaml.safe_dump(raw))
        return path, []
    if case == "unknown recipe name":
        return "t_jepa_dmo", []
    if case == "invalid yaml":
        path = tmp_path / "bad.yaml"
        path.write_text("train: {max_steps: [\n")
        return path, []
    if case == "base cycle":
        (tmp_path / "a.yaml").write_text("base: b.yaml\n")
        (tmp_path / "b.yaml").write_text("base: a.yaml\n")
        return tmp_path / "a.yaml", []
    if case == "missing data file":
        return tiny_recipe(synthetic=False), [f"data.path={tmp_path / 'missing.csv'}"]
    if case == "fp16 on cpu":
        return tiny_recipe(), ["train.precision=fp16", "train.device=cpu"]
    raise AssertionError(case)


BAD_CASES = {
    "unknown top-level key": "unknown key 'optimizer'",
    "unknown nested key": "unknown key 'train.max_stepz'",
    "wrong type": "train.batch_size: expected int",
    "unknown component option": "unknown key 'model.encoder.dept'",
    "unknown tokenizer": "did you mean 'tabular.feature'",
    "missing required key": "missing required key 'objective'",
    "unknown recipe name": "unknown recipe 't_jepa_dmo'",
    "invalid yaml": "not valid YAML",
    "base cycle": "cycle",
    "missing data file": "missing.csv",
    "fp16 on cpu": "fp16 needs a CUDA device",
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_config_leaves_no_run_directory(tmp_path, tiny_recipe, case):
    recipe, overrides = _write(tmp_path, tiny_recipe, case)
    out = tmp_path / "runs" / "run"
    with pytest.raises(PolyjepaError, match=re.escape(BAD_CASES[case])):
        pretrain(recipe, overrides, out)
    assert not out.exists()
    assert not out.parent.exists()


def _value_case(name: str) -> pytest.param:
    return pytest.param(name)


@pytest.mark.parametrize("override", [
    _value_case("train.log_every=0"),  # ZeroDivisionError at step 1
    _value_case("train.checkpoint_every=0"),  # ZeroDivisionError at step 1
    _value_case("train.batch_size=0"),  # ZeroDivisionError in the sampler
    _value_case("train.accumulate=0"),  # trains: steps with no micro-batch, loss 0
    _value_case("ema.schedule=bogus"),  # ValueError at step 1
    _value_case("train.device=bogus"),  # RuntimeError from torch.device
    _value_case("masker=null"),  # ValueError from JEPA.forward at step 1
    "train.precision=fp17",
    "objective.loss=l3",
])
def test_impossible_values_are_config_errors(tmp_path, tiny_recipe, override):
    out = tmp_path / "run"
    with pytest.raises(ConfigError):
        pretrain(tiny_recipe(), [override], out)
    assert not out.exists()


def test_advice_keys_are_checked_against_the_recipe_schema():
    """The suite-wide check in conftest: an error advising a key no recipe accepts fails it."""
    message = ("data.csv: batch of 64 > 50 rows; lower finetune.batch_size, set "
               "model.encoder.dim or data.label_regex, not train.batch_sze")
    assert advised_keys(message) == ["finetune.batch_size", "model.encoder.dim"]
    assert advised_keys("lower train.batch_sze (see eval.seed)") == ["train.batch_sze"]
    assert unknown_advice([("train.batch_sze", "m"), ("data.label_regex", "m"),
                           ("data.moving_mnist.train_clips", "m"), ("finetune.lr", "m")]) == \
        [("train.batch_sze", "m")]


def test_component_options_are_typed_like_the_recipe_sections():
    """YAML reads `1e-3` (no dot) as a string: component options are coerced by the factory's
    type hints, so `objective.beta=1e-3` and `vcreg std_weight: 1e-2` are floats; a wrong type is
    a ConfigError naming the key, the component, the expected type and the file."""
    recipe = build_raw(tiny_raw(objective={"name": "jepa", "beta": "1e-3"},
                               regularizers=[{"name": "vcreg", "std_weight": "1e-2",
                                              "cov_weight": 1}]))
    objective = build_objective(recipe, load_datasets(recipe)[2])
    assert objective.loss_fn.keywords["beta"] == 1e-3
    (vcreg,) = objective.regularizers
    assert vcreg.std_weight == 0.01 and isinstance(vcreg.cov_weight, float)
    bad = build_raw(tiny_raw(regularizers=[{"name": "vcreg", "std_weight": "lots"}]))
    with pytest.raises(ConfigError, match=r"test: regularizers\[0\].std_weight: expected float, "
                                          r"got 'lots' \(an option of regularizer 'vcreg'\)"):
        build_objective(bad, load_datasets(bad)[2])


def test_a_component_that_rejects_its_options_is_named_with_the_line_that_raised():
    bad = build_raw(tiny_raw(regularizers=[{"name": "vcreg", "std_weight": -1.0}]))
    with pytest.raises(ConfigError) as info:
        build_objective(bad, load_datasets(bad)[2])
    message = str(info.value)
    assert "regularizers[0]: regularizer 'vcreg' (polyjepa) rejected its options: ValueError at " \
        in message
    assert re.search(r"regularizers\.py:\d+: vcreg: std_weight and cov_weight must be >= 0",
                     message), message
