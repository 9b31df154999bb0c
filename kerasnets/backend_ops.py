"""The one place that holds backend-specific code.

Model code is written once with ``keras.layers`` and ``keras.ops``. A few
operations are much faster when written differently per backend (grouped and
depthwise convolutions on the CPU, see ``docs/benchmarks.md``). Those choices
live here, behind functions whose inputs and outputs are plain Keras tensors, so
layer weights never depend on the backend.
"""

from __future__ import annotations

import keras
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
