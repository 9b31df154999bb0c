"""Where a run writes: a new run directory, the one being resumed, or, on the
processes of a distributed run other than the chief, a scratch directory removed
afterwards (only the chief keeps what it writes)."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from kerasnets.training import artifacts
from kerasnets.training.callbacks import EpochBackup
from kerasnets.training.errors import OutputError, RunFinished, RunLocked, storage_problem

# What a non-chief process needs of the chief's run to resume as it does.
RESUME_STATE = ("backup", "history.csv", "metrics.json", "model.keras")
LOCK = "train.lock"


@dataclass
class RunDir:
    """The directory this process writes (``path``) and what it holds already."""

    path: Path
    kept: Path  # the run directory the user keeps (the chief's)
    resuming: bool = False
    initial_epoch: int = 0  # epochs completed before (from the backup)
    previous: dict = field(default_factory=dict)  # metrics.json of the interrupted run
    history: list = field(default_factory=list)  # history.csv rows of the interrupted run
    initial_step: int = 0  # steps of epoch initial_epoch + 1 completed (mid-epoch backup)
    split: dict | None = None  # the mid-epoch backup's metadata when initial_step > 0
    trained_model: Path | None = None  # model.keras of a run trained to its end, no backup

    @property
    def backup(self) -> Path:
        return self.path / "backup"

    @classmethod
    def read(cls, path: Path, kept: Path, resuming: bool) -> "RunDir":
        if not resuming:
            return cls(path, kept)
        state = EpochBackup.read_metadata(path / "backup")
        metrics = path / "metrics.json"
        previous = artifacts.read_json(metrics) if metrics.exists() else {}
        history = artifacts.read_history_csv(path / "history.csv")
        refuse_finished(previous, kept)
        run = cls(path, kept, True, state["epoch"] if state else 0, previous, history)
        if state and state.get("step"):
            run.initial_step, run.split = int(state["step"]), state
        elif state is None and (path / "model.keras").exists():
            # trained to its end by a version that removed the backup before metrics.json
            run.trained_model = path / "model.keras"
            run.initial_epoch = max([r["epoch"] for r in history] +
                                    [previous.get("epochs_completed") or 0])
        return run


def refuse_finished(metrics: dict, path):
    """``--resume`` of a finished run would train it again over what it keeps."""
    if metrics.get("status") == "finished":
        accuracy = metrics.get("test_accuracy")
        raise RunFinished(
            f"Run {path} has finished ({metrics.get('epochs_completed', '?')} epochs"
            + (f", test accuracy {accuracy:.4f}" if isinstance(accuracy, float) else "")
            + "): there is nothing to resume, and it is kept as it is. To train longer, "
              "start a new run with a larger --epochs.")


def new_run_dir(output_dir, model, dataset, run_name=None) -> Path:
    """A fresh directory; never reuses (and so never overwrites) an existing run. Safe
    when several trainers start at once: the directory that ``mkdir`` creates is ours."""
    output_dir = Path(output_dir)
    check_writable(output_dir, create=True)
    base = run_name or f"{model}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    for n in itertools.count(1):
        path = output_dir / (base if n == 1 else f"{base}-{n}")
        try:
            path.mkdir()  # exist_ok=False: exactly one process creates it
            return path
        except FileExistsError:
            if run_name:
                raise FileExistsError(
                    f"Run directory {path} already exists; pick another --run-name or "
                    f"continue it with --resume {path}.") from None
        except OSError as error:
            raise _unwritable(output_dir, error) from None


def check_writable(directory, create=False):
    """Raise :class:`OutputError` unless a file can be written in ``directory`` (made
    first with ``create``): before training, not after the first epoch."""
    directory = Path(directory)
    try:
        if create:
            directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".kerasnets-probe-", dir=directory)
        try:
            os.write(fd, b"kerasnets")
        finally:
            os.close(fd)
            os.remove(probe)
    except OSError as error:
        raise _unwritable(directory, error) from None


def _unwritable(directory, error):
    reason = storage_problem(error) or (error.strerror or str(error)).lower()
    return OutputError(f"Cannot write in {directory}: {reason}. Use a writable --output-dir "
                       f"(or free space there, or fix its permissions).", directory, reason)


@contextlib.contextmanager
def run_lock(path):
    """Hold ``path/train.lock`` (holding this process' id) while training ``path``:
    a second trainer of the same directory gets :class:`RunLocked` naming the holder.
    ``flock`` locks die with their process, so a killed run leaves no stale lock."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    lock = Path(path) / LOCK
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as error:
            raise _unwritable(path, error) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunLocked(f"Run {path} is being trained by another process (pid {holder}, "
                            f"holding {lock}); wait for it to end or stop it first.") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:
            same = False
        if same:  # not a lock file its previous holder removed meanwhile
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        try:
            os.unlink(lock)  # while holding it, so no one locks a removed file for long
        except OSError:
            pass
        os.close(fd)


@contextlib.contextmanager
def run_directory(config, *, is_chief=True, process_id=0, resume_dir=None):
    """The :class:`RunDir` of this process for ``config`` (continuing ``resume_dir``)."""
    resuming = resume_dir is not None
    if is_chief:
        kept = Path(resume_dir) if resuming else new_run_dir(
            config.output_dir, config.model, config.dataset, config.run_name)
        if resuming:
            metrics = kept / "metrics.json"
            refuse_finished(artifacts.read_json(metrics) if metrics.exists() else {}, kept)
            check_writable(kept)
        with run_lock(kept):
            yield RunDir.read(kept, kept, resuming)
        return
    scratch = Path(tempfile.mkdtemp(prefix=f"kerasnets-process{process_id}-"))
    try:
        for name in RESUME_STATE if resuming else ():
            source = Path(resume_dir) / name  # the chief's run, on storage every host sees
            if source.is_dir():
                shutil.copytree(source, scratch / name)
            elif source.exists():
                shutil.copy2(source, scratch / name)
        yield RunDir.read(scratch, Path(resume_dir) if resuming else scratch, resuming)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
