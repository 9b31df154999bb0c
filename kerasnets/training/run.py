"""``train``: one run of ``model.fit``, from settings to a complete run directory.

Everything that can be wrong with the settings or the data is found before the
first step (:func:`~kerasnets.training.prepare.prepare`), and an output directory
that cannot be written (or has no room for the checkpoints) before the data is
loaded; during training, every completed epoch and, within long epochs, every
``--backup-every`` is backed up, and an interruption (Ctrl-C, SIGTERM, an exception)
backs up the step it stops at and saves the model as it is before the process ends.

The backup is removed only once ``model.keras`` and a ``metrics.json`` that says
"finished" are written: a kill or a signal at any moment leaves a run that
``--resume`` continues doing only what is left (the rest of an epoch, the epochs
after it, or only the final save and the test evaluation). ``--resume`` of a finished
run is refused, and a run being trained is locked (``train.lock``).
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass

import keras
import numpy as np

import kerasnets
from kerasnets.data import Preprocessor, folders
from kerasnets.data.pipelines import make_pipeline, pad_and_shard, steps_per_epoch
from kerasnets.training import artifacts, distribute
from kerasnets.training.callbacks import (BestCheckpoint, EpochBackup, GracefulStop,
                                          HistoryRecorder, NaNGuard, Throughput, TimeLimit,
                                          parse_backup_every, parse_time_limit)
from kerasnets.training.compile import dtype_policy, effective_lr, main_results, metric_key
from kerasnets.training.config import TrainConfig
from kerasnets.training.errors import (LossDiverged, OutputError, TrainingError,
                                       TrainingInterrupted, storage_problem)
from kerasnets.training.finetune import FineTuning
from kerasnets.training.phases import phase_ranges
from kerasnets.training.prepare import Prepared, prepare
from kerasnets.training.rundir import RunDir, check_writable, run_directory

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
    tuning: FineTuning | None = None  # builds and compiles the model (--weights, phases)
    model: keras.Model | None = None  # built before the run directory, for a new run

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
    try:
        with stop:
            dist = distribute.setup(config)
            try:
                with dist.scope():
                    return _train(config, dist, run_dir, stop, callbacks, started)
            finally:
                if dist.jax_distribution is not None:
                    keras.distribution.set_distribution(None)
    except KeyboardInterrupt:  # from training on, _fit says what is kept
        raise TrainingInterrupted("Interrupted before training started; nothing was "
                                  "trained" + (f" and {run_dir} is as it was."
                                               if run_dir else ".")) from None


def _train(config, dist, resume_dir, stop, callbacks, started):
    if dist.is_chief and resume_dir is None:  # before loading anything: a run that
        check_writable(config.output_dir, create=True)  # cannot be kept does not start
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
    fit.tuning = FineTuning(c, fit.steps, distributed=dist.active)
    if resume_dir is None:  # a source or --freeze that does not fit: no run directory
        with dtype_policy(c.precision), distribute.deadline(
                c.distribute_timeout, "building the model on every replica"):
            fit.model = fit.tuning.build(prepared)
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
            "skipped_images": _skipped(data),
            "input_shape": list(fit.prepared.input_shape), "num_classes": data.num_classes,
            "backend": keras.backend.backend(), "effective_lr": effective_lr(c),
            "distribution": dist.describe(), "versions": artifacts.package_versions(),
            "machine": artifacts.machine_description()}


def _fit(fit: Fit, run: RunDir, stop: GracefulStop, extra_callbacks) -> dict:
    c, data, dist = fit.config, fit.prepared.data, fit.dist
    tuning, model = fit.tuning, fit.model
    if model is None:  # resuming: the backup has the weights, unless there is none yet
        restored = run.initial_epoch or run.initial_step or run.trained_model
        with distribute.deadline(c.distribute_timeout, "building the model on every replica"):
            model = tuning.build(fit.prepared, load=not restored)
    if dist.is_chief:
        _check_free_space(run.path, model)
        if tuning.loaded is not None:  # config.json says which weights came from where
            record = artifacts.read_json(run.path / "config.json")
            artifacts.write_json(run.path / "config.json",
                                 {**record, "weights_source": tuning.loaded.to_dict()})
    common = _pipeline_options(fit, label_copies=len(model.outputs))
    val_x, val_y = (data.x_val, data.y_val) if data.x_val is not None else \
        (data.x_test, data.y_test)
    val_data = _evaluation_pipeline(fit, val_x, val_y, common)

    best_so_far = max((r["val_accuracy"] for r in run.history if "val_accuracy" in r),
                      default=None)
    nan_guard, throughput = NaNGuard(), Throughput(c.batch_size * c.steps_per_execution)
    best = BestCheckpoint(run.path / "best.keras", best=best_so_far,
                          monitor="val_" + metric_key(model, "accuracy"))
    every, stop_backup = c.backup_every, stop
    if dist.num_processes > 1:  # every process must save at the same step, or none
        stop_backup = None
        if parse_backup_every(every)[0] == "minutes":
            every = "0"
            if dist.is_chief:
                print("kerasnets: --backup-every in minutes is off with several processes "
                      "(they would back up at different steps); use --backup-every "
                      "Nsteps", flush=True)
    backup = EpochBackup(run.backup, nan_guard, every=every, steps=fit.steps,
                         stop=stop_backup, step_offset=run.initial_step)
    tuning.start(model, run, backup)  # compiled for the phase its backup was written in
    recorder = HistoryRecorder(
        run.path, f"{c.model} on {c.dataset} ({keras.backend.backend()})", run.history,
        main_output=model.output_names[0] if len(model.outputs) > 1 else None,
        split=run.split, steps=fit.steps)
    limit = TimeLimit(parse_time_limit(c.time_limit), fit.steps,
                      spent=run.previous.get("wall_seconds", 0.0)) if c.time_limit else None
    # the backup before the stop: a requested stop first backs up the step it stops at
    callbacks = [nan_guard, throughput, recorder, best, backup, stop, *filter(None, [limit]),
                 *(_tensorboard(run.path) if dist.is_chief else []), *extra_callbacks]
    verbose = c.verbose if c.verbose == "auto" else int(c.verbose)
    _announce(fit, run)
    # only the end of the run left (model.keras, the test evaluation): _finish restores
    trained = run.initial_epoch >= c.epochs or run.trained_model is not None
    try:
        with dist.keras_patches(model):
            for train_data, fit_range in () if trained else _fit_plan(fit, run, common):
                if limit is not None and limit.reached:
                    break  # out of time in the rest of a split epoch: no more epochs
                tuning.enter(model, fit_range["initial_epoch"], backup)  # --head-epochs
                model.fit(dist.dataset(train_data), **fit_range,
                          validation_data=dist.dataset(val_data), callbacks=callbacks,
                          verbose=verbose if dist.is_chief else 0,
                          shuffle=False)  # the pipelines shuffle
    except KeyboardInterrupt:
        saved = backup.started and _save_interrupted(model, run, fit.started, recorder,
                                                     "interrupted")
        if not backup.started:  # the model holds nothing trained: keep what is there
            _record_status(run, fit.started, recorder, "interrupted")
        state = EpochBackup.read_metadata(run.backup)
        where = "no epoch was completed yet" if state is None else \
            f"the run is backed up after {_position(state)}"
        model_kept = f" (the model as it was is in {run.kept / 'interrupted.keras'})" \
            if saved else ""
        raise TrainingInterrupted(f"Interrupted: {where}{model_kept}; continue with "
                                  f"--resume {run.kept}") from None
    except Exception as error:
        problem = storage_problem(error, run.path)
        if problem:
            _record_status(run, fit.started, recorder, f"failed: {problem}")
            raise _storage_error(run, problem, error) from None
        _save_interrupted(model, run, fit.started, recorder, "crashed")
        raise
    finally:
        stop.on_train_end()  # also after an exception: a signal now interrupts at once

    metrics = _metrics(fit, run, model, recorder, best, throughput, limit)
    if nan_guard.where:
        epoch, batch = nan_guard.where
        metrics["status"] = f"{LossDiverged.STATUS} at epoch {epoch}, batch {batch}"
        artifacts.write_json(run.path / "metrics.json", metrics)
        raise LossDiverged(
            f"The training loss became NaN at epoch {epoch}, batch {batch}; training stopped. "
            f"The last good state is kept: {run.path / 'best.keras'} (best epoch) and "
            f"{run.backup} (last completed epoch). Try a lower --lr or --clip-norm 1.0.",
            run_dir=str(run.path))
    return _finish(fit, run, model, metrics, backup, stop, common, restore=trained)


def _fit_plan(fit: Fit, run: RunDir, common):
    """``(training pipeline, fit arguments)`` of each ``model.fit`` left to do: after a
    mid-epoch backup, first the rest of that epoch (a pipeline starting at its next
    batch), then the epochs after it."""
    c, epoch, step = fit.config, run.initial_epoch, run.initial_step

    def pipeline(initial_epoch, initial_step=0):
        return make_pipeline(
            c.pipeline, fit.x_train, fit.y_train, training=True, steps=fit.fixed_steps,
            initial_epoch=initial_epoch, initial_step=initial_step,
            preprocessor=Preprocessor(fit.prepared.preprocessing,
                                      tuple(fit.prepared.data.input_shape[:2]), seed=c.seed),
            **common)

    if step:
        yield pipeline(epoch, step), dict(initial_epoch=epoch, epochs=epoch + 1,
                                          steps_per_epoch=fit.steps - step)
        epoch += 1
    for first, end in phase_ranges(epoch, c.epochs, c.head_epochs):  # one fit per phase
        yield pipeline(first), dict(initial_epoch=first, epochs=end, steps_per_epoch=fit.steps)


def _finish(fit: Fit, run: RunDir, model, metrics, backup, stop, common,
            restore=False) -> dict:
    """After training: ``model.keras``, the test evaluation, ``metrics.json``; only then is
    the backup removed. A signal or a full disk here keeps the trained state (the backup
    of the last epoch) and records "interrupted after training": --resume does the rest."""
    c, data, dist = fit.config, fit.prepared.data, fit.dist
    final = run.path / "model.keras"
    try:
        if restore and run.trained_model is not None:
            model.load_weights(str(run.trained_model))
        elif restore:
            backup.restore(model)
        if run.trained_model is None:
            artifacts.save_model(model, final)
        if stop.requested:  # a signal during the last epoch's validation
            raise KeyboardInterrupt
        test_data = _evaluation_pipeline(fit, data.x_test, data.y_test, common)
        with dist.keras_patches(model):
            test = main_results(model, model.evaluate(dist.dataset(test_data), verbose=0,
                                                      return_dict=True))
        metrics.update({f"test_{k}": v for k, v in test.items()})
        artifacts.write_json(run.path / "metrics.json", metrics)
    except KeyboardInterrupt:
        try:
            artifacts.write_json(run.path / "metrics.json", {
                **metrics, "status": "interrupted after training",
                "wall_seconds": _wall_seconds(run, fit.started)})
        except (KeyboardInterrupt, TrainingError):
            pass  # the backup (of the last epoch) is enough to resume
        raise TrainingInterrupted(
            f"Interrupted after training: all {metrics['epochs_completed']} epochs are "
            f"trained and kept ({'model.keras and ' if final.exists() else ''}the backup); "
            f"the test evaluation is left: finish with --resume {run.kept}") from None
    except Exception as error:
        problem = storage_problem(error, run.path)
        if not problem:
            raise
        _record_status(run, fit.started, None, f"failed: {problem}", metrics)
        raise _storage_error(run, problem, error) from None
    backup.discard()  # only now: model.keras and metrics.json say the run is complete
    if dist.is_chief:
        print(f"kerasnets: test accuracy {test['accuracy']:.4f} (top-5 {test['top5']:.4f}), "
              f"saved in {run.kept}", flush=True)
    return {**metrics, "run_dir": str(run.kept)}


def _position(state) -> str:
    """Where a backup stands, in words."""
    if state.get("step"):
        return f"step {state['step']} of epoch {state['epoch'] + 1}"
    return f"epoch {state['epoch']}"


def _storage_error(run: RunDir, problem, error) -> OutputError:
    state = EpochBackup.read_metadata(run.backup)
    kept = f"the backup after {_position(state)} is intact" if state else "nothing is lost"
    path = getattr(error, "path", None) or getattr(error, "filename", None) or run.path
    return OutputError(f"Cannot write {path}: {problem}. Training stopped; {kept}. Free "
                       f"space (or fix permissions), then continue with --resume {run.kept}",
                       path, problem)


def _check_free_space(path, model):
    """Refuse to start when the disk cannot hold the run's checkpoints (model.keras,
    best.keras, the backup and its next copy, each with the optimizer's state)."""
    weights = sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize
                  for v in model.weights)
    needed = 4 * 3 * weights + (16 << 20)  # 3: weights and two optimizer slots at most
    free = shutil.disk_usage(path).free
    if free < needed:
        raise OutputError(
            f"Not enough space in {path}: {free / 2**20:.0f} MiB free, the checkpoints of "
            f"this run need about {needed / 2**20:.0f} MiB. Free space or use another "
            f"--output-dir.", path, "no space left on device")


def _metrics(fit: Fit, run: RunDir, model, recorder, best, throughput, limit=None) -> dict:
    """``metrics.json`` of a run that trained to its end or to its ``--time-limit`` (the
    test results come after)."""
    c, dist = fit.config, fit.dist
    timed = {} if limit is None else {
        "time_limit_seconds": limit.seconds, "time_limit_reached": limit.reached,
        "epochs_reached": run.initial_epoch + run.initial_step / fit.steps
        + limit.epochs_reached}
    return {**timed, "status": "finished",
            "epochs_completed": recorder.epochs_completed or run.initial_epoch,
            "backend": keras.backend.backend(), "model": c.model, "dataset": c.dataset,
            "trainable_params": kerasnets.count_params(model),
            "train_images_per_second": throughput.images_per_second
            or run.previous.get("train_images_per_second"),
            "wall_seconds": _wall_seconds(run, fit.started),
            "best_val_accuracy": best.best if math.isfinite(best.best) else None,
            "best_epoch": best.best_epoch or run.previous.get("best_epoch"),
            "validation_split": "val" if fit.prepared.data.x_val is not None else "test",
            "replicas": dist.replicas, "processes": dist.num_processes,
            "skipped_images": _skipped(fit.prepared.data)}  # with those met in training


def _skipped(data) -> dict:
    """``{path: what is wrong}`` of the image files a folder data set left out."""
    return {str(path): why for path, why in sorted(data.skipped_images.items(),
                                                   key=lambda item: str(item[0]))}


def _announce(fit: Fit, run: RunDir):
    c, dist = fit.config, fit.dist
    where = f" on {dist.replicas} replicas in {dist.num_processes} process(es)" \
        if dist.active else ""
    print(f"kerasnets: training {c.model} on {c.dataset} ({fit.prepared.data.source}) with "
          f"{keras.backend.backend()}{where}, {c.epochs} epochs x {fit.steps} steps of "
          f"{c.batch_size}; run directory {run.kept if dist.is_chief else '(chief only)'}"
          + (" (resuming after " + _position({"epoch": run.initial_epoch,
                                              "step": run.initial_step}) + ")"
             if run.resuming else ""),
          flush=True)
    if fit.prepared.data.skipped_images:
        print(f"kerasnets: {folders.skipped_note(fit.prepared.data.skipped_images)}",
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


def _save_interrupted(model, run: RunDir, started, recorder, status) -> bool:
    """``interrupted.keras`` and ``metrics.json`` after an interruption or a crash. A
    second Ctrl-C meanwhile skips what is left; the backup is never touched here.
    Returns whether ``interrupted.keras`` was saved."""
    saved = False
    try:
        artifacts.save_model(model, run.path / "interrupted.keras")
        saved = True
    except KeyboardInterrupt:
        pass
    except Exception as error:  # a full disk: the backup is what matters
        if not storage_problem(error, run.path):
            print(f"kerasnets: could not save interrupted.keras: {error}", flush=True)
    _record_status(run, started, recorder, status)
    return saved


def _record_status(run: RunDir, started, recorder, status, metrics=None):
    """``metrics.json`` saying why the run stopped, as far as the disk and the user allow."""
    try:
        artifacts.write_json(run.path / "metrics.json", {
            **run.previous, **(metrics or {}), "status": status,
            "epochs_completed": (recorder.epochs_completed if recorder else None)
            or (metrics or {}).get("epochs_completed") or run.initial_epoch,
            "wall_seconds": _wall_seconds(run, started)})
    except (KeyboardInterrupt, TrainingError):
        pass
