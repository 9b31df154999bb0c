"""Optimisers and learning-rate schedules, all stock Keras except one-cycle.

Schedules count optimizer steps, so a resumed run (whose optimizer iteration
counter is restored) continues on the same curve.
"""

from __future__ import annotations

import math

import keras

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")


@keras.saving.register_keras_serializable(package="kerasnets")
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Smith's one-cycle policy as torch's ``OneCycleLR`` (cosine annealing):
    from ``max_lr / div_factor`` up to ``max_lr`` over ``pct_start`` of the
    steps, then down to ``max_lr / (div_factor * final_div_factor)``."""

    def __init__(self, max_lr, total_steps, pct_start=0.3, div_factor=25.0,
                 final_div_factor=1e4):
        self.max_lr, self.total_steps = float(max_lr), int(total_steps)
        self.pct_start, self.div_factor = float(pct_start), float(div_factor)
        self.final_div_factor = float(final_div_factor)

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        up = max(self.pct_start * self.total_steps - 1.0, 1.0)
        down = max(self.total_steps - 1.0 - up, 1.0)
        start = self.max_lr / self.div_factor
        end = start / self.final_div_factor

        def anneal(lo, hi, fraction):  # cosine from lo to hi
            fraction = ops.clip(fraction, 0.0, 1.0)
            return hi + (lo - hi) * (1.0 + ops.cos(math.pi * fraction)) / 2.0

        return ops.where(step <= up, anneal(start, self.max_lr, step / up),
                         anneal(self.max_lr, end, (step - up) / down))

    def get_config(self):
        return dict(max_lr=self.max_lr, total_steps=self.total_steps, pct_start=self.pct_start,
                    div_factor=self.div_factor, final_div_factor=self.final_div_factor)


def learning_rate(schedule, *, lr, steps_per_epoch, epochs, warmup_epochs=0.0,
                  step_epochs=30, step_gamma=0.1):
    """A float or a ``LearningRateSchedule`` over ``epochs * steps_per_epoch`` steps
    (``epochs`` may be fractional: a schedule that ends within an epoch)."""
    total = max(1, int(round(epochs * steps_per_epoch)))
    warmup = int(round(warmup_epochs * steps_per_epoch))
    if warmup and schedule not in ("cosine", "constant"):
        raise ValueError(f"--warmup-epochs works with the cosine and constant schedules, "
                         f"not {schedule!r}.")
    if schedule == "constant":
        if not warmup:
            return lr
        # cosine "decay" to the same rate = warm-up, then constant
        return keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps=max(1, total - warmup), alpha=1.0, warmup_target=lr,
            warmup_steps=warmup)
    if schedule == "step":
        boundaries = list(range(step_epochs * steps_per_epoch, total, step_epochs * steps_per_epoch))
        values = [lr * step_gamma**i for i in range(len(boundaries) + 1)]
        if not boundaries:
            return lr
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    if schedule == "cosine":
        if warmup:
            return keras.optimizers.schedules.CosineDecay(
                0.0, decay_steps=max(1, total - warmup), warmup_target=lr, warmup_steps=warmup)
        return keras.optimizers.schedules.CosineDecay(lr, decay_steps=total)
    if schedule == "onecycle":
        return OneCycle(lr, total)
    raise ValueError(f"schedule must be one of {SCHEDULES}, not {schedule!r}.")


def make_optimizer(name, *, learning_rate, momentum=0.9, nesterov=False, weight_decay=0.0,
                   clip_norm=None):
    """SGD (momentum, Nesterov), Adam or AdamW.

    Weight decay is Keras' decoupled decay (``w -= lr * wd * w``) and skips
    BatchNorm parameters and biases, as the modern recipes do.
    """
    common = dict(learning_rate=learning_rate, global_clipnorm=clip_norm)
    if name == "sgd":
        optimizer = keras.optimizers.SGD(momentum=momentum, nesterov=nesterov,
                                         weight_decay=weight_decay or None, **common)
    elif name == "adam":
        optimizer = keras.optimizers.Adam(weight_decay=weight_decay or None, **common)
    elif name == "adamw":
        optimizer = keras.optimizers.AdamW(weight_decay=weight_decay, **common)
    else:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, not {name!r}.")
    if weight_decay:
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer
