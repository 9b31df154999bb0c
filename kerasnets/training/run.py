"""``train``: one run of ``model.fit``, from settings to a complete run directory.

Everything that can be wrong with the settings or the data is found before the
first step (:func:`prepare`); during training, every completed epoch is backed
up, and an interruption (Ctrl-C, SIGTERM, an exception) saves the model as it
is before the process ends.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

import kerasnets
from kerasnets.data import Preprocessing, Preprocessor, channel_statistics, load_dataset
from kerasnets.data.pipelines import make_pipeline, pad_and_shard, steps_per_epoch
from kerasnets.registry import model_info
from kerasnets.training import artifacts, distribute
from kerasnets.training.callbacks import (BestCheckpoint, EpochBackup, GracefulStop,
                                          HistoryRecorder, NaNGuard, Throughput)
from kerasnets.training.config import PRECISIONS, TrainConfig
from kerasnets.training.errors import TrainingError, TrainingInterrupted
from kerasnets.training.optim import learning_rate, make_optimizer
from kerasnets.training.recipes import recipe_settings

AUX_LOSS_WEIGHT = 0.3  # GoogLeNet's auxiliary classifiers, as in the paper


def resolve_config(explicit: dict) -> TrainConfig:
    """Defaults < recipe < ``explicit`` settings. Needs the data set's native size
    for the modern recipe, hence a cheap peek at it."""
    base = TrainConfig()
    model = explicit.get("model", base.model)
    dataset = explicit.get("dataset", base.dataset)
    recipe = explicit.get("recipe", base.recipe)
    model_info(model)  # unknown name: ValueError with suggestions, before anything else
    native = _native_size(dataset, explicit)
    settings = recipe_settings(recipe, model, dataset, native)
    merged = {**base.to_dict(), **settings, **explicit}
    merged.setdefault("lr_reference_batch", None)
    if merged["lr_reference_batch"] is None:  # the batch size the recipe's lr is tuned for
        merged["lr_reference_batch"] = {**base.to_dict(), **settings}["batch_size"]
    merged["model_options"] = {**settings.get("model_options", {}),
                               **explicit.get("model_options", {})}
    return TrainConfig.from_dict(merged)


_NATIVE_SIZES = {"fashion_mnist": 28, "mnist": 28, "cifar10": 32, "cifar100": 32}


def _native_size(dataset, explicit):
    if dataset in _NATIVE_SIZES:
        return _NATIVE_SIZES[dataset]
    if dataset == "synthetic":
        return 32
    return explicit.get("image_size") or 224  # folder: no resize unless asked


def _check_settings(c: TrainConfig):
    problems = []
    if c.precision not in PRECISIONS:
        problems.append(f"--precision must be one of {PRECISIONS}")
    if c.use_multiprocessing and c.pipeline != "pydataset":
        problems.append("--use-multiprocessing needs --pipeline pydataset")
    if c.dataset == "folder" and not c.data_dir:
        problems.append("--dataset folder needs --data-dir DIR (one sub-folder per class)")
    if c.jit_compile not in ("auto", "true", "false"):
        problems.append("--jit-compile must be auto, true or false")
    options = model_info(c.model).options
    unknown = sorted(set(c.model_options) - set(options))
    if unknown:
        problems.append(f"{c.model} has no option(s) {', '.join(unknown)}; its options: "
                        + ", ".join(f"{k} (default {v!r})" for k, v in options.items()))
    if problems:
        raise TrainingError("Cannot train: " + "; ".join(problems) + ".")


@dataclass
class Prepared:
    config: TrainConfig
    data: object
    preprocessing: Preprocessing
    input_shape: tuple


def prepare(config: TrainConfig) -> Prepared:
    """Check the settings and load the data: every error before any training."""
    _check_settings(config)
    info = model_info(config.model)
    size = config.image_size
    if size is not None and size < info.min_input_size:
        raise TrainingError(
            f"--image-size {size} is too small for {config.model}: it needs at least "
            f"{info.min_input_size}x{info.min_input_size}. Use --image-size "
            f"{max(info.min_input_size, 32)} or more.")
    data = load_dataset(config.dataset, data_dir=config.data_dir, download=config.download,
                        val_fraction=config.val_fraction, seed=config.seed, image_size=size)
    height, width, channels = data.input_shape
    if min(height, width) < info.min_input_size:
        raise TrainingError(
            f"{config.dataset} images are {height}x{width}, too small for {config.model} "
            f"(needs {info.min_input_size}x{info.min_input_size}): add --image-size "
            f"{32 * math.ceil(info.min_input_size / 32)}.")
    channels = 3 if config.to_rgb else channels
    mean, std = (0.0,), (1.0,)
    if config.normalize == "standardize":
        mean, std = channel_statistics(data.x_train, channels)
    try:
        preprocessing = Preprocessing(
            channels=channels, normalize=config.normalize, mean=mean, std=std,
            crop_padding=config.crop_padding, flip=config.flip, randaugment=config.randaugment,
            random_erasing=config.random_erasing, mixup=config.mixup, cutmix=config.cutmix)
    except ValueError as error:
        raise TrainingError(f"Cannot train: {error}") from None
    shape = (height, width, channels)
    if config.data_format == "channels_first":
        shape = (channels, height, width)
    return Prepared(config, data, preprocessing, shape)


def effective_lr(c: TrainConfig) -> float:
    """``--lr``, scaled with the batch size when ``--lr-scaling linear``."""
    if c.lr_scaling == "linear" and c.lr_reference_batch:
        return c.lr * c.batch_size / c.lr_reference_batch
    return c.lr


def build_and_compile(prepared: Prepared, steps: int, distributed=False):
    c = prepared.config
    keras.config.set_dtype_policy(c.precision)
    model = kerasnets.create_model(c.model, num_classes=prepared.data.num_classes,
                                   input_shape=prepared.input_shape,
                                   data_format=c.data_format, **c.model_options)
    schedule = learning_rate(c.schedule, lr=effective_lr(c), steps_per_epoch=steps,
                             epochs=c.epochs, warmup_epochs=c.warmup_epochs,
                             step_epochs=c.step_epochs, step_gamma=c.step_gamma)
    optimizer = make_optimizer(c.optimizer, learning_rate=schedule, momentum=c.momentum,
                               nesterov=c.nesterov, weight_decay=c.weight_decay,
                               clip_norm=c.clip_norm)
    outputs = len(model.outputs)
    # Distributed evaluation pads with zero-weight examples: average over the real ones.
    reduction = "mean_with_sample_weight" if distributed else "sum_over_batch_size"
    loss = keras.losses.CategoricalCrossentropy(from_logits=True,
                                                label_smoothing=c.label_smoothing,
                                                reduction=reduction)
    metrics = [keras.metrics.CategoricalAccuracy(name="accuracy"),
               keras.metrics.TopKCategoricalAccuracy(k=5, name="top5")]
    if distributed:  # the loss tracker counts the padding: this is the exact loss
        metrics.append(keras.metrics.CategoricalCrossentropy(
            from_logits=True, label_smoothing=c.label_smoothing, name="xent"))
    jit = {"auto": "auto", "true": True, "false": False}[c.jit_compile]
    metrics = [metrics] + [[]] * (outputs - 1) if outputs > 1 else metrics
    model.compile(optimizer=optimizer,
                  loss=[loss] * outputs if outputs > 1 else loss,
                  loss_weights=[1.0] + [AUX_LOSS_WEIGHT] * (outputs - 1) if outputs > 1 else None,
                  # only weighted_metrics see the sample weights of the padding
                  **{"weighted_metrics" if distributed else "metrics": metrics},
                  jit_compile=jit, steps_per_execution=c.steps_per_execution)
    return model


def _metric_key(model, metric):
    """Log key of ``metric`` on the main output (prefixed when there are several)."""
    return metric if len(model.outputs) == 1 else f"{model.output_names[0]}_{metric}"


def train(config: TrainConfig, *, run_dir=None, callbacks=()) -> dict:
    """Train ``config``; with ``run_dir`` set, continue that (interrupted) run.

    Returns the contents of ``metrics.json``. Raises :class:`TrainingError` for
    settings or data that cannot work, :class:`TrainingInterrupted` on Ctrl-C.
    With ``--distribute data`` every process calls this; only the chief keeps
    what it writes (the others write to a temporary directory, removed after).
    """
    started = time.time()
    dist = distribute.setup(config)
    try:
        with dist.scope():
            return _train(config, dist, run_dir, callbacks, started)
    finally:
        if dist.jax_distribution is not None:
            keras.distribution.set_distribution(None)


def _train(config, dist, run_dir, callbacks, started):
    keras.utils.set_random_seed(config.seed)
    prepared = prepare(config)
    data, c = prepared.data, config
    dist.check_batch_size(c.batch_size)
    shard = dist.shard(c.batch_size)
    x_train = data.x_train[shard.index::shard.count]
    y_train = data.y_train[shard.index::shard.count]
    # Data parallel: only full global batches, streamed across epochs.
    fixed_steps = c.steps_per_epoch or (len(data.x_train) // c.batch_size
                                        if dist.active else None)
    steps = steps_per_epoch(len(data.x_train), c.batch_size, fixed_steps)

    resuming = run_dir is not None
    resume_dir = Path(run_dir) if resuming else None
    if dist.is_chief:
        run_dir = resume_dir or artifacts.new_run_dir(c.output_dir, c.model, c.dataset,
                                                      c.run_name)
    else:  # the chief keeps the run; the others work in a scratch directory
        run_dir = Path(tempfile.mkdtemp(prefix=f"kerasnets-process{dist.process_id}-"))
        for name in ("backup", "history.csv", "metrics.json") if resuming else ():
            source = resume_dir / name  # the chief's run, on storage every host sees
            if source.is_dir():
                shutil.copytree(source, run_dir / name)
            elif source.exists():
                shutil.copy2(source, run_dir / name)
    try:
        return _fit(prepared, dist, shard, x_train, y_train, fixed_steps, steps, run_dir,
                    resuming, callbacks, started, resume_dir or run_dir)
    finally:
        if not dist.is_chief:
            shutil.rmtree(run_dir, ignore_errors=True)


def _fit(prepared, dist, shard, x_train, y_train, fixed_steps, steps, run_dir, resuming,
         callbacks, started, kept_dir):
    data, c = prepared.data, prepared.config
    backup_dir = run_dir / "backup"
    state = EpochBackup.read_metadata(backup_dir) if resuming else None
    initial_epoch = state["epoch"] if state else 0
    previous = artifacts.read_json(run_dir / "metrics.json") \
        if (run_dir / "metrics.json").exists() else {}
    if not resuming:
        artifacts.write_json(run_dir / "config.json", {
            "settings": c.to_dict(), "preprocessing": prepared.preprocessing.to_dict(),
            "class_names": data.class_names, "data_source": data.source,
            "input_shape": list(prepared.input_shape), "num_classes": data.num_classes,
            "backend": keras.backend.backend(), "effective_lr": effective_lr(c),
            "distribution": dist.describe(), "versions": artifacts.package_versions(),
            "machine": artifacts.machine_description()})

    with distribute.deadline(c.distribute_timeout, "building the model on every replica"):
        model = dist.adapt_model(build_and_compile(prepared, steps, distributed=dist.active))
    image_size = tuple(data.input_shape[:2])
    label_copies = len(model.outputs)
    common = dict(num_classes=data.num_classes, batch_size=shard.batch, seed=c.seed,
                  label_copies=label_copies, data_format=c.data_format, workers=c.workers,
                  use_multiprocessing=c.use_multiprocessing)
    train_data = make_pipeline(
        c.pipeline, x_train, y_train, training=True, steps=fixed_steps,
        initial_epoch=initial_epoch,
        preprocessor=Preprocessor(prepared.preprocessing, image_size, seed=c.seed), **common)
    val_x, val_y = (data.x_val, data.y_val) if data.x_val is not None else \
        (data.x_test, data.y_test)
    val_data = _evaluation_pipeline(val_x, val_y, prepared, dist, shard, common)

    history_rows = artifacts.read_history_csv(run_dir / "history.csv") if resuming else []
    monitor = "val_" + _metric_key(model, "accuracy")
    best_so_far = max((r["val_accuracy"] for r in history_rows if "val_accuracy" in r),
                      default=None)
    nan_guard, throughput = NaNGuard(), Throughput(c.batch_size * c.steps_per_execution)
    best = BestCheckpoint(run_dir / "best.keras", monitor=monitor, best=best_so_far)
    backup = EpochBackup(str(backup_dir))
    recorder = HistoryRecorder(run_dir, f"{c.model} on {c.dataset} ({keras.backend.backend()})",
                               history_rows, main_output=model.output_names[0]
                               if len(model.outputs) > 1 else None)
    stop = GracefulStop()
    all_callbacks = [stop, nan_guard, throughput, recorder, best, backup,
                     *(_tensorboard(run_dir) if dist.is_chief else []), *callbacks]
    verbose = c.verbose if c.verbose == "auto" else int(c.verbose)
    if not dist.is_chief:
        verbose = 0
    where = f" on {dist.replicas} replicas in {dist.num_processes} process(es)" \
        if dist.active else ""
    print(f"kerasnets: training {c.model} on {c.dataset} ({data.source}) with "
          f"{keras.backend.backend()}{where}, {c.epochs} epochs x {steps} steps of "
          f"{c.batch_size}; run directory {kept_dir if dist.is_chief else '(chief only)'}"
          + (f" (resuming after epoch {initial_epoch})" if resuming else ""), flush=True)
    try:
        with stop:
            model.fit(dist.dataset(train_data), epochs=c.epochs, initial_epoch=initial_epoch,
                      steps_per_epoch=steps, validation_data=dist.dataset(val_data),
                      callbacks=all_callbacks, verbose=verbose,
                      shuffle=False)  # the pipelines shuffle
    except KeyboardInterrupt:
        _save_interrupted(model, run_dir, previous, started, recorder, "interrupted")
        raise TrainingInterrupted(
            f"Interrupted. The model as it was is in {run_dir / 'interrupted.keras'}; "
            f"completed epochs are backed up: continue with --resume {run_dir}") from None
    except Exception:
        _save_interrupted(model, run_dir, previous, started, recorder, "crashed")
        raise
    finally:
        keras.config.set_dtype_policy("float32")

    completed = recorder.rows[-1]["epoch"] if recorder.rows else initial_epoch
    metrics = {"status": "finished", "epochs_completed": completed,
               "backend": keras.backend.backend(), "model": c.model, "dataset": c.dataset,
               "trainable_params": kerasnets.count_params(model),
               "train_images_per_second": throughput.images_per_second,
               "wall_seconds": previous.get("wall_seconds", 0.0) + time.time() - started,
               "best_val_accuracy": best.best if math.isfinite(best.best) else None,
               "best_epoch": best.best_epoch or previous.get("best_epoch"),
               "validation_split": "val" if data.x_val is not None else "test",
               "replicas": dist.replicas, "processes": dist.num_processes}
    if nan_guard.where:
        epoch, batch = nan_guard.where
        metrics["status"] = f"failed: loss became NaN at epoch {epoch}, batch {batch}"
        artifacts.write_json(run_dir / "metrics.json", metrics)
        raise TrainingError(
            f"The training loss became NaN at epoch {epoch}, batch {batch}; training stopped. "
            f"The last good state is kept: {run_dir / 'best.keras'} (best epoch) and "
            f"{backup_dir} (last completed epoch). Try a lower --lr or --clip-norm 1.0.")
    artifacts.save_model(model, run_dir / "model.keras")
    test = _evaluate(model, _evaluation_pipeline(data.x_test, data.y_test, prepared, dist,
                                                 shard, common), dist)
    metrics.update({f"test_{k}": v for k, v in test.items()})
    artifacts.write_json(run_dir / "metrics.json", metrics)
    if dist.is_chief:
        print(f"kerasnets: test accuracy {test['accuracy']:.4f} (top-5 {test['top5']:.4f}), "
              f"saved in {run_dir}", flush=True)
    return {**metrics, "run_dir": str(kept_dir)}


def _evaluation_pipeline(x, y, prepared, dist, shard, common):
    """Validation/test batches (no augmentation); padded and sharded when distributed."""
    weights = None
    if dist.active:
        x, y, weights = pad_and_shard(x, y, prepared.config.batch_size, shard.index,
                                      shard.count)
    evaluation = Preprocessor(prepared.preprocessing.without_augmentation(),
                              tuple(x.shape[1:3]))
    return make_pipeline(prepared.config.pipeline, x, y, training=False,
                         preprocessor=evaluation, sample_weight=weights, **common)


def _evaluate(model, data, dist=distribute.NONE) -> dict:
    results = model.evaluate(dist.dataset(data), verbose=0, return_dict=True)
    exact_loss = _metric_key(model, "xent")
    return {"loss": float(results.get(exact_loss, results["loss"])),
            "accuracy": float(results[_metric_key(model, "accuracy")]),
            "top5": float(results[_metric_key(model, "top5")])}


def _tensorboard(run_dir):
    """TensorBoard logs when TensorFlow and TensorBoard (which write them) are installed."""
    import importlib.util

    if not all(importlib.util.find_spec(m) for m in ("tensorflow", "tensorboard")):
        print("kerasnets: TensorBoard logs skipped (pip install tensorflow tensorboard)")
        return []
    return [keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs"), write_graph=False)]


def _save_interrupted(model, run_dir, previous, started, recorder, status):
    try:
        artifacts.save_model(model, run_dir / "interrupted.keras")
    finally:
        completed = recorder.rows[-1]["epoch"] if recorder.rows else 0
        artifacts.write_json(run_dir / "metrics.json", {
            **previous, "status": status, "epochs_completed": completed,
            "wall_seconds": previous.get("wall_seconds", 0.0) + time.time() - started})


def resume_config(run_dir, host_settings=None) -> TrainConfig:
    """The settings of the run in ``run_dir`` (for ``--resume``), with this host's place
    in a cluster (``host_settings``) as given now."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise TrainingError(f"Cannot resume {run_dir}: no config.json there. --resume takes "
                            f"a run directory made by train.py.")
    return TrainConfig.from_dict({**artifacts.read_json(path)["settings"],
                                  **(host_settings or {})})

