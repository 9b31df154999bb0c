"""Callbacks that make a run safe to interrupt and easy to read afterwards.

Keras' own ``TerminateOnNaN`` and ``TensorBoard`` are used as they are; the others
are our own, each with the reason Keras' does not do. Ours use only the public
``keras.callbacks.Callback`` hooks.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import keras

from kerasnets.training import artifacts


def _finite(value):
    return value is not None and math.isfinite(float(value))


class NaNGuard(keras.callbacks.TerminateOnNaN):
    """Keras' ``TerminateOnNaN`` that also remembers where: ``where`` is ``(epoch, batch)``,
    both from 1, of the first non-finite training loss (``None`` while all is well)."""

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.where = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        if self.where is None and not _finite((logs or {}).get("loss", 0.0)):
            self.where = (self.epoch + 1, batch + 1)
        super().on_batch_end(batch, logs)


def parse_backup_every(text):
    """``--backup-every``: ``"10m"`` (minutes), ``"500steps"`` (training steps) or ``"0"``
    (epoch ends only) as ``(unit, amount)``: ``("minutes", 10.0)``, ``("steps", 500)``,
    ``(None, 0)``. Raises ``ValueError`` saying what is accepted."""
    import re

    value = str(text).strip().lower()
    if value in ("0", "off", "none"):
        return None, 0
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(m|min|minutes?|s|steps?)", value)
    if match:
        amount, unit = match.groups()
        if unit.startswith("m"):
            if float(amount) > 0:
                return "minutes", float(amount)
        elif float(amount) == int(float(amount)) and int(float(amount)) > 0:
            return "steps", int(float(amount))
    raise ValueError(f"expected minutes like 10m, steps like 500steps, or 0 (off); "
                     f"got {text!r}")


def backup_every_problem(text):
    """``--backup-every``'s check for the setting declarations: what is wrong, or None."""
    try:
        parse_backup_every(text)
    except ValueError as error:
        return str(error)
    return None


_SECONDS = {"s": 1, "m": 60, "h": 3600}


def parse_time_limit(text) -> float:
    """``--time-limit``: ``"90s"``, ``"15m"`` or ``"1.5h"`` as seconds. Raises
    ``ValueError`` saying what is accepted."""
    import re

    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smh])", str(text).strip().lower())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"expected a positive time like 90s, 15m or 1.5h; got {text!r}")
    return float(match.group(1)) * _SECONDS[match.group(2)]


def time_limit_problem(text):
    """``--time-limit``'s check for the setting declarations: what is wrong, or None."""
    try:
        parse_time_limit(text)
    except ValueError as error:
        return str(error)
    return None


class TimeLimit(keras.callbacks.Callback):
    """Stop training at the first batch end after ``seconds`` of wall time, counted from
    the first ``fit``'s start (compilation and per-epoch validation included: they are
    part of what a budget pays for).

    It sets ``model.stop_training``: Keras ends the epoch there (validating it and
    calling ``on_epoch_end``, so the partial epoch is recorded and backed up like any
    other) and ``fit`` returns normally; the trainer then saves and tests the model as
    after a finished run. Not Keras' ``EarlyStopping``-style epoch checks: an epoch of a
    big model can be longer than the whole budget. ``steps_done`` counts the training
    steps; ``epochs_reached`` is them in epochs of ``steps`` batches (fractional).
    ``spent``: seconds a resumed run already used of the limit (it gets the rest)."""

    def __init__(self, seconds: float, steps: int, spent: float = 0.0):
        super().__init__()
        self.seconds, self.steps, self.spent = float(seconds), steps, float(spent)
        self.steps_done, self.reached = 0, False
        self._start = None

    def on_train_begin(self, logs=None):
        if self._start is None:  # a second fit (the rest of a split epoch) keeps the clock
            self._start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        self.steps_done += 1
        if self.spent + time.monotonic() - self._start >= self.seconds:
            self.reached = True
            self.model.stop_training = True

    @property
    def epochs_reached(self) -> float:
        return self.steps_done / self.steps


class EpochBackup(keras.callbacks.Callback):
    """The last completed epoch (model and optimizer), and within long epochs the last
    completed step, for ``--resume``.

    Not ``keras.callbacks.BackupAndRestore``: it writes in place (a crash mid-write
    leaves no good backup) and deletes the backup in ``on_train_end``, before the
    trainer has written ``model.keras``.

    Each completed epoch writes ``epoch-N.weights.h5`` atomically, then
    ``training_metadata.json`` naming it (``{"epoch": N, "step": 0}``), then drops the
    older file: at any moment the metadata points to a complete checkpoint. Within an
    epoch, every ``every`` (see :func:`parse_backup_every`), and when a stop was
    requested (``stop.requested``: Ctrl-C, SIGTERM), a training batch end writes
    ``epoch-N-step-S.weights.h5`` the same way, with ``{"epoch": N, "step": S}`` (S steps
    of epoch N+1 done) and the epoch's running logs, for a resume mid-epoch.

    An epoch that ended with a non-finite loss (``nan_guard.where`` set) is not backed
    up, so the last good state survives a NaN. :meth:`discard` removes the backup; the
    trainer calls it only once ``metrics.json`` says the run finished. The backup is
    restored (once) when the first ``fit`` begins; the trainer passes the restored
    epoch to ``fit(initial_epoch=...)``.
    """

    METADATA = "training_metadata.json"

    def __init__(self, backup_dir, nan_guard: NaNGuard, *, every="0", steps=None, stop=None,
                 step_offset=0):
        super().__init__()
        self.backup_dir, self.nan_guard = Path(backup_dir), nan_guard
        self.unit, self.amount = parse_backup_every(every)
        self.steps, self.stop = steps, stop
        self.step_offset = step_offset  # steps of the current epoch done before this fit
        self.started = False  # a fit began: the model holds the backup, or trains
        self._last, self._last_step = time.monotonic(), step_offset
        self._epoch_seconds = 0.0  # of the current epoch before this fit (a split epoch)
        self._epoch_start = time.perf_counter()

    @staticmethod
    def read_metadata(backup_dir):
        path = Path(backup_dir) / EpochBackup.METADATA
        return artifacts.read_json(path) if path.exists() else None

    def restore(self, model=None):
        """Load the backup into the model (with the optimizer's state); returns the
        metadata, or ``None`` when there is no backup."""
        model = model or self.model
        state = self.read_metadata(self.backup_dir)
        if state is None:
            return None
        optimizer = model.optimizer
        if optimizer is not None and not optimizer.built:  # its variables must exist to load
            optimizer.build(model.trainable_variables)
        model.load_weights(str(self.backup_dir / state["weights"]))
        return state

    def on_train_begin(self, logs=None):
        self._last = time.monotonic()
        if not self.started:
            self.started = True
            state = self.restore()
            if state and state.get("step"):
                self._epoch_seconds = float(state.get("epoch_seconds", 0.0))

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()
        self._last_step = self.step_offset

    def on_epoch_end(self, epoch, logs=None):
        self.step_offset, self._epoch_seconds = 0, 0.0
        if self.nan_guard.where or not _finite((logs or {}).get("loss")):
            return
        self._write(f"epoch-{epoch + 1}.weights.h5", {"epoch": epoch + 1, "step": 0})

    def on_train_batch_end(self, batch, logs=None):
        step = self.step_offset + batch + 1  # steps of this epoch done
        stopping = self.stop is not None and self.stop.requested
        if self.steps is not None and step >= self.steps:
            if stopping:
                self.stop.hold = True  # stop after the epoch's end backs it up
            return  # the epoch's end backs it up (after validation)
        if not (stopping or self._due(step)):
            return
        if self.nan_guard.where or not _finite((logs or {}).get("loss")):
            return
        epoch = self._epoch
        self._write(f"epoch-{epoch}-step-{step}.weights.h5", {
            "epoch": epoch, "step": step,
            "logs": {k: float(v) for k, v in (logs or {}).items() if _finite(v)},
            "epoch_seconds": self._epoch_seconds + time.perf_counter() - self._epoch_start})

    @property
    def _epoch(self):
        return self.nan_guard.epoch  # NaNGuard tracks the epoch (from 0) being trained

    def _due(self, step):
        if self.unit == "steps":
            return step - self._last_step >= self.amount
        if self.unit == "minutes":
            return time.monotonic() - self._last >= self.amount * 60
        return False

    def _write(self, name, state):
        previous = self.read_metadata(self.backup_dir)
        artifacts.atomic_write(self.backup_dir / name, self.model.save_weights)
        artifacts.write_json(self.backup_dir / self.METADATA, {**state, "weights": name})
        if previous and previous["weights"] != name:
            (self.backup_dir / previous["weights"]).unlink(missing_ok=True)
        self._last, self._last_step = time.monotonic(), state["step"]

    def discard(self):
        shutil.rmtree(self.backup_dir, ignore_errors=True)


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model to ``path`` whenever ``monitor`` improves.

    Not ``keras.callbacks.ModelCheckpoint(save_best_only=True)``: it does not write
    atomically, and it would keep an improving epoch whose training loss is NaN."""

    def __init__(self, path, monitor="val_accuracy", best=None):
        super().__init__()
        self.path, self.monitor = Path(path), monitor
        self.best = best if best is not None else -math.inf
        self.best_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if _finite(value) and _finite(logs.get("loss")) and value > self.best:
            self.best, self.best_epoch = float(value), epoch + 1
            artifacts.save_model(self.model, self.path)


class HistoryRecorder(keras.callbacks.Callback):
    """``history.csv`` and ``curves.png``, rewritten (atomically) after every epoch.

    Not ``keras.callbacks.CSVLogger``: it appends in place, numbers epochs from 0,
    fixes its columns at the first epoch and records neither the learning rate nor
    the epoch time; a resumed run must rewrite the rows of the epochs it redoes.

    ``rows`` holds the epochs already recorded (a resumed run starts with them).
    ``main_output``: for models with several outputs (GoogLeNet's auxiliary heads),
    the output whose metrics are recorded under the plain names (``accuracy``...).
    """

    def __init__(self, run_dir, title, rows=(), main_output=None, split=None, steps=None):
        super().__init__()
        self.run_dir, self.title = Path(run_dir), title
        self.rows = [row for row in rows]
        self.prefix = f"{main_output}_" if main_output else None
        self._epoch_start = None
        # A resume mid-epoch: the mid-epoch backup's metadata (epoch, step, logs,
        # epoch_seconds), so that the split epoch's row covers all of its steps.
        self.split, self.steps = split, steps

    def _canonical(self, key):
        if self.prefix:
            for split in ("val_", ""):
                if key.startswith(split + self.prefix) and not key.endswith("_loss"):
                    return split + key[len(split + self.prefix):]
        return key

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        row = {"epoch": epoch + 1}
        row.update({self._canonical(k): float(v) for k, v in (logs or {}).items()})
        row["learning_rate"] = float(keras.ops.convert_to_numpy(
            self.model.optimizer.learning_rate))
        row["epoch_seconds"] = time.perf_counter() - self._epoch_start
        if self.split and self.steps and self.split["epoch"] == epoch:
            row = self._join_split(row)
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
        artifacts.write_history_csv(self.run_dir / "history.csv", self.rows)
        artifacts.plot_curves(self.run_dir / "curves.png", self.rows, self.title)

    def _join_split(self, row):
        """The row of an epoch trained in two ``fit`` calls: its training metrics are the
        step-weighted means of the first part's (from the backup) and the second's."""
        done, before = self.split["step"], self.split.get("logs", {})
        share = done / self.steps
        for key, value in list(row.items()):
            raw = next((k for k in before if self._canonical(k) == key), None)
            if raw is not None and not key.startswith("val_") and key != "learning_rate":
                row[key] = share * before[raw] + (1 - share) * value
        row["epoch_seconds"] += self.split.get("epoch_seconds", 0.0)
        self.split = None
        return row

    @property
    def epochs_completed(self):
        return self.rows[-1]["epoch"] if self.rows else 0


class Throughput(keras.callbacks.Callback):
    """Training images per second, timing only the training steps (after warm-up)."""

    def __init__(self, batch_size, warmup_batches=3):
        super().__init__()
        self.batch_size, self.warmup = batch_size, warmup_batches
        self.seconds, self.batches, self._seen = 0.0, 0, 0
        self._start = None

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._seen += 1
        if self._seen > self.warmup:  # the first steps trace and compile
            self.seconds += time.perf_counter() - self._start
            self.batches += 1

    @property
    def images_per_second(self):
        return self.batches * self.batch_size / self.seconds if self.seconds else None


class GracefulStop(keras.callbacks.Callback):
    """Ctrl-C and SIGTERM, the one place that handles them: used as a context around a
    whole run, a signal raises ``KeyboardInterrupt`` at once, except while training,
    where it only raises a flag and the first training batch end (or epoch end) after
    it raises ``KeyboardInterrupt`` (which the trainer turns into a saved
    ``interrupted.keras``), after ``EpochBackup`` has backed up that step: never in the
    middle of writing a checkpoint. A second signal interrupts at once (every file is
    written atomically, so that loses nothing kept before)."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        super().__init__()
        self.requested = False
        self.training = False
        self.hold = False  # set by EpochBackup: stop at the epoch's end, not at this batch
        self._previous = {}

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():  # signals: main only
            for name in self.SIGNALS:
                number = getattr(signal, name)
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc):
        import signal

        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}

    def _handle(self, signum, frame):
        if self.requested or not self.training:
            raise KeyboardInterrupt
        self.requested = True

    def on_train_begin(self, logs=None):
        self.training = True

    def on_train_end(self, logs=None):
        self.training = False

    def on_train_batch_end(self, batch, logs=None):
        if self.requested and not self.hold:  # not mid-validation or mid-backup
            raise KeyboardInterrupt

    def on_epoch_end(self, epoch, logs=None):
        if self.requested:  # after the epoch's backup (EpochBackup comes before)
            raise KeyboardInterrupt
