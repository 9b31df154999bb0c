"""``train``: one run of ``model.fit``, from settings to a complete run directory.

Everything that can be wrong with the settings or the data is found before the
first step (:func:`~kerasnets.training.prepare.prepare`); during training, every
completed epoch is backed up, and an interruption (Ctrl-C, SIGTERM, an exception)
saves the model as it is before the process ends.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import keras
import numpy as np

import kerasnets
from kerasnets.data import Preprocessor
from kerasnets.data.pipelines import make_pipeline, pad_and_shard, steps_per_epoch
from kerasnets.training import artifacts, distribute
from kerasnets.training.callbacks import (BestCheckpoint, EpochBackup, GracefulStop,
                                          HistoryRecorder, NaNGuard, Throughput)
from kerasnets.training.compile import (build_and_compile, dtype_policy, effective_lr,
                                        main_results, metric_key)
from kerasnets.training.config import TrainConfig
from kerasnets.training.errors import TrainingError, TrainingInterrupted
from kerasnets.training.prepare import Prepared, prepare
from kerasnets.training.rundir import RunDir, run_directory

@dataclass
class Fit:
    """What one process trains on: the prepared run, its engine and its shard."""

    prepared: Prepared
    dist: distribute.Distribution
    shard: distribute.Shard
    x_train: np.ndarray
    y_train: np.ndarray
    fixed_steps: int | None  # batches per epoch when fixed (short runs, data parallel)
    steps: int  # batches per epoch
    started: float  # time.time() when train() was called

    @property
    def config(self) -> TrainConfig:
        return self.prepared.config


def train(config: TrainConfig, *, run_dir=None, callbacks=()) -> dict:
    """Train ``config``; with ``run_dir`` set, continue that (interrupted) run.

    Returns the contents of ``metrics.json``. Raises :class:`TrainingError` for
    settings or data that cannot work, :class:`TrainingInterrupted` on Ctrl-C.
    With ``--distribute data`` every process calls this; only the chief keeps
    what it writes (the others write to a temporary directory, removed after).
    """
    started = time.time()
    stop = GracefulStop()
    with stop:
        dist = distribute.setup(config)
        try:
            with dist.scope():
                return _train(config, dist, run_dir, stop, callbacks, started)
        finally:
            if dist.jax_distribution is not None:
                keras.distribution.set_distribution(None)


def _train(config, dist, resume_dir, stop, callbacks, started):
    keras.utils.set_random_seed(config.seed)
    prepared = prepare(config)
    data, c = prepared.data, config
    dist.check_batch_size(c.batch_size)
    shard = dist.shard(c.batch_size)
    # Data parallel: only full global batches, streamed across epochs.
    fixed_steps = c.steps_per_epoch or (len(data.x_train) // c.batch_size
                                        if dist.active else None)
    fit = Fit(prepared, dist, shard, data.x_train[shard.index::shard.count],
              data.y_train[shard.index::shard.count], fixed_steps,
              steps_per_epoch(len(data.x_train), c.batch_size, fixed_steps), started)
    with run_directory(c, is_chief=dist.is_chief, process_id=dist.process_id,
                       resume_dir=resume_dir) as run:
        if not run.resuming:
            artifacts.write_json(run.path / "config.json", _run_record(fit))
        with dtype_policy(c.precision):
            return _fit(fit, run, stop, callbacks)


def _run_record(fit: Fit) -> dict:
    """``config.json``: everything needed to understand, resume and reuse the run."""
    c, data, dist = fit.config, fit.prepared.data, fit.dist
    return {"settings": c.to_dict(), "preprocessing": fit.prepared.preprocessing.to_dict(),
            "class_names": data.class_names, "data_source": data.source,
            "input_shape": list(fit.prepared.input_shape), "num_classes": data.num_classes,
            "backend": keras.backend.backend(), "effective_lr": effective_lr(c),
            "distribution": dist.describe(), "versions": artifacts.package_versions(),
            "machine": artifacts.machine_description()}


def _fit(fit: Fit, run: RunDir, stop: GracefulStop, extra_callbacks) -> dict:
    c, data, dist = fit.config, fit.prepared.data, fit.dist
    with distribute.deadline(c.distribute_timeout, "building the model on every replica"):
        model = build_and_compile(fit.prepared, fit.steps, distributed=dist.active)
    common = _pipeline_options(fit, label_copies=len(model.outputs))
    train_data = make_pipeline(
        c.pipeline, fit.x_train, fit.y_train, training=True, steps=fit.fixed_steps,
        initial_epoch=run.initial_epoch,
        preprocessor=Preprocessor(fit.prepared.preprocessing, tuple(data.input_shape[:2]),
                                  seed=c.seed), **common)
    val_x, val_y = (data.x_val, data.y_val) if data.x_val is not None else \
        (data.x_test, data.y_test)
    val_data = _evaluation_pipeline(fit, val_x, val_y, common)

    best_so_far = max((r["val_accuracy"] for r in run.history if "val_accuracy" in r),
                      default=None)
    nan_guard, throughput = NaNGuard(), Throughput(c.batch_size * c.steps_per_execution)
    best = BestCheckpoint(run.path / "best.keras", best=best_so_far,
                          monitor="val_" + metric_key(model, "accuracy"))
    backup = EpochBackup(run.backup, nan_guard)
    recorder = HistoryRecorder(
        run.path, f"{c.model} on {c.dataset} ({keras.backend.backend()})", run.history,
        main_output=model.output_names[0] if len(model.outputs) > 1 else None)
    callbacks = [stop, nan_guard, throughput, recorder, best, backup,
                 *(_tensorboard(run.path) if dist.is_chief else []), *extra_callbacks]
    verbose = c.verbose if c.verbose == "auto" else int(c.verbose)
    _announce(fit, run)
    try:
        with dist.keras_patches(model):
            model.fit(dist.dataset(train_data), epochs=c.epochs,
                      initial_epoch=run.initial_epoch, steps_per_epoch=fit.steps,
                      validation_data=dist.dataset(val_data), callbacks=callbacks,
                      verbose=verbose if dist.is_chief else 0,
                      shuffle=False)  # the pipelines shuffle
    except KeyboardInterrupt:
        _save_interrupted(model, run, fit.started, recorder, "interrupted")
        raise TrainingInterrupted(
            f"Interrupted. The model as it was is in {run.path / 'interrupted.keras'}; "
            f"completed epochs are backed up: continue with --resume {run.path}") from None
    except Exception:
        _save_interrupted(model, run, fit.started, recorder, "crashed")
        raise
    finally:
        stop.on_train_end()  # also after an exception: a signal now interrupts at once

    metrics = _metrics(fit, run, model, recorder, best, throughput)
    if nan_guard.where:
        epoch, batch = nan_guard.where
        metrics["status"] = f"failed: loss became NaN at epoch {epoch}, batch {batch}"
        artifacts.write_json(run.path / "metrics.json", metrics)
        raise TrainingError(
            f"The training loss became NaN at epoch {epoch}, batch {batch}; training stopped. "
            f"The last good state is kept: {run.path / 'best.keras'} (best epoch) and "
            f"{run.backup} (last completed epoch). Try a lower --lr or --clip-norm 1.0.")
    artifacts.save_model(model, run.path / "model.keras")
    backup.discard()  # only now: model.keras is there
    test_data = _evaluation_pipeline(fit, data.x_test, data.y_test, common)
    with dist.keras_patches(model):
        test = main_results(model, model.evaluate(dist.dataset(test_data), verbose=0,
                                                  return_dict=True))
    metrics.update({f"test_{k}": v for k, v in test.items()})
    artifacts.write_json(run.path / "metrics.json", metrics)
    if dist.is_chief:
        print(f"kerasnets: test accuracy {test['accuracy']:.4f} (top-5 {test['top5']:.4f}), "
              f"saved in {run.path}", flush=True)
    return {**metrics, "run_dir": str(run.kept)}


def _metrics(fit: Fit, run: RunDir, model, recorder, best, throughput) -> dict:
    """``metrics.json`` of a run that trained to its end (the test results come after)."""
    c, dist = fit.config, fit.dist
    return {"status": "finished",
            "epochs_completed": recorder.epochs_completed or run.initial_epoch,
            "backend": keras.backend.backend(), "model": c.model, "dataset": c.dataset,
            "trainable_params": kerasnets.count_params(model),
            "train_images_per_second": throughput.images_per_second,
            "wall_seconds": _wall_seconds(run, fit.started),
            "best_val_accuracy": best.best if math.isfinite(best.best) else None,
            "best_epoch": best.best_epoch or run.previous.get("best_epoch"),
            "validation_split": "val" if fit.prepared.data.x_val is not None else "test",
            "replicas": dist.replicas, "processes": dist.num_processes}


def _announce(fit: Fit, run: RunDir):
    c, dist = fit.config, fit.dist
    where = f" on {dist.replicas} replicas in {dist.num_processes} process(es)" \
        if dist.active else ""
    print(f"kerasnets: training {c.model} on {c.dataset} ({fit.prepared.data.source}) with "
          f"{keras.backend.backend()}{where}, {c.epochs} epochs x {fit.steps} steps of "
          f"{c.batch_size}; run directory {run.kept if dist.is_chief else '(chief only)'}"
          + (f" (resuming after epoch {run.initial_epoch})" if run.resuming else ""),
          flush=True)


def _pipeline_options(fit: Fit, label_copies: int) -> dict:
    c = fit.config
    return dict(num_classes=fit.prepared.data.num_classes, batch_size=fit.shard.batch,
                seed=c.seed, label_copies=label_copies, data_format=c.data_format,
                workers=c.workers, use_multiprocessing=c.use_multiprocessing)


def _evaluation_pipeline(fit: Fit, x, y, common):
    """Validation/test batches (no augmentation); padded and sharded when distributed."""
    weights = None
    if fit.dist.active:
        x, y, weights = pad_and_shard(x, y, fit.config.batch_size, fit.shard.index,
                                      fit.shard.count)
    evaluation = Preprocessor(fit.prepared.preprocessing.without_augmentation(),
                              tuple(x.shape[1:3]))
    return make_pipeline(fit.config.pipeline, x, y, training=False, preprocessor=evaluation,
                         sample_weight=weights, **common)


def _tensorboard(run_dir):
    """TensorBoard logs when TensorFlow and TensorBoard (which write them) are installed."""
    import importlib.util

    if not all(importlib.util.find_spec(m) for m in ("tensorflow", "tensorboard")):
        print("kerasnets: TensorBoard logs skipped (pip install tensorflow tensorboard)")
        return []
    return [keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs"), write_graph=False)]


def _wall_seconds(run: RunDir, started: float) -> float:
    return run.previous.get("wall_seconds", 0.0) + time.time() - started


def _save_interrupted(model, run: RunDir, started, recorder, status):
    try:
        artifacts.save_model(model, run.path / "interrupted.keras")
    finally:
        artifacts.write_json(run.path / "metrics.json", {
            **run.previous, "status": status, "epochs_completed": recorder.epochs_completed,
            "wall_seconds": _wall_seconds(run, started)})

