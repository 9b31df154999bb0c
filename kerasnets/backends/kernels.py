"""Convolutions whose fastest form differs per backend and device.

``kerasnets.layers.GroupConv2D`` and ``DepthwiseConv2D`` route their forward pass
here; their weights are exactly those of the Keras layers they extend, so a
rewrite never changes a checkpoint. Rewrites apply on the CPU only: on a GPU,
XLA and cuDNN have fast native grouped and depthwise kernels (see
``docs/benchmarks.md`` for the CPU measurements).
"""

from __future__ import annotations

from keras import ops

from kerasnets.backends import devices


def grouped_conv(inputs, kernel, *, strides, padding, dilation_rate, groups, data_format):
    """2-D convolution with ``groups`` groups and a ``Conv2D(groups=...)`` kernel.

    ``kernel`` has the layout of ``keras.layers.Conv2D(groups=g)``:
    ``(kh, kw, in_channels // g, out_channels)``, output channels ordered group
    by group. On torch the native grouped kernel is fast. On TensorFlow and JAX
    (XLA:CPU) a grouped convolution is 50-100x slower than the same maths written
    as one convolution per group, so on the CPU we split, convolve and concatenate.
    """
    if groups == 1 or devices.backend() == "torch" or not devices.on_cpu():
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
    if devices.backend() == "jax" and kernel.shape[-1] == 1 and devices.on_cpu():
        return _depthwise_shifted(inputs, kernel, strides=strides, padding=padding,
                                  dilation_rate=dilation_rate, data_format=data_format)
    return ops.depthwise_conv(
        inputs, kernel, strides=strides, padding=padding,
        dilation_rate=dilation_rate, data_format=data_format,
    )


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
