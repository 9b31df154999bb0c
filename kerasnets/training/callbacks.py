"""Callbacks that make a run safe to interrupt and easy to read afterwards."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import keras

from kerasnets.training import artifacts


def _finite(value):
    return value is not None and math.isfinite(float(value))


class EpochBackup(keras.callbacks.BackupAndRestore):
    """Keras' ``BackupAndRestore`` with crash-safe files.

    Each completed epoch writes ``epoch-N.weights.h5`` (model and optimizer)
    atomically, then ``training_metadata.json`` naming it, then drops the older
    file: at any moment the metadata points to a complete checkpoint. An epoch
    that ended with a non-finite loss is not backed up, so the last good state
    survives a NaN. The backup is removed only after a run that finished well.
    """

    def __init__(self, backup_dir):
        super().__init__(backup_dir, save_freq="epoch", delete_checkpoint=True)
        self.failed = False

    @staticmethod
    def read_metadata(backup_dir):
        path = Path(backup_dir) / "training_metadata.json"
        return artifacts.read_json(path) if path.exists() else None

    def _load_model(self):
        state = self.read_metadata(self.backup_dir)
        if state is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        self.model.load_weights(os.path.join(self.backup_dir, state["weights"]))
        self.model._initial_epoch = state["epoch"]

    def on_epoch_end(self, epoch, logs=None):
        if not _finite((logs or {}).get("loss")):
            self.failed = True
            return
        self._current_epoch = epoch + 1
        self._save_model()

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        previous = self.read_metadata(self.backup_dir)
        name = f"epoch-{self._current_epoch}.weights.h5"
        artifacts.atomic_write(os.path.join(self.backup_dir, name),
                               lambda tmp: self.model.save_weights(tmp))
        artifacts.write_json(os.path.join(self.backup_dir, "training_metadata.json"),
                             {"epoch": self._current_epoch, "weights": name})
        if previous and previous["weights"] != name:
            old = os.path.join(self.backup_dir, previous["weights"])
            if os.path.exists(old):
                os.remove(old)

    def on_train_end(self, logs=None):
        if not self.failed and not getattr(self.model, "_kerasnets_nan", None):
            super().on_train_end(logs)


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model to ``path`` (atomically) whenever ``monitor`` improves."""

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


class NaNGuard(keras.callbacks.Callback):
    """Stop as soon as the training loss is not finite, and remember where."""

    def __init__(self):
        super().__init__()
        self.epoch = 0
        self.where = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not _finite(loss):
            self.where = (self.epoch + 1, batch + 1)
            self.model._kerasnets_nan = self.where
            self.model.stop_training = True


class HistoryRecorder(keras.callbacks.Callback):
    """``history.csv`` and ``curves.png``, rewritten (atomically) after every epoch.

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
    """Ctrl-C and SIGTERM stop training at the next batch boundary, never in the middle
    of writing a checkpoint: the signal only raises a flag, and the first training batch end
    after it raises ``KeyboardInterrupt`` (which the trainer turns into a saved
    ``interrupted.keras``). A second signal interrupts at once."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        super().__init__()
        self.requested = False
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
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def _check(self, *args, **kwargs):
        if self.requested:
            raise KeyboardInterrupt

    on_train_batch_end = _check  # not mid-validation or mid-backup: the epoch completes
