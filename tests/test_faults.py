"""Fault injection: what a run survives and what it leaves behind.

Real processes for what only a real process shows (`kill -9`, SIGTERM/SIGINT, a crash between a
checkpoint's write and its rename); in-process monkeypatches for full disks, unwritable output
directories, NaN losses and restarted jobs. Every interrupted run is finished with a resume and
compared bit for bit with an uninterrupted one.

The subprocesses (each pays seconds of imports) are all started at once by the module fixture
`jobs`; a watcher thread per process sends its signal once the run has made progress.
"""

from __future__ import annotations

import errno
import io
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from _helpers import (  # noqa: F401  (single_thread: autouse fixture)
    Interrupt,
    interrupt_after_checkpoint,
    logged,
    single_thread,
)

from polyjepa import train as T
from polyjepa.checkpoint import load_file
from polyjepa.cli import main
from polyjepa.errors import ConfigError
from polyjepa.objectives import JEPA
from polyjepa.train import CHECKPOINT, Trainer, pretrain

FAULT_RUNNER = Path(__file__).resolve().parent / "fault_runner.py"
MAX_STEPS, EVERY = 40, 5
# SIGTERM to the whole process group at the start of step GROUP_STEP, with more micro-batches per
# step than the 2 workers x prefetch_factor 2 batches in flight, all in the first epoch (50
# batches): the step needs batches that only the signalled workers can make
GROUP_STEP = 3
GROUP = ["train.num_workers=2", "train.accumulate=8", "train.checkpoint_every=2",
         f"train.max_steps={GROUP_STEP + 3}"]
LONG = {"train": {"max_steps": MAX_STEPS, "checkpoint_every": EVERY},
        "model": {"encoder": {"dropout": 0.1}}}  # dropout: resume must restore the RNG too
# one intra-op thread in the subprocesses, as `single_thread` sets in this one: the thread count
# changes float reductions, and runs are compared bit for bit
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ---------------------------------------------------------------------------------- utilities


def metric_rows(run: Path) -> list[dict]:
    """The complete rows of `run/metrics.jsonl` (a row being written is left out)."""
    try:
        text = (run / "metrics.jsonl").read_text()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.split("\n")[:-1] if line.strip()]


def metric_steps(run: Path) -> list[int]:
    return [row["step"] for row in metric_rows(run)]


def encoder_state(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "encoder.pt")["state_dict"]


def assert_same_run(run: Path, reference: Path) -> None:
    """`run` finished exactly like the uninterrupted `reference`: the same encoder bit for bit,
    one metrics row per step with the same losses."""
    a, b = encoder_state(run), encoder_state(reference)
    assert set(a) == set(b)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"encoder differs from the uninterrupted run in {different}"
    rows, expected = metric_rows(run), metric_rows(reference)
    assert [r["step"] for r in rows] == [r["step"] for r in expected], "missing/duplicated steps"
    assert [r["loss"] for r in rows] == [r["loss"] for r in expected]


def count_steps(monkeypatch) -> list[int]:
    """Count the optimizer steps trained from now on (one entry per `Trainer._train_step`)."""
    steps: list[int] = []
    original = Trainer._train_step

    def train_step(self, batches):
        out = original(self, batches)
        steps.append(self.step)
        return out

    monkeypatch.setattr(Trainer, "_train_step", train_step)
    return steps


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (DataLoader workers), from /proc; empty where unavailable."""
    pids: list[int] = []
    for children in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            pids += [int(p) for p in children.read_text().split()]
        except OSError:
            pass
    return pids


def running(pid: int, marker: str) -> bool:
    """Whether `pid` is a live (not zombie) process whose command line contains `marker`."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and marker in cmdline


class Job:
    """`python ARGV` in its own session (so a signal can go to its whole process group, like
    Ctrl-C in a terminal), stdout/stderr to files. With `sig`, a watcher thread sends `sig` once
    `ready()` holds, to the process or (`group=True`) to its process group."""

    def __init__(self, name: str, argv: list[str], root: Path, run: Path, workers: int = 0,
                 ready: Callable[[], bool] | None = None, sig: int | None = None,
                 group: bool = False) -> None:
        self.name, self.run, self.workers = name, run, workers
        self.stdout, self.stderr = root / f"{name}.stdout", root / f"{name}.stderr"
        with self.stdout.open("w") as out, self.stderr.open("w") as err:
            self.proc = subprocess.Popen([sys.executable, *argv], stdout=out, stderr=err, cwd=root,
                                         env=ENV, start_new_session=True)
        self.ready, self.sig, self.group = ready, sig, group
        self.children: list[int] = []  # the process's children when it was signalled
        self.signalled = False
        self.watcher = threading.Thread(target=self._watch, daemon=True)
        if sig is not None:
            self.watcher.start()

    def _watch(self) -> None:
        assert self.ready is not None and self.sig is not None
        while self.proc.poll() is None:
            if self.ready():
                self.children = child_pids(self.proc.pid)
                try:
                    if self.group:
                        os.killpg(self.proc.pid, self.sig)
                    else:
                        self.proc.send_signal(self.sig)
                    self.signalled = True
                except ProcessLookupError:
                    pass
                return
            time.sleep(0.02)

    def result(self) -> tuple[int, str, str]:
        """(returncode, stdout, stderr) once the process has exited."""
        try:
            rc = self.proc.wait(timeout=300)
        finally:
            if self.watcher.is_alive():
                self.watcher.join(timeout=5)
        stdout, stderr = self.stdout.read_text(), self.stderr.read_text()
        if self.sig is not None:
            assert self.signalled, f"{self.name} exited ({rc}) before it was signalled: {stderr}"
        return rc, stdout, stderr

    def stop(self) -> None:
        """Kill what is left of this job: the process or its DataLoader workers (its own session,
        so its process group holds only what it started)."""
        if self.proc.poll() is None or any(running(pid, str(self.run)) for pid in self.children):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()


class Jobs(dict):
    root: Path
    recipe: Path
    references: dict[int, Path]

    def reference(self, workers: int) -> Path:
        """An uninterrupted in-process run of the long recipe (made on first use)."""
        if workers not in self.references:
            self.references[workers] = pretrain(self.recipe, [f"train.num_workers={workers}"],
                                                self.root / f"ref-long-w{workers}")
        return self.references[workers]


def after_checkpoint(run: Path, min_step: int = 0) -> Callable[[], bool]:
    """A run's first checkpoint exists and metrics.jsonl has reached `min_step`."""

    def ready() -> bool:
        if not (run / CHECKPOINT).exists():
            return False
        return not min_step or max(metric_steps(run), default=0) >= min_step

    return ready


@pytest.fixture(scope="module")
def jobs(tmp_path_factory, recipe_writer) -> Jobs:
    """Start every subprocess scenario of this module at once, on the long recipe."""
    root = tmp_path_factory.mktemp("faults")
    recipe = recipe_writer(root, LONG)
    started = Jobs()
    started.root, started.recipe, started.references = root, recipe, {}

    def start(name: str, workers: int, runner: list[str], *overrides: str, **kwargs) -> None:
        run = root / name
        args = ["pretrain", str(recipe), f"train.num_workers={workers}", *overrides, "--out", str(run)]
        if "ready" in kwargs:
            kwargs["ready"] = kwargs["ready"](run)
        started[name] = Job(name, [*runner, *args], root, run, workers, **kwargs)

    cli = ["-m", "polyjepa"]
    try:
        for workers in (0, 2):  # killed a couple of steps past the first checkpoint
            start(f"kill9-w{workers}", workers, cli, ready=lambda run: after_checkpoint(run, EVERY + 2),
                  sig=signal.SIGKILL)
        start("crash-in-save", 0, [str(FAULT_RUNNER), "crash-before-replace", "2"])  # 2nd checkpoint
        start("sigterm", 0, cli, ready=after_checkpoint, sig=signal.SIGTERM)
        start("ctrl-c-w2", 2, cli, ready=after_checkpoint, sig=signal.SIGINT, group=True)
        start("sigterm-group-w2", 2, [str(FAULT_RUNNER), "sigterm-group-at-step", str(GROUP_STEP)],
              *GROUP[1:])
        yield started
    finally:
        for job in started.values():
            job.stop()


# ------------------------------------------------------------------------------ kill -9


@pytest.mark.parametrize("workers", [0, 2])
def test_kill9_mid_training_then_resume_is_bit_exact(jobs, workers):
    job = jobs[f"kill9-w{workers}"]
    reference = jobs.reference(workers)  # trained while the job runs
    rc, _, stderr = job.result()
    assert rc == -signal.SIGKILL, stderr
    run = job.run
    assert not (run / "encoder.pt").exists()
    saved = load_file(run / CHECKPOINT)["step"]  # loads: never a half-written checkpoint
    assert saved % EVERY == 0 and EVERY <= saved < MAX_STEPS
    assert metric_steps(run)[:saved] == list(range(1, saved + 1))

    assert pretrain(jobs.recipe, [], run, resume=True) == run
    assert load_file(run / CHECKPOINT)["step"] == MAX_STEPS
    assert_same_run(run, reference)
    # the killed run's DataLoader workers noticed their parent died and exited
    assert len(job.children) == workers
    deadline = time.monotonic() + 15
    while any(running(pid, str(run)) for pid in job.children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in job.children if running(pid, str(run))], "orphaned workers"


# ---------------------------------------------------------- crash between write and rename


def test_crash_between_checkpoint_write_and_rename(jobs, monkeypatch, capsys):
    job = jobs["crash-in-save"]
    reference = jobs.reference(0)
    rc, _, stderr = job.result()
    assert rc == 9, stderr
    run = job.run
    line = next(x for x in stderr.splitlines() if x.startswith("fault_runner: os._exit(9)"))
    tmp = Path(line.split("os.replace(", 1)[1].split(", ")[0])
    assert tmp.parent == run / "checkpoints" and tmp.name != "last.pt"
    # the crash came after the new checkpoint was completely written...
    assert load_file(tmp)["step"] == 2 * EVERY
    # ...but before it replaced the previous one, which is intact
    assert load_file(run / CHECKPOINT)["step"] == EVERY
    assert not (run / "encoder.pt").exists()

    steps = count_steps(monkeypatch)
    assert main(["pretrain", str(jobs.recipe), "--out", str(run), "--resume"]) == 0
    assert f"trained encoder: {run / 'encoder.pt'}" in capsys.readouterr().out
    # resumed from last.pt (step EVERY), not from the stray temp file of step 2 * EVERY
    assert steps == list(range(EVERY + 1, MAX_STEPS + 1))
    assert load_file(run / CHECKPOINT)["step"] == MAX_STEPS
    assert_same_run(run, reference)


# ------------------------------------------------------------------------- SIGTERM / SIGINT

SIGNALS = [pytest.param("sigterm", id="SIGTERM"),
           pytest.param("ctrl-c-w2", id="SIGINT-to-process-group-workers2")]  # Ctrl-C


@pytest.mark.parametrize("name", SIGNALS)
def test_signal_checkpoints_at_step_boundary_and_resumes(jobs, capsys, name):
    job = jobs[name]
    reference = jobs.reference(job.workers)
    rc, stdout, stderr = job.result()
    assert rc == 0, stderr
    assert "Traceback" not in stderr, stderr
    run = job.run
    assert not (run / "encoder.pt").exists()
    # signalled after the first checkpoint: stopped at a later step, saving it
    saved = load_file(run / CHECKPOINT)["step"]
    assert EVERY < saved < MAX_STEPS
    assert metric_steps(run) == list(range(1, saved + 1))
    assert "Resume with:" in stdout
    command = shlex.split(stdout.split("Resume with:", 1)[1])
    assert command[0] == "polyjepa" and command[-1] == "--resume"
    assert command[command.index("--out") + 1] == str(run)

    assert main(command[1:]) == 0  # the printed command finishes the run
    assert "trained encoder" in capsys.readouterr().out
    assert load_file(run / CHECKPOINT)["step"] == MAX_STEPS
    assert_same_run(run, reference)


def test_sigterm_to_the_whole_process_group_with_workers_stops_cleanly(jobs, capsys):
    """`scancel`, `systemctl stop` and `kill -TERM -PGID` signal every process of the job, the
    DataLoader workers included: they must leave the stop to the main process (before the
    `worker_init_fn` in core/train.py they died, the run raised 'DataLoader worker ... exited
    unexpectedly' and exited 1 without its stop checkpoint)."""
    job = jobs["sigterm-group-w2"]
    reference = pretrain(jobs.recipe, GROUP, jobs.root / "ref-group")
    rc, stdout, stderr = job.result()
    assert "fault_runner: SIGTERM to process group" in stderr, "the fault was not injected"
    assert rc == 0, stderr
    assert "Traceback" not in stderr, stderr
    assert "Resume with:" in stdout
    assert load_file(job.run / CHECKPOINT)["step"] == GROUP_STEP
    assert not (job.run / "encoder.pt").exists()
    assert main(["pretrain", str(jobs.recipe), "--out", str(job.run), "--resume"]) == 0
    assert "trained encoder" in capsys.readouterr().out
    assert_same_run(job.run, reference)


# ----------------------------------------------------------------- unwritable output directory


def deny(path: Path) -> PermissionError:
    return PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))


def test_unwritable_output_parent_fails_clearly_and_writes_nothing(tmp_path, tiny_recipe,
                                                                     monkeypatch):
    recipe = tiny_recipe({"train": {"max_steps": 2}})
    parent = tmp_path / "readonly"
    parent.mkdir()
    run = parent / "run"
    parent.chmod(0o500)
    try:
        if os.access(parent, os.W_OK):  # root: permission bits are not enforced, simulate them
            real_mkdir = Path.mkdir

            def mkdir(self, *args, **kwargs):
                if self == parent or parent in self.parents:
                    raise deny(self)
                return real_mkdir(self, *args, **kwargs)

            monkeypatch.setattr(Path, "mkdir", mkdir)
        with pytest.raises(PermissionError) as info:
            pretrain(recipe, [], run)
        assert info.value.errno == errno.EACCES
        assert str(run) in str(info.value), "the error names the directory it could not create"
        assert list(parent.iterdir()) == []
    finally:
        parent.chmod(0o700)


def test_unwritable_checkpoint_directory_leaves_no_half_run(tmp_path, tiny_recipe, monkeypatch):
    """The first checkpoint cannot be written (no permission): the error surfaces and the run
    directory, holding nothing resumable, is removed."""
    recipe = tiny_recipe({"train": {"max_steps": 4, "checkpoint_every": 2}})

    def save_atomic(obj, path):
        raise deny(path.parent)

    monkeypatch.setattr(T, "save_atomic", save_atomic)
    run = tmp_path / "run"
    with pytest.raises(PermissionError) as info:
        pretrain(recipe, [], run)
    assert info.value.errno == errno.EACCES and "checkpoints" in str(info.value)
    assert not run.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.yaml"]


# ------------------------------------------------------------------------------- full disk


def test_full_disk_during_checkpoint_keeps_the_previous_one(tmp_path, tiny_recipe, monkeypatch):
    recipe = tiny_recipe({"train": {"max_steps": 6, "checkpoint_every": 2},
                          "model": {"encoder": {"dropout": 0.1}}})
    reference = pretrain(recipe, [], tmp_path / "reference")
    real_save = torch.save
    calls = [0]

    def save(obj, f, *args, **kwargs):
        calls[0] += 1
        if calls[0] == 2:  # the step-4 checkpoint: the disk fills up half way through
            buffer = io.BytesIO()
            real_save(obj, buffer, *args, **kwargs)
            f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr("polyjepa.checkpoint.torch.save", save)
    run = tmp_path / "run"
    with pytest.raises(OSError) as info:
        pretrain(recipe, [], run)
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert calls[0] == 2
    assert load_file(run / CHECKPOINT)["step"] == 2  # the first checkpoint, intact
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["last.pt"]
    assert not [p for p in run.rglob("*") if "tmp" in p.name], "temp files left behind"
    assert not (run / "encoder.pt").exists()
    assert metric_steps(run) == [1, 2, 3, 4]

    pretrain(recipe, [], run, resume=True)  # space freed: the run finishes
    assert load_file(run / CHECKPOINT)["step"] == 6
    assert_same_run(run, reference)


def test_resume_after_full_disk_tore_a_metrics_row(tmp_path, tiny_recipe, monkeypatch):
    """The disk fills up half way through a metrics.jsonl row; once space is freed the run
    resumes (before core/train.py's `_truncate_metrics` skipped torn rows, the resume died on a
    bare JSONDecodeError)."""
    recipe = tiny_recipe({"train": {"max_steps": 4, "checkpoint_every": 2}})
    real_open = Path.open

    class FillsUp:
        """metrics.jsonl whose 3rd row hits a full disk half way through."""

        def __init__(self, f):
            self.f, self.rows = f, 0

        def write(self, text):
            self.rows += 1
            if self.rows == 3:
                self.f.write(text[: len(text) // 2])
                self.f.flush()
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(text)

        def __getattr__(self, name):
            return getattr(self.f, name)

    def open_(self, mode="r", *args, **kwargs):
        f = real_open(self, mode, *args, **kwargs)
        return FillsUp(f) if self.name == "metrics.jsonl" and mode == "a" else f

    monkeypatch.setattr(Path, "open", open_)
    run = tmp_path / "run"
    with pytest.raises(OSError, match="No space left"):
        pretrain(recipe, [], run)
    monkeypatch.undo()
    assert load_file(run / CHECKPOINT)["step"] == 2
    assert not (run / "metrics.jsonl").read_text().endswith("\n")  # the torn row
    pretrain(recipe, [], run, resume=True)  # space freed
    assert metric_steps(run) == [1, 2, 3, 4]
    assert (run / "metrics.jsonl").read_text().endswith("}\n")
    assert_same_run(run, pretrain(recipe, [], tmp_path / "reference"))


# -------------------------------------------------------------------------- skip_nonfinite


@pytest.mark.parametrize("what", ["loss", "gradient"])
def test_skip_nonfinite_skips_exactly_the_bad_step(tmp_path, tiny_recipe, monkeypatch, what, caplog):
    recipe = tiny_recipe({"train": {"max_steps": 6, "checkpoint_every": 3,
                                    "skip_nonfinite": True}})
    original = JEPA.forward
    calls = [0]

    def forward(self, batch):
        loss, logs = original(self, batch)
        calls[0] += 1
        if calls[0] == 3:
            if what == "loss":
                loss = loss * float("nan")
            else:  # a finite loss with a NaN gradient: d sqrt(x)/dx at 0 is inf, times 0
                loss = loss + torch.sqrt(next(self.online.parameters()).sum() * 0.0)
        return loss, logs

    monkeypatch.setattr(JEPA, "forward", forward)
    unchanged: dict[int, bool] = {}  # step -> whether that step left the parameters as they were
    train_step = Trainer._train_step

    def snapshot_step(self, batches):
        params = [p for g in self.optimizer.param_groups for p in g["params"]]
        before = [p.detach().clone() for p in params]
        out = train_step(self, batches)
        unchanged[self.step] = all(torch.equal(a, p) for a, p in zip(before, params, strict=True))
        return out

    monkeypatch.setattr(Trainer, "_train_step", snapshot_step)
    run = tmp_path / "run"
    with logged(caplog, "non-finite") as logs:
        pretrain(recipe, [], run)
    messages = [m for m in logs if "non-finite" in m]
    assert messages == [f"step 3: non-finite {what}, step skipped (1 so far; "
                        "train.skip_nonfinite=true)"]
    assert unchanged == {1: False, 2: False, 3: True, 4: False, 5: False, 6: False}

    assert (run / "encoder.pt").is_file()
    state = load_file(run / CHECKPOINT)
    assert state["step"] == 6 and state["skipped"] == 1
    assert all(torch.isfinite(v).all() for v in state["objective"].values())
    # AdamW took 5 steps, not 6: the skipped one did not touch its moments or step count
    assert {float(s["step"]) for s in state["optimizer"]["state"].values()} == {5.0}
    rows = metric_rows(run)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["skipped_steps"] for r in rows] == [0, 0, 1, 1, 1, 1]
    bad = "loss" if what == "loss" else "grad_norm"
    assert [math.isfinite(r[bad]) for r in rows] == [True, True, False, True, True, True]


# ---------------------------------------------------------------------------- auto_resume


K = 4  # the interrupted run stops after its checkpoint at step K of 2K


def interrupted_run(tmp_path, tiny_recipe, monkeypatch, **train) -> tuple[Path, Path]:
    recipe = tiny_recipe({"train": {"max_steps": 2 * K, "checkpoint_every": 2, **train},
                          "model": {"encoder": {"dropout": 0.1}}})
    run = tmp_path / "run"
    with monkeypatch.context() as m:
        interrupt_after_checkpoint(m, K)
        with pytest.raises(Interrupt):
            main(["pretrain", str(recipe), "--out", str(run)])
    assert load_file(run / CHECKPOINT)["step"] == K
    assert not (run / "encoder.pt").exists()
    return recipe, run


def test_auto_resume_continues_an_interrupted_run(tmp_path, tiny_recipe, monkeypatch, capsys):
    recipe, run = interrupted_run(tmp_path, tiny_recipe, monkeypatch)
    reference = pretrain(recipe, [], tmp_path / "reference")
    steps = count_steps(monkeypatch)
    assert main(["pretrain", str(recipe), "--out", str(run)]) == 0  # the same command again
    assert "trained encoder" in capsys.readouterr().out
    assert steps == list(range(K + 1, 2 * K + 1)), "restarted from scratch instead of step K"
    assert load_file(run / CHECKPOINT)["step"] == 2 * K
    assert_same_run(run, reference)


def test_auto_resume_accepts_settings_of_how_to_run(tmp_path, tiny_recipe, monkeypatch, capsys):
    """Settings that change how a run runs, not what it computes (the allocator, the progress
    bar), may differ when the same run is restarted."""
    recipe, run = interrupted_run(tmp_path, tiny_recipe, monkeypatch)
    steps = count_steps(monkeypatch)
    assert main(["pretrain", str(recipe), "train.reuse_memory=false", "train.progress=false",
                 "--out", str(run)]) == 0
    assert steps == list(range(K + 1, 2 * K + 1))


def test_auto_resume_false_refuses_the_same_command(tmp_path, tiny_recipe, monkeypatch, capsys):
    recipe, run = interrupted_run(tmp_path, tiny_recipe, monkeypatch, auto_resume=False)
    capsys.readouterr()
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*")}
    assert main(["pretrain", str(recipe), "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert f"--out {run} already holds a run; pass --resume" in err
    assert "different recipe" not in err
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*")} == before  # untouched
    with pytest.raises(ConfigError, match="already holds a run"):
        pretrain(recipe, [], run)
    # it is still resumable explicitly
    reference = pretrain(recipe, [], tmp_path / "reference")
    assert main(["pretrain", str(recipe), "--out", str(run), "--resume"]) == 0
    assert_same_run(run, reference)


def test_a_second_process_cannot_train_into_a_folder_in_use(tmp_path, tiny_recipe, monkeypatch,
                                                            capsys):
    """Two processes training into one `--out` (a job restarted while the first still runs, two
    benchmark shells over one set) would truncate each other's metrics and drop kept encoders:
    the second is refused, naming the first, and touches nothing; once the first ends, the same
    command resumes."""
    recipe, run = interrupted_run(tmp_path, tiny_recipe, monkeypatch)
    capsys.readouterr()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from polyjepa.checkpoint import lock_run_dir; h = lock_run_dir(Path(sys.argv[1])); "
         "print('held', flush=True); time.sleep(120)", str(run)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != ".lock"}
        assert main(["pretrain", str(recipe), "--out", str(run)]) == 2
        err = capsys.readouterr().err
        assert f"--out {run} is in use by process {holder.pid}" in err
        assert {p: p.read_bytes() for p in run.rglob("*")
                if p.is_file() and p.name != ".lock"} == before
    finally:
        holder.kill()
        holder.wait()
    steps = count_steps(monkeypatch)
    assert main(["pretrain", str(recipe), "--out", str(run)]) == 0  # the lock died with it
    assert steps == list(range(K + 1, 2 * K + 1))
