"""`train.loggers`: the real W&B (offline) and MLflow (local file store) clients receive the
resolved recipe as parameters, every metric row of `metrics.jsonl`, and the report; a resumed
run continues the same tracker runs."""

from __future__ import annotations

import json

import pytest
from _helpers import single_thread, tiny_recipe, write_recipe  # noqa: F401  (autouse fixture)

from polyjepa.cli import main
from polyjepa.trackers import local_store

RECIPE = tiny_recipe(train={"max_steps": 4, "log_every": 1})


def _rows(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_mlflow_gets_parameters_every_metric_and_the_report(tmp_path, monkeypatch, capsys):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    recipe, run = write_recipe(RECIPE, tmp_path), tmp_path / "run"
    assert main(["pretrain", str(recipe), "train.loggers=[mlflow]", "--out", str(run)]) == 0
    run_id = json.loads((run / "run.json").read_text())["trackers"]["mlflow"]
    client = MlflowClient(tracking_uri=local_store(run))
    tracked = client.get_run(run_id)
    assert tracked.data.params["train.max_steps"] == "4"
    assert tracked.data.params["modality"] == "tabular" and tracked.info.status == "FINISHED"
    history = client.get_metric_history(run_id, "loss")
    rows = [r for r in _rows(run) if "loss" in r]
    assert [m.step for m in history] == [r["step"] for r in rows] == [1, 2, 3, 4]
    assert [m.value for m in history] == pytest.approx([r["loss"] for r in rows])
    assert "report.html" in {a.path for a in client.list_artifacts(run_id)}
    # a longer run resumed continues the same MLflow run
    assert main(["pretrain", str(recipe), "train.loggers=[mlflow]", "train.max_steps=6",
                 "--out", str(run), "--resume"]) == 0
    assert json.loads((run / "run.json").read_text())["trackers"]["mlflow"] == run_id
    assert [m.step for m in client.get_metric_history(run_id, "loss")] == [1, 2, 3, 4, 5, 6]


def _wandb_records(path) -> list:
    """The protobuf records of an offline W&B run file: a 7-byte header, then a LevelDB-style log
    (32 KiB blocks of chunks: crc32, length, type; full, first, middle, last)."""
    from wandb.proto import wandb_internal_pb2

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    records, pending, at = [], b"", 7
    while at + 7 <= len(data):
        if block - at % block < 7:  # a block's tail too short for a chunk header: padding
            at += block - at % block
            continue
        length, kind = int.from_bytes(data[at + 4:at + 6], "little"), data[at + 6]
        chunk, at = data[at + 7:at + 7 + length], at + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def test_wandb_offline_gets_the_config_every_metric_and_the_report(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    recipe, run = write_recipe(RECIPE, tmp_path), tmp_path / "run"
    assert main(["pretrain", str(recipe), "train.loggers=[wandb]", "--out", str(run)]) == 0
    run_id = json.loads((run / "run.json").read_text())["trackers"]["wandb"]
    # offline, each session of the run (training, then the report) is a folder of that run id
    folders = sorted((run / "wandb").glob(f"offline-run-*-{run_id}"))
    records = _wandb_records(next(folders[0].glob("*.wandb")))
    config = {item.key: json.loads(item.value_json) for r in records
              if r.WhichOneof("record_type") == "run" for item in r.run.config.update}
    assert config["train"]["max_steps"] == 4 and config["modality"] == "tabular"
    history = [{item.key or "/".join(item.nested_key): json.loads(item.value_json)
                for item in r.history.item}
               for r in records if r.WhichOneof("record_type") == "history"]
    logged = [(h["_step"], h["loss"]) for h in history if "loss" in h]
    rows = [(r["step"], r["loss"]) for r in _rows(run) if "loss" in r]
    assert [s for s, _ in logged] == [s for s, _ in rows] == [1, 2, 3, 4]
    assert [v for _, v in logged] == pytest.approx([v for _, v in rows])
    assert any((f / "files" / "report.html").exists() for f in folders)


def test_an_unknown_logger_is_one_line(tmp_path, capsys):
    recipe = write_recipe(RECIPE, tmp_path)
    assert main(["pretrain", str(recipe), "train.loggers=[neptune]", "--out",
                 str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "train.loggers: 'neptune' is not one of tensorboard, wandb, mlflow" in err
    assert not (tmp_path / "run").exists()
