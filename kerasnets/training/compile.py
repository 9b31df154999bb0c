"""Building and compiling a classifier, and reading its metrics back: one helper for
the trainer and for ``evaluate``, so both compute and name the same things."""

from __future__ import annotations

import contextlib

import keras

import kerasnets
from kerasnets.training.config import TrainConfig
from kerasnets.training.optim import learning_rate, make_optimizer
from kerasnets.training.phases import scale_learning_rate

AUX_LOSS_WEIGHT = 0.3  # GoogLeNet's auxiliary classifiers, as in the paper
JIT = {"auto": "auto", "true": True, "false": False}


@contextlib.contextmanager
def dtype_policy(name):
    """Keras' global dtype policy set to ``name`` inside, and the previous one after."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def effective_lr(c: TrainConfig) -> float:
    """``--lr``, scaled with the batch size when ``--lr-scaling linear``."""
    if c.lr_scaling == "linear" and c.lr_reference_batch:
        return c.lr * c.batch_size / c.lr_reference_batch
    return c.lr


def compile_classifier(model, *, optimizer=None, label_smoothing=0.0, distributed=False,
                       **compile_options):
    """Cross-entropy on logits, top-1 and top-5 accuracy on the main output (the first);
    auxiliary outputs add their loss with :data:`AUX_LOSS_WEIGHT`.

    ``distributed``: evaluation batches are padded with zero-weight examples, so the
    loss averages over the real ones, the metrics see the sample weights, and an exact
    cross-entropy (``xent``) is added because the loss tracker counts the padding.
    """
    outputs = len(model.outputs)
    reduction = "mean_with_sample_weight" if distributed else "sum_over_batch_size"
    loss = keras.losses.CategoricalCrossentropy(from_logits=True,
                                                label_smoothing=label_smoothing,
                                                reduction=reduction)
    metrics = [keras.metrics.CategoricalAccuracy(name="accuracy"),
               keras.metrics.TopKCategoricalAccuracy(k=5, name="top5")]
    if distributed:
        metrics.append(keras.metrics.CategoricalCrossentropy(
            from_logits=True, label_smoothing=label_smoothing, name="xent"))
    if outputs > 1:
        loss, metrics = [loss] * outputs, [metrics] + [[]] * (outputs - 1)
        compile_options["loss_weights"] = [1.0] + [AUX_LOSS_WEIGHT] * (outputs - 1)
    if optimizer is not None:
        compile_options["optimizer"] = optimizer
    model.compile(loss=loss,
                  # only weighted_metrics see the sample weights of the padding
                  **{"weighted_metrics" if distributed else "metrics": metrics},
                  **compile_options)
    return model


def metric_key(model, metric):
    """Log key of ``metric`` on the main output (prefixed when there are several)."""
    return metric if len(model.outputs) == 1 else f"{model.output_names[0]}_{metric}"


def main_results(model, results: dict) -> dict:
    """Loss, top-1 and top-5 of ``model.evaluate(..., return_dict=True)`` (the exact
    cross-entropy as the loss when there is one: see :func:`compile_classifier`)."""
    return {"loss": float(results.get(metric_key(model, "xent"), results["loss"])),
            "accuracy": float(results[metric_key(model, "accuracy")]),
            "top5": float(results[metric_key(model, "top5")])}


def build_classifier(prepared):
    """The model of ``prepared.config`` for the data set's classes, fresh weights."""
    c = prepared.config
    return kerasnets.create_model(c.model, num_classes=prepared.data.num_classes,
                                  input_shape=prepared.input_shape,
                                  data_format=c.data_format, **c.model_options)


def compile_for_training(model, c: TrainConfig, steps: int, *, epochs=None,
                         distributed=False, slow_variables=(), slow_multiplier=1.0):
    """Compile ``model`` with the optimizer and schedule of ``c`` over ``epochs`` (default
    all) of ``steps`` steps; ``slow_variables`` learn at ``slow_multiplier`` x the rate
    (fine-tuning's pretrained layers, see :mod:`kerasnets.training.phases`)."""
    schedule = learning_rate(c.schedule, lr=effective_lr(c), steps_per_epoch=steps,
                             epochs=(c.schedule_epochs or c.epochs) if epochs is None else epochs,
                             warmup_epochs=c.warmup_epochs, step_epochs=c.step_epochs,
                             step_gamma=c.step_gamma)
    optimizer = make_optimizer(c.optimizer, learning_rate=schedule, momentum=c.momentum,
                               nesterov=c.nesterov, weight_decay=c.weight_decay,
                               clip_norm=c.clip_norm)
    scale_learning_rate(optimizer, slow_variables, slow_multiplier)
    return compile_classifier(model, optimizer=optimizer, label_smoothing=c.label_smoothing,
                              distributed=distributed, jit_compile=JIT[c.jit_compile],
                              steps_per_execution=c.steps_per_execution)


def build_and_compile(prepared, steps: int, distributed=False):
    """The model of ``prepared.config``, compiled with its optimizer and schedule over
    ``steps`` steps per epoch. The trainer calls it (and fits) inside
    ``dtype_policy(config.precision)``."""
    model = build_classifier(prepared)
    return compile_for_training(model, prepared.config, steps, distributed=distributed)
