"""The one place that holds backend-specific code.

Model code is written once with ``keras.layers`` and ``keras.ops``. A few
operations are much faster when written differently per backend (grouped and
depthwise convolutions on the CPU, see ``docs/benchmarks.md``). Those choices
live here, behind functions whose inputs and outputs are plain Keras tensors, so
layer weights never depend on the backend.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def backend() -> str:
    return keras.backend.backend()


def grouped_conv(inputs, kernel, *, strides, padding, dilation_rate, groups, data_format):
    """2-D convolution with ``groups`` groups and a ``Conv2D(groups=...)`` kernel.

    ``kernel`` has the layout of ``keras.layers.Conv2D(groups=g)``:
    ``(kh, kw, in_channels // g, out_channels)``, output channels ordered group
    by group. On torch the native grouped kernel is fast. On TensorFlow and JAX
    (XLA:CPU) a grouped convolution is 50-100x slower than the same maths written
    as one convolution per group, so there we split, convolve and concatenate.
    """
    if groups == 1 or backend() == "torch":
        return ops.conv(
            inputs, kernel, strides=strides, padding=padding,
            dilation_rate=dilation_rate, data_format=data_format,
        )
    channel_axis = -1 if data_format == "channels_last" else 1
    input_groups = ops.split(inputs, groups, axis=channel_axis)
    kernel_groups = ops.split(kernel, groups, axis=-1)
    outputs = [
        ops.conv(x, k, strides=strides, padding=padding,
                 dilation_rate=dilation_rate, data_format=data_format)
        for x, k in zip(input_groups, kernel_groups)
    ]
    return ops.concatenate(outputs, axis=channel_axis)


def depthwise_conv(inputs, kernel, *, strides, padding, dilation_rate, data_format):
    """Depthwise 2-D convolution with a ``DepthwiseConv2D`` kernel ``(kh, kw, C, 1)``."""
    return ops.depthwise_conv(
        inputs, kernel, strides=strides, padding=padding,
        dilation_rate=dilation_rate, data_format=data_format,
    )


# --- Running a model outside model.fit (parity checks, benchmarks) ------------------


class _KeepState:
    """Restore the non-trainable variables (BN statistics, RNG) on exit: a training-mode
    call updates them on TensorFlow and torch, but not in JAX's stateless call."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.saved = [keras.ops.convert_to_numpy(v) for v in self.model.non_trainable_variables]

    def __exit__(self, *exc):
        for variable, value in zip(self.model.non_trainable_variables, self.saved):
            variable.assign(value)


def forward_modes(model, x):
    """``(inference outputs, training-mode outputs)`` of ``model`` on ``x``, as numpy,
    leaving the model's state as it was (one compilation on JAX)."""
    if backend() == "jax":
        import jax

        def run(trainable, non_trainable, x):
            return tuple(model.stateless_call(trainable, non_trainable, x, training=mode)[0]
                         for mode in (False, True))

        outs = jax.jit(run)([v.value for v in model.trainable_variables],
                            [v.value for v in model.non_trainable_variables], x)
    else:
        with _KeepState(model):
            outs = (model(x, training=False), model(x, training=True))
    return tuple(keras.tree.map_structure(keras.ops.convert_to_numpy, out) for out in outs)


def forward(model, x):
    """Inference outputs of ``model`` on ``x`` as numpy (jitted on JAX)."""
    if backend() == "jax":
        import jax

        def run(trainable, non_trainable, x):
            return model.stateless_call(trainable, non_trainable, x, training=False)[0]

        out = jax.jit(run)([v.value for v in model.trainable_variables],
                           [v.value for v in model.non_trainable_variables], x)
    else:
        out = model(x, training=False)
    return keras.tree.map_structure(keras.ops.convert_to_numpy, out)
