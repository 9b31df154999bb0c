"""Test utilities; running models on each backend is kerasnets.backends.execution's job."""

import os

import keras
import numpy as np

from kerasnets.backends.execution import forward as predict  # noqa: F401 (used by tests)
from kerasnets.backends.execution import gradients as _gradients
from kerasnets.interop.parity import scaled_diff  # noqa: F401 (used by tests)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def _probe_loss(outputs):
    """A loss linear in the logits: unlike cross-entropy it never saturates (random-init
    DenseNets output logits in the thousands), so a zero gradient means a broken wire."""
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    total = 0.0
    for out in outputs:
        weights = keras.ops.convert_to_tensor(
            np.random.RandomState(7).randn(*out.shape).astype("float32"))
        total = total + keras.ops.mean(out * weights)
    return total


def gradients(model, x, training=False):
    """Gradients of a probe loss w.r.t. every trainable weight.

    Inference mode by default: in training mode a BN beta followed only by linear
    maps and another BN (a 1x1 feature map, as small test inputs give) has an
    analytically zero gradient, which says nothing about the wiring.
    """
    return _gradients(model, x, _probe_loss, training=training)


def record(check, name, value):
    """Append a measured difference to $KERASNETS_PARITY_LOG (when set), so that the
    worst figure of each check can be reported from a test run."""
    path = os.environ.get("KERASNETS_PARITY_LOG")
    if path:
        with open(path, "a") as log:
            log.write(f"{keras.backend.backend()} {check} {name} {value:.3e}\n")
