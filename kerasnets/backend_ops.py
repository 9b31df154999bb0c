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
    """Depthwise 2-D convolution with a ``DepthwiseConv2D`` kernel ``(kh, kw, C, 1)``.

    On JAX (XLA:CPU) a depthwise convolution is a grouped convolution with one
    group per channel, which XLA:CPU runs 5-10x slower than TensorFlow; there it is
    written as ``kh * kw`` shifted multiply-adds, which XLA fuses into one loop.
    """
    if backend() == "jax" and kernel.shape[-1] == 1 and _on_cpu():
        return _depthwise_shifted(inputs, kernel, strides=strides, padding=padding,
                                  dilation_rate=dilation_rate, data_format=data_format)
    return ops.depthwise_conv(
        inputs, kernel, strides=strides, padding=padding,
        dilation_rate=dilation_rate, data_format=data_format,
    )


def _on_cpu():
    import jax

    return jax.default_backend() == "cpu"


def _same_padding(size, k, stride, dilation):
    """(before, after) that Keras/TF ``padding="same"`` adds along one axis."""
    effective = (k - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _depthwise_shifted(inputs, kernel, *, strides, padding, dilation_rate, data_format):
    import jax.numpy as jnp

    strides = (strides,) * 2 if isinstance(strides, int) else tuple(strides)
    dilation = (dilation_rate,) * 2 if isinstance(dilation_rate, int) else tuple(dilation_rate)
    kernel = ops.convert_to_tensor(kernel)
    x = inputs if data_format == "channels_last" else jnp.transpose(inputs, (0, 2, 3, 1))
    kh, kw = kernel.shape[0], kernel.shape[1]
    if padding == "same":
        pads = [_same_padding(x.shape[1 + a], (kh, kw)[a], strides[a], dilation[a])
                for a in range(2)]
        x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    height, width = x.shape[1], x.shape[2]
    out_h = (height - (kh - 1) * dilation[0] - 1) // strides[0] + 1
    out_w = (width - (kw - 1) * dilation[1] - 1) // strides[1] + 1
    weights = kernel[..., 0].astype(x.dtype)  # (kh, kw, C)
    out = None
    for i in range(kh):
        for j in range(kw):
            top, left = i * dilation[0], j * dilation[1]
            window = x[:, top:top + (out_h - 1) * strides[0] + 1:strides[0],
                       left:left + (out_w - 1) * strides[1] + 1:strides[1], :]
            term = window * weights[i, j]
            out = term if out is None else out + term
    return out if data_format == "channels_last" else jnp.transpose(out, (0, 3, 1, 2))


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
