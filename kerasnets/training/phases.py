"""Which layers train, and how fast: ``--freeze``, ``--head-epochs``,
``--backbone-lr-multiplier``.

Phase 1 (the first ``head_epochs`` epochs) trains the classifier only; phase 2 (the
rest, or the whole run without ``--head-epochs``) trains what ``--freeze`` leaves
trainable, the pretrained layers at ``--lr`` x ``--backbone-lr-multiplier``. Each
phase is compiled with a fresh optimizer whose schedule spans that phase's epochs.

Frozen layers get ``trainable = False``; in Keras 3 that also runs a frozen
BatchNormalization in inference mode (its moving statistics normalise, and are not
updated), the behaviour fine-tuning needs. The phase of an epoch follows from its
number, so a resumed run continues in the phase it stopped in.
"""

from __future__ import annotations

from kerasnets.training.errors import TrainingError

HEAD_ONLY, MAIN = 1, 2


def problems(c) -> list[str]:
    """What is wrong with the fine-tuning settings together (for ``check_combinations``)."""
    found = []
    if c.head_epochs and c.head_epochs >= c.epochs:
        found.append(f"--head-epochs {c.head_epochs} leaves no epoch for the second phase: "
                     f"make it less than --epochs {c.epochs}")
    if c.head_epochs and c.freeze == "backbone":
        found.append("--head-epochs with --freeze backbone trains the head only in both "
                     "phases: drop one of them")
    return found


def phase_of(epoch: int, head_epochs: int) -> int:
    """The phase of epoch ``epoch`` (counted from 0)."""
    return HEAD_ONLY if epoch < head_epochs else MAIN


def phase_ranges(start: int, end: int, head_epochs: int):
    """``(first, last + 1)`` epoch ranges from ``start`` to ``end``, split where phase 2
    begins (one ``model.fit`` per phase)."""
    if start < head_epochs < end:
        return [(start, head_epochs), (head_epochs, end)]
    return [(start, end)] if start < end else []


def frozen_layers(model, freeze: str, head: list[str]) -> list[str]:
    """Names of the layers ``--freeze`` keeps fixed: none; every layer but the
    classifier (``backbone``); or every layer before the one named, or before the first
    layer of the stage named (``layer3`` in ResNet: ``layer3_0_conv1`` ...)."""
    names = [layer.name for layer in model.layers]
    if freeze == "none":
        return []
    if freeze == "backbone":
        return [n for n in names if n not in head]
    first = next((i for i, n in enumerate(names)
                  if n == freeze or n.startswith(freeze + "_")), None)
    if first is None:
        stages = sorted({n.split("_")[0] for n in names if "_" in n})
        raise TrainingError(f"--freeze {freeze}: {model.name} has no layer or stage of that "
                            f"name. Use none, backbone, a layer name (kerasnets-summary "
                            f"{model.name} lists them) or a stage such as "
                            f"{', '.join(stages[:8])}.")
    return names[:first]


def phase_frozen(model, phase: int, freeze: str, head: list[str]) -> list[str]:
    """The layers fixed in ``phase``: all but ``head`` in phase 1, ``--freeze``'s after."""
    if phase == HEAD_ONLY:
        return [layer.name for layer in model.layers if layer.name not in head]
    return frozen_layers(model, freeze, head)


def set_trainable(model, frozen: list[str], frozen_before=()):
    """Freeze ``frozen``; unfreeze what we froze before (``frozen_before``) and no longer
    do. Other layers keep the ``trainable`` their builder gave them."""
    for name in set(frozen_before) - set(frozen):
        model.get_layer(name).trainable = True
    for name in frozen:
        model.get_layer(name).trainable = False


def scale_learning_rate(optimizer, variables, multiplier: float):
    """Update ``variables`` at ``multiplier`` x the optimizer's learning rate (every other
    variable at the rate itself).

    Keras has no per-variable rate; every backend's optimizer (TensorFlow's, JAX's,
    torch's parallel one) applies a step through ``_backend_update_step(grads,
    variables, learning_rate)``, so this instance runs it twice, once per group. The
    optimizer stays a stock Keras class (``.keras`` files load anywhere); Adam's
    normalised steps and SGD's momentum both scale exactly. Decoupled weight decay
    still uses the full rate.
    """
    if multiplier == 1.0 or not variables:
        return optimizer
    if not hasattr(type(optimizer), "_backend_update_step"):
        raise TrainingError(f"--backbone-lr-multiplier needs Keras' _backend_update_step, "
                            f"which {type(optimizer).__name__} of this Keras version lacks; "
                            f"use --backbone-lr-multiplier 1.")
    slow = {id(v) for v in variables}
    update = type(optimizer)._backend_update_step

    def split_update(grads, trainable_variables, learning_rate):
        groups = {True: ([], []), False: ([], [])}
        for grad, variable in zip(grads, trainable_variables):
            group = groups[id(variable) in slow]
            group[0].append(grad)
            group[1].append(variable)
        for is_slow, (group_grads, group_variables) in groups.items():
            if group_variables:
                rate = learning_rate * multiplier if is_slow else learning_rate
                update(optimizer, group_grads, group_variables, rate)

    optimizer._backend_update_step = split_update
    return optimizer
