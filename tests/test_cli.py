"""The `polyjepa` command line: `python -m polyjepa ...` in subprocesses for what only a real process
shows (exit status, what lands on stdout and stderr, no traceback), `polyjepa.cli.main` in-process
for the other paths (each subprocess pays several seconds of imports)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers import tiny_recipe, write_recipe

from polyjepa.build import load_datasets, load_recipe
from polyjepa.cli import main
from polyjepa.config import list_recipes, read_recipe
from polyjepa.errors import DataError
from polyjepa.modalities.tabular.readers import synthetic_frame
from polyjepa.paths import DATA_ROOT_ENV
from polyjepa.train import pretrain

N_BREAST_CANCER = 569
PROBES = {"pretrained", "random_init", "raw_features"}


def _command(args: tuple) -> list[str]:
    return [sys.executable, "-m", "polyjepa", *map(str, args)]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != DATA_ROOT_ENV}


def polyjepa(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m polyjepa ARGS` and wait for it."""
    return subprocess.run(_command(args), capture_output=True, text=True, cwd=cwd, env=_env(),
                          timeout=600)


class Background:
    """Independent `python -m polyjepa` processes started together (each pays seconds of imports)."""

    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, key: str, *args: object, cwd: Path) -> None:
        self.procs[key] = subprocess.Popen(_command(args), stdout=subprocess.PIPE,
                                           stderr=subprocess.PIPE, text=True, cwd=cwd, env=_env())

    def result(self, key: str) -> subprocess.CompletedProcess:
        proc = self.procs[key]
        out, err = proc.communicate(timeout=600)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def one_line_error(stderr: str, command: str) -> str:
    """The single `polyjepa COMMAND: error: ...` line of stderr (asserting there is nothing else)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"polyjepa {command}: error: "), stderr
    assert "Traceback" not in stderr
    return lines[0]


@pytest.fixture(scope="module")
def cli(tmp_path_factory, recipe_writer):
    """`polyjepa recipes`, `pretrain` with a bad override and `pretrain` of a tiny recipe on
    scikit-learn's breast-cancer table (5 steps), started at once."""
    root = tmp_path_factory.mktemp("cli")
    recipe = recipe_writer(root, {"train": {"max_steps": 5}}, synthetic=False)
    bg = Background()
    bg.start("pretrain", "pretrain", recipe, "--out", root / "run", cwd=root)
    bg.start("recipes", "recipes", cwd=root)
    bg.start("bad", "pretrain", recipe, "train.max_stepz=5", "--out", root / "bad_run", cwd=root)
    bg.root, bg.recipe, bg.run = root, recipe, root / "run"  # type: ignore[attr-defined]
    yield bg
    bg.stop()


@pytest.fixture(scope="module")
def trained(cli):
    """(recipe, run dir) of the tiny pretraining run, once it has finished successfully."""
    proc = cli.result("pretrain")
    assert proc.returncode == 0, proc.stderr
    return cli.recipe, cli.run, proc


# --- subprocess ------------------------------------------------------------------------------


def test_recipes_lists_shipped_recipes(cli):
    proc = cli.result("recipes")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["name", "modality", "scale", "data", "steps", "paper"]
    assert "polyjepa recipes NAME" in lines[-1]
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert list(rows) == list(list_recipes())
    for name, line in rows.items():  # each row shows the recipe's own modality, scale, length
        raw = read_recipe(list_recipes()[name])
        _, modality, scale, *_ = line.split()
        assert modality == raw["modality"] and line.endswith(raw["paper"])
        assert scale == ("demo" if "demo" in name else raw.get("scale", "paper")), name
        steps = f"{raw['train']['max_steps']}x{raw['train']['batch_size']}"
        assert steps in line.split(), (name, line)
    assert "builtin:adult-train" in rows["t_jepa_demo"] and "3000x256" in rows["t_jepa_demo"]


def test_recipes_name_shows_its_header_and_every_key(capsys, tmp_path, tiny_recipe):
    assert main(["recipes", "t_jepa_demo", "train.max_steps=7"]) == 0
    out = capsys.readouterr().out
    assert "# T-JEPA demo: t_jepa.yaml" in out and "polyjepa recipes t_jepa" in out
    lines = {line.split(" = ")[0].strip(" *"): line for line in out.splitlines() if " = " in line}
    assert lines["train.max_steps"].lstrip().startswith("* train.max_steps = 7  (int, default")
    assert lines["data.val_fraction"].lstrip().startswith("* data.val_fraction = 0.1  (float")
    assert lines["finetune.batch_size"].lstrip().startswith("finetune.batch_size = ")  # default
    assert "'name': 'transformer'" in lines["model.encoder"] and "'depth': 4" in lines["model.encoder"]
    for section in ("data.", "model.", "train.", "eval.", "finetune.", "optim.", "ema."):
        assert any(k.startswith(section) for k in lines), section
    assert main(["recipes", "t_jepa_demo", "train.max_stepz=7"]) == 2
    assert "unknown key 'train.max_stepz'" in one_line_error(capsys.readouterr().err, "recipes")
    # --time trains a few steps here and extrapolates
    recipe = tiny_recipe({"train": {"max_steps": 500}})
    assert main(["recipes", str(recipe), "--time"]) == 0
    timed = capsys.readouterr().out.splitlines()[-1]
    assert timed.startswith("timed here: ") and "500 steps take about" in timed


def test_pretrain_bad_override_is_a_one_line_error(cli):
    proc = cli.result("bad")
    assert proc.returncode == 2
    line = one_line_error(proc.stderr, "pretrain")
    assert "unknown key 'train.max_stepz'" in line and "max_steps" in line
    assert str(cli.recipe) in line
    assert proc.stdout == ""
    assert not (cli.root / "bad_run").exists()


def test_pretrain_writes_a_run(trained):
    _, run, proc = trained
    assert f"trained encoder: {run / 'encoder.pt'}" in proc.stdout
    assert f"polyjepa eval {run}" in proc.stdout
    for name in ("config.yaml", "metrics.jsonl", "encoder.pt", "checkpoints/last.pt"):
        assert (run / name).is_file(), name
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5]
    assert "Traceback" not in proc.stderr


def test_eval_json_prints_one_object_with_three_probes(trained):
    _, run, _ = trained
    result = polyjepa("eval", run, "--json", "--device", "cpu", cwd=run.parent)
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.strip().splitlines()) == 1
    data = json.loads(result.stdout)
    assert set(data) == {"linear_probe", "knn", "random_init_each", "n_train", "n_test"}
    for probe in ("linear_probe", "knn"):
        assert set(data[probe]) == PROBES
        for name, acc in data[probe].items():
            assert isinstance(acc, float) and 0.0 <= acc <= 1.0, (probe, name, acc)
    assert (data["n_train"], data["n_test"]) == (455, 114)  # 80/20 split of 569 rows
    # labels line up with features: raw features separate this table almost perfectly
    assert data["linear_probe"]["raw_features"] > 0.9
    # the result is saved in the run directory: the JSON (with the command) and the table
    saved = json.loads((run / "eval.json").read_text())
    assert saved.pop("command") == ["polyjepa", "eval", str(run)]
    assert saved == data
    table = (run / "eval.txt").read_text()
    lin = 100 * (data["linear_probe"]["pretrained"] - data["linear_probe"]["random_init"])
    assert f"pretrained vs random init: linear_probe {lin:+.1f}" in table


def test_embed_writes_one_row_per_example(trained, tmp_path, capsys):
    _, run, _ = trained
    out = tmp_path / "emb" / "x.npy"
    code = main(["embed", str(run), "sklearn:breast_cancer", "--out", str(out), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    x = np.load(out)
    assert x.shape == (N_BREAST_CANCER, 16)
    assert np.isfinite(x).all()
    printed = capsys.readouterr().out
    assert f"wrote {N_BREAST_CANCER} embeddings of width 16" in printed and "x.csv" in printed
    # the sidecar: one row per embedding, its id and its label (name and index)
    rows = (out.parent / "x.csv").read_text().splitlines()
    assert rows[0] == "row,id,label,class" and len(rows) == N_BREAST_CANCER + 1
    labels = np.array([int(r.split(",")[2]) for r in rows[1:]])
    assert sorted(np.bincount(labels).tolist()) == [212, 357]  # malignant, benign
    assert not list(out.parent.glob("*.tmp*")) and not list(out.parent.glob(".*"))


def test_embed_to_npz_holds_ids_labels_and_classes(trained, tmp_path, capsys):
    _, run, _ = trained
    out = tmp_path / "x.npz"
    assert main(["embed", str(run), "sklearn:breast_cancer", "--out", str(out),
                 "--device", "cpu"]) == 0, capsys.readouterr().err
    saved = np.load(out)
    assert saved["x"].shape == (N_BREAST_CANCER, 16) and saved["labels"].shape == (N_BREAST_CANCER,)
    assert saved["ids"].tolist() == [str(i) for i in range(N_BREAST_CANCER)]  # rows: positions
    assert len(saved["classes"]) == 2
    assert main(["embed", str(run), "sklearn:breast_cancer", "--out", str(tmp_path / "x.txt"),
                 "--device", "cpu"]) == 2
    assert ".npy" in one_line_error(capsys.readouterr().err, "embed")
    assert not (tmp_path / "x.txt").exists()


# --- in-process: error paths -----------------------------------------------------------------


def test_out_that_is_a_file_is_a_one_line_error(trained, tmp_path, capsys):
    recipe, run, _ = trained
    (tmp_path / "taken").write_text("not a folder")
    for out in (tmp_path / "taken", tmp_path / "taken" / "run"):
        assert main(["pretrain", str(recipe), "--out", str(out)]) == 2
        err = one_line_error(capsys.readouterr().err, "pretrain")
        assert f"{tmp_path / 'taken'} is a file, not a folder" in err and "--out" in err
        assert main(["import", str(run / "encoder.pt"), "--out", str(out)]) == 2
        assert "is a file, not a folder" in one_line_error(capsys.readouterr().err, "import")
    assert (tmp_path / "taken").read_text() == "not a folder"


def test_tokens_of_another_width_than_the_encoder_are_a_one_line_error(trained, tmp_path, capsys):
    recipe, _, _ = trained
    assert main(["pretrain", str(recipe), "model.encoder.dim=32", "--out",
                 str(tmp_path / "run")]) == 2
    err = one_line_error(capsys.readouterr().err, "pretrain")
    assert "tokens of width 16" in err and "32 wide" in err and "model.encoder.dim" in err
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_a_run_finds_its_data_from_any_folder(tmp_path, tiny_recipe, monkeypatch, capsys):
    """Relative data paths (to the working directory, or under $POLYJEPA_DATA_ROOT) are stored
    absolute: `eval` and `embed` work from elsewhere and without the variable."""
    data = tmp_path / "data" / "tables"
    data.mkdir(parents=True)
    synthetic_frame(300, seed=1).to_csv(data / "rows.csv", index=False)
    synthetic_frame(100, seed=2).to_csv(data / "more.csv", index=False)
    tiny_recipe({"data": {"path": "tables/rows.csv", "test_path": None, "target": "label"}},
                synthetic=False, name="recipe.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_ROOT_ENV, "data")  # relative, and gone after training
    assert main(["pretrain", "recipe.yaml", "data.test_path=data/tables/more.csv",
                 "--out", "run"]) == 0, capsys.readouterr().err
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "given as: data_root=$POLYJEPA_DATA_ROOT data.test_path=data/tables/more.csv" in saved
    config = read_recipe(tmp_path / "run" / "config.yaml")
    assert config["data_root"] == str(tmp_path / "data")
    assert config["data"]["test_path"] == str(data / "more.csv")
    assert config["data"]["path"] == "tables/rows.csv"  # under the (now absolute) root
    capsys.readouterr()
    monkeypatch.delenv(DATA_ROOT_ENV)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["eval", str(tmp_path / "run"), "eval.init_seeds=1", "--json", "--device",
                 "cpu"]) == 0, capsys.readouterr().err
    assert json.loads(capsys.readouterr().out)["n_test"] == 100
    # a restart (auto-resume) with the data spelled another way, or found elsewhere, is the same
    # run: where the data lives is not what is trained
    (tmp_path / "run" / "encoder.pt").unlink()  # as if stopped before the end
    assert main(["pretrain", str(tmp_path / "recipe.yaml"), f"data.path={data / 'rows.csv'}",
                 f"data.test_path={data / 'more.csv'}", "--out", str(tmp_path / "run")]) == 0, \
        capsys.readouterr().err
    assert (tmp_path / "run" / "encoder.pt").is_file()


def test_a_demo_on_your_own_csv_forgets_the_demos_data_settings(tmp_path, capsys):
    """`t_jepa_demo data.path=my.csv`: Adult's test file and columns are not applied to it."""
    frame = synthetic_frame(120, seed=4)
    frame.to_csv(tmp_path / "mine.csv", index=False)
    with pytest.warns(UserWarning, match=r"set back to neutral values: data.test_path=None"):
        code = main(["pretrain", "t_jepa_demo", f"data.path={tmp_path / 'mine.csv'}",
                     "data.target=label", "train.max_steps=2", "train.progress=false",
                     "train.probe_every=null", "train.keep_checkpoints=[]",
                     "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    config = read_recipe(tmp_path / "run" / "config.yaml")
    assert config["data"]["test_path"] is None and config["data"]["target"] == "label"
    # a user's own recipe is taken as written: its target stays with another data.path
    frame.rename(columns={"label": "churn"}).to_csv(tmp_path / "other.csv", index=False)
    own = tmp_path / "own.yaml"
    own.write_text("base: t_jepa_demo\ndata: {target: churn, test_path: null}\n")
    recipe = load_recipe(str(own), [f"data.path={tmp_path / 'other.csv'}"])
    assert recipe.cfg.data.target == "churn"


def test_a_video_demo_on_your_own_clips_reads_them(tmp_path, capsys):
    """`vj_vcr_demo data.path=clips.csv` reads the user's clips instead of generating Moving
    MNIST (which would fail: no MNIST files)."""
    rng = np.random.default_rng(0)
    rows = ["path,label"]
    for k in range(12):
        np.save(tmp_path / f"c{k}.npy", (rng.random((16, 32, 32)) * 255).astype(np.uint8))
        rows.append(f"c{k}.npy,{'ab'[k % 2]}")
    (tmp_path / "clips.csv").write_text("\n".join(rows) + "\n")
    with pytest.warns(UserWarning, match="data.moving_mnist"):
        code = main(["pretrain", "vj_vcr_demo", f"data.path={tmp_path / 'clips.csv'}",
                     "data.val_fraction=0", "train.probe_every=null", "train.max_steps=1",
                     "train.keep_checkpoints=[]", "train.progress=false",
                     "--out", str(tmp_path / "run")])
    assert code == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "encoder.pt").is_file()


def test_traceback_flag_and_debug_variable_print_the_chained_traceback(trained, tmp_path,
                                                                       monkeypatch, capsys):
    recipe, _, _ = trained
    bad = ["pretrain", str(recipe), "train.max_stepz=1", "--out", str(tmp_path / "r")]
    assert main(["--traceback", *bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "ConfigError" in err and "from_dict" in err
    assert err.splitlines()[-1].startswith("polyjepa pretrain: error: ")
    monkeypatch.setenv("POLYJEPA_DEBUG", "1")
    assert main(bad) == 2
    assert capsys.readouterr().err.startswith("Traceback")
    monkeypatch.setenv("POLYJEPA_DEBUG", "0")
    assert main(bad) == 2
    one_line_error(capsys.readouterr().err, "pretrain")


def test_pretrain_into_a_run_of_another_recipe_errors(trained, capsys):
    recipe, run, _ = trained
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    assert main(["pretrain", str(recipe), "train.seed=5", "--out", str(run)]) == 2
    err = one_line_error(capsys.readouterr().err, "pretrain")
    assert "already holds a run of a different recipe" in err and "train.seed" in err
    assert "--resume" in err
    assert main(["pretrain", str(recipe), "train.auto_resume=false", "--out", str(run)]) == 2
    assert "already holds a run" in one_line_error(capsys.readouterr().err, "pretrain")
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before  # untouched


def test_pretrain_of_the_same_recipe_auto_resumes_a_finished_run(trained, capsys):
    recipe, run, _ = trained
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*.pt")}
    assert main(["pretrain", str(recipe), "--out", str(run)]) == 0
    assert "trained encoder" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*.pt")} == before  # nothing retrained


def test_resume_without_checkpoint_errors(tmp_path, tiny_recipe, capsys):
    out = tmp_path / "empty"
    out.mkdir()
    assert main(["pretrain", str(tiny_recipe()), "--out", str(out), "--resume"]) == 2
    err = one_line_error(capsys.readouterr().err, "pretrain")
    assert "no checkpoint at" in err and str(out / "checkpoints" / "last.pt") in err
    assert list(out.iterdir()) == []


def test_missing_data_file_error_names_the_file(tmp_path, tiny_recipe, capsys):
    missing = tmp_path / "nowhere" / "table.csv"
    out = tmp_path / "run"
    code = main(["pretrain", str(tiny_recipe(synthetic=False)), f"data.path={missing}",
                 "--out", str(out)])
    assert code == 2
    err = one_line_error(capsys.readouterr().err, "pretrain")
    assert str(missing) in err and "data.path" in err
    assert not out.exists()


def test_relative_data_path_without_data_root_mentions_the_variable(
        tmp_path, tiny_recipe, capsys, monkeypatch):
    monkeypatch.delenv(DATA_ROOT_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    code = main(["pretrain", str(tiny_recipe(synthetic=False)),
                 "data.path=tabular/adult/adult-train.csv", "--out", "run"])
    assert code == 2
    err = one_line_error(capsys.readouterr().err, "pretrain")
    assert DATA_ROOT_ENV in err and "tabular/adult/adult-train.csv" in err
    assert "data_root" in err
    assert not (tmp_path / "run").exists()


def test_data_root_from_the_environment(shared_data, tiny_recipe, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_ROOT_ENV, str(shared_data))
    recipe = load_recipe(tiny_recipe(synthetic=False), [
        "data.path=tabular/adult/adult-train.csv", "data.test_path=tabular/adult/adult-test.csv"])
    train, test, meta = load_datasets(recipe)
    assert (len(train), len(test)) == (32561, 16281)
    assert meta["num_numeric"] + len(meta["cardinalities"]) == 14
    # a missing file under the root names the root it searched
    recipe = load_recipe(tiny_recipe(synthetic=False), ["data.path=tabular/adult/nope.csv"])
    with pytest.raises(DataError, match="data root") as info:
        load_datasets(recipe)
    assert str(shared_data / "tabular" / "adult" / "nope.csv") in str(info.value)


def test_recipe_data_root_wins_over_the_environment(shared_data, tiny_recipe, monkeypatch,
                                                    tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_ROOT_ENV, str(tmp_path / "elsewhere"))
    recipe = load_recipe(tiny_recipe(synthetic=False), [
        f"data_root={shared_data / 'tabular'}", "data.path=adult/adult-test.csv"])
    train, test, _ = load_datasets(recipe)
    assert len(train) + len(test) == 16281


def test_eval_of_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "no_run")]) == 2
    err = one_line_error(capsys.readouterr().err, "eval")
    assert str(tmp_path / "no_run") in err


def test_embed_of_a_synthetic_run_reads_the_given_data(tmp_path, tiny_recipe, capsys):
    run = pretrain(tiny_recipe(), [], tmp_path / "run")
    table = tmp_path / "rows.csv"
    synthetic_frame(200, seed=7).to_csv(table, index=False)  # same columns as the training table
    out = tmp_path / "x.npy"
    main(["embed", str(run), str(table), "--out", str(out), "--device", "cpu"])
    assert np.load(out).shape[0] == 200  # not the 1600-row synthetic training split


def test_a_finished_run_asked_again_rewrites_nothing_and_refuses_other_data(tmp_path, capsys):
    """The same command on a finished run trains nothing and touches no file (its report
    included); the same `--out` with other data is refused, naming both, so that the run's
    config and report never name data its encoder did not see."""
    for name, seed in (("a.csv", 1), ("b.csv", 2)):
        synthetic_frame(120, seed=seed).to_csv(tmp_path / name, index=False)
    raw = tiny_recipe(train={"max_steps": 2}, synthetic=False,
                      data={"path": str(tmp_path / "a.csv"), "test_path": None,
                            "target": "label"})
    recipe, run = write_recipe(raw, tmp_path), tmp_path / "run"
    assert main(["pretrain", str(recipe), "--out", str(run)]) == 0
    capsys.readouterr()
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    assert main(["pretrain", str(recipe), "--out", str(run)]) == 0
    assert "trained encoder" in capsys.readouterr().out
    assert main(["pretrain", str(recipe), f"data.path={tmp_path / 'b.csv'}", "--out",
                 str(run)]) == 2
    err = one_line_error(capsys.readouterr().err, "pretrain")
    assert f"already holds a finished run trained on data.path={tmp_path / 'a.csv'}" in err
    assert str(tmp_path / "b.csv") in err and f"polyjepa eval {run} --data" in err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before  # nothing rewritten
    assert str(tmp_path / "a.csv") in (run / "config.yaml").read_text()


def test_the_first_lines_say_data_classes_length_device_and_folder(tmp_path, capsys):
    synthetic_frame(120, seed=1).to_csv(tmp_path / "a.csv", index=False)
    raw = tiny_recipe(train={"max_steps": 2}, synthetic=False,
                      data={"path": str(tmp_path / "a.csv"), "test_path": None,
                            "target": "label"})
    run = tmp_path / "run"
    assert main(["pretrain", str(write_recipe(raw, tmp_path)), "--out", str(run)]) == 0
    err = capsys.readouterr().err
    counts = synthetic_frame(120, seed=1)["label"].value_counts()
    line = next(x for x in err.splitlines() if x.startswith("polyjepa: data: "))
    assert line.startswith("polyjepa: data: 96 training samples, 0 validation, 24 test; 3 classes (")
    assert sum(int(c) for c in re.findall(r": (\d+)", line.split("classes")[1])) == 96
    assert set(re.findall(r"(class_\d): ", line)) == set(counts.index)
    assert f"polyjepa: device: cpu, precision fp32, 1 process; writing {run}" in err
