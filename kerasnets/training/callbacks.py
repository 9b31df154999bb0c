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


class EpochBackup(keras.callbacks.Callback):
    """The last completed epoch (model and optimizer), for ``--resume``.

    Not ``keras.callbacks.BackupAndRestore``: it writes in place (a crash mid-write
    leaves no good backup) and deletes the backup in ``on_train_end``, before the
    trainer has written ``model.keras``.

    Each completed epoch writes ``epoch-N.weights.h5`` atomically, then
    ``training_metadata.json`` naming it, then drops the older file: at any moment
    the metadata points to a complete checkpoint. An epoch that ended with a
    non-finite loss (``nan_guard.where`` set) is not backed up, so the last good
    state survives a NaN. :meth:`discard` removes the backup once the run is kept.
    The trainer passes the restored epoch to ``fit(initial_epoch=...)``.
    """

    METADATA = "training_metadata.json"

    def __init__(self, backup_dir, nan_guard: NaNGuard):
        super().__init__()
        self.backup_dir, self.nan_guard = Path(backup_dir), nan_guard

    @staticmethod
    def read_metadata(backup_dir):
        path = Path(backup_dir) / EpochBackup.METADATA
        return artifacts.read_json(path) if path.exists() else None

    def on_train_begin(self, logs=None):
        state = self.read_metadata(self.backup_dir)
        if state is None:
            return
        optimizer = self.model.optimizer
        if optimizer is not None and not optimizer.built:  # its variables must exist to load
            optimizer.build(self.model.trainable_variables)
        self.model.load_weights(str(self.backup_dir / state["weights"]))

    def on_epoch_end(self, epoch, logs=None):
        if self.nan_guard.where or not _finite((logs or {}).get("loss")):
            return
        previous = self.read_metadata(self.backup_dir)
        name = f"epoch-{epoch + 1}.weights.h5"
        artifacts.atomic_write(self.backup_dir / name, self.model.save_weights)
        artifacts.write_json(self.backup_dir / self.METADATA,
                             {"epoch": epoch + 1, "weights": name})
        if previous and previous["weights"] != name:
            (self.backup_dir / previous["weights"]).unlink(missing_ok=True)

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

    def __init__(self, run_dir, title, rows=(), main_output=None):
        super().__init__()
        self.run_dir, self.title = Path(run_dir), title
        self.rows = [row for row in rows]
        self.prefix = f"{main_output}_" if main_output else None
        self._epoch_start = None

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
        self.rows = [r for r in self.rows if r["epoch"] < row["epoch"]] + [row]
        artifacts.write_history_csv(self.run_dir / "history.csv", self.rows)
        artifacts.plot_curves(self.run_dir / "curves.png", self.rows, self.title)

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
    where it only raises a flag and the first training batch end after it raises
    ``KeyboardInterrupt`` (which the trainer turns into a saved ``interrupted.keras``):
    never in the middle of writing a checkpoint. A second signal interrupts at once."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        super().__init__()
        self.requested = False
        self.training = False
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
        if self.requested:  # not mid-validation or mid-backup: the epoch completes
            raise KeyboardInterrupt
