"""Where a run writes: a new run directory, the one being resumed, or, on the
processes of a distributed run other than the chief, a scratch directory removed
afterwards (only the chief keeps what it writes)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from kerasnets.training import artifacts
from kerasnets.training.callbacks import EpochBackup

# What a non-chief process needs of the chief's run to resume as it does.
RESUME_STATE = ("backup", "history.csv", "metrics.json")


@dataclass
class RunDir:
    """The directory this process writes (``path``) and what it holds already."""

    path: Path
    kept: Path  # the run directory the user keeps (the chief's)
    resuming: bool = False
    initial_epoch: int = 0  # epochs completed before (from the backup)
    previous: dict = field(default_factory=dict)  # metrics.json of the interrupted run
    history: list = field(default_factory=list)  # history.csv rows of the interrupted run

    @property
    def backup(self) -> Path:
        return self.path / "backup"

    @classmethod
    def read(cls, path: Path, kept: Path, resuming: bool) -> "RunDir":
        if not resuming:
            return cls(path, kept)
        state = EpochBackup.read_metadata(path / "backup")
        metrics = path / "metrics.json"
        return cls(path, kept, True, state["epoch"] if state else 0,
                   artifacts.read_json(metrics) if metrics.exists() else {},
                   artifacts.read_history_csv(path / "history.csv"))


def new_run_dir(output_dir, model, dataset, run_name=None) -> Path:
    """A fresh directory; never reuses (and so never overwrites) an existing run."""
    output_dir = Path(output_dir)
    base = run_name or f"{model}-{dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    path, n = output_dir / base, 1
    if run_name and path.exists():
        raise FileExistsError(f"Run directory {path} already exists; pick another --run-name "
                              f"or continue it with --resume {path}.")
    while path.exists():
        n += 1
        path = output_dir / f"{base}-{n}"
    path.mkdir(parents=True)
    return path


@contextlib.contextmanager
def run_directory(config, *, is_chief=True, process_id=0, resume_dir=None):
    """The :class:`RunDir` of this process for ``config`` (continuing ``resume_dir``)."""
    resuming = resume_dir is not None
    if is_chief:
        kept = Path(resume_dir) if resuming else new_run_dir(
            config.output_dir, config.model, config.dataset, config.run_name)
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
