"""Experiment trackers beside `metrics.jsonl`: TensorBoard, Weights & Biases, MLflow
(`train.loggers`, each an optional extra).

Every tracker gets the resolved recipe as parameters, every metric row the trainer writes, and
the run's report as an artefact (`attach_report`, after `polyjepa pretrain` or `eval` wrote it).
A tracker run's id is kept in `run.json` (`trackers`), so a resumed run and its report continue
the same tracker run. Where they write: W&B as its settings say (`WANDB_MODE=offline` keeps it in
the run directory's `wandb/`), MLflow to `MLFLOW_TRACKING_URI`, else MLflow's local file store
in the run directory (`mlruns/`, artefacts in `mlartifacts/`; `mlflow ui --backend-store-uri
RUN/mlruns` shows it).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Protocol

from polyjepa.errors import ConfigError
from polyjepa.extras import require

LOGGERS = ("tensorboard", "wandb", "mlflow")
PROJECT = "polyjepa"  # the W&B project and MLflow experiment, unless WANDB_PROJECT / MLFLOW_EXPERIMENT_NAME
log = logging.getLogger(__name__)


class Tracker(Protocol):
    """What the trainer logs to."""

    name: str
    run_id: str | None  # kept in run.json to continue the same tracker run

    def log(self, row: dict[str, float], step: int) -> None: ...

    def close(self) -> None: ...


def check_loggers(names: list[str], source: str) -> None:
    """Raises ConfigError naming an unknown `train.loggers` entry."""
    for name in names:
        if name not in LOGGERS:
            raise ConfigError(f"{source}: train.loggers: '{name}' is not one of "
                              f"{', '.join(LOGGERS)}")


def _flat(config: dict, prefix: str = "") -> dict[str, str]:
    """A nested config as `{"train.batch_size": "64", ...}`."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = json.dumps(value) if not isinstance(value, str) else value
    return out


class TensorBoard:
    name = "tensorboard"
    run_id: str | None = None  # nothing to continue: the event files are in the run directory

    def __init__(self, run_dir: Path, config: dict) -> None:
        require("tensorboard", "tensorboard", "train.loggers=[tensorboard]")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, row: dict[str, float], step: int) -> None:
        for key, value in row.items():
            self.writer.add_scalar(key, value, step)

    def close(self) -> None:
        self.writer.close()


class WandB:
    name = "wandb"
    run_id: str | None

    def __init__(self, run_dir: Path, config: dict, run_id: str | None = None) -> None:
        wandb = require("wandb", "wandb", "train.loggers=[wandb]")
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", PROJECT),
                              name=run_dir.name, dir=str(run_dir), config=config, id=run_id,
                              resume="allow", reinit="create_new")
        self.run_id = self.run.id

    def log(self, row: dict[str, float], step: int) -> None:
        self.run.log(row, step=step)

    def attach(self, path: Path) -> None:
        self.run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self) -> None:
        self.run.finish()


class MLflow:
    name = "mlflow"
    run_id: str | None

    def __init__(self, run_dir: Path, config: dict, run_id: str | None = None) -> None:
        tracking = require("mlflow.tracking", "mlflow", "train.loggers=[mlflow]")
        local = "MLFLOW_TRACKING_URI" not in os.environ
        uri = os.environ.get("MLFLOW_TRACKING_URI") or local_store(run_dir)
        self.client = tracking.MlflowClient(tracking_uri=uri)
        if run_id is None:
            name = os.environ.get("MLFLOW_EXPERIMENT_NAME", PROJECT)
            found = self.client.get_experiment_by_name(name)
            experiment = found.experiment_id if found else self.client.create_experiment(
                name, artifact_location=(run_dir / "mlartifacts").resolve().as_uri()
                if local else None)
            run_id = self.client.create_run(experiment, run_name=run_dir.name).info.run_id
            self._params(config, run_id)
        else:
            self.client.update_run(run_id, status="RUNNING")
        self.run_id = self.mlflow_id = run_id

    def _params(self, config: dict, run_id: str) -> None:
        from mlflow.entities import Param

        params = [Param(k[:250], v[:6000]) for k, v in _flat(config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 per batch
            self.client.log_batch(run_id, params=params[i:i + 100])

    def log(self, row: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self.client.log_batch(self.mlflow_id, metrics=[Metric(k, float(v), stamp, step)
                                                    for k, v in row.items()])

    def attach(self, path: Path) -> None:
        self.client.log_artifact(self.mlflow_id, str(path))

    def close(self) -> None:
        self.client.set_terminated(self.mlflow_id)


def local_store(run_dir: Path) -> str:
    """The MLflow store of a run without `MLFLOW_TRACKING_URI`: MLflow's file store in its
    `mlruns/` (MLflow 3 asks for `MLFLOW_ALLOW_FILE_STORE=true` to keep using one; set here)."""
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return (run_dir / "mlruns").resolve().as_uri()


def open_trackers(names: list[str], run_dir: Path, config: dict) -> list[Tracker]:
    """The trackers `names` for a run (continuing the tracker runs `run.json` recorded)."""
    ids = _ids(run_dir)
    opened: list[Tracker] = []
    for name in dict.fromkeys(names):
        if name == "tensorboard":
            opened.append(TensorBoard(run_dir, config))
        elif name == "wandb":
            opened.append(WandB(run_dir, config, ids.get("wandb")))
        elif name == "mlflow":
            opened.append(MLflow(run_dir, config, ids.get("mlflow")))
    return opened


def _ids(run_dir: Path) -> dict[str, str]:
    from polyjepa.paths import read_json_dict  # paths imports config, which imports this module

    return dict(read_json_dict(run_dir / "run.json").get("trackers", {}))


def tracker_ids(trackers: list[Tracker]) -> dict[str, str]:
    """`{name: run id}` for `run.json`."""
    return {t.name: t.run_id for t in trackers if t.run_id is not None}


def attach_report(run_dir: Path, report: Path) -> None:
    """Log `report` as an artefact of each tracker run the run recorded in `run.json`."""
    config_path = run_dir / "config.yaml"
    for name, run_id in _ids(run_dir).items():
        try:
            tracker: Any = (WandB if name == "wandb" else MLflow)(run_dir, {}, run_id) \
                if name in ("wandb", "mlflow") else None
            if tracker is None:
                continue
            tracker.attach(report)
            if config_path.is_file():
                tracker.attach(config_path)
            tracker.close()
        except Exception as exc:  # noqa: BLE001 (a tracker's outage must not fail the run)
            log.warning("%s: could not attach %s (%s: %s)", name, report.name,
                        type(exc).__name__, exc)
