"""Convolution layers whose implementation may differ per backend and device.

Each keeps exactly the weights of the Keras layer it extends, so a checkpoint
written with ``keras.layers.Conv2D`` (``groups=g`` too) or
``keras.layers.DepthwiseConv2D`` loads into them and vice versa; only the
forward computation is routed through :mod:`kerasnets.backends.kernels`, and on torch's
CPU a convolution kernel's memory order (not its shape or values) is torch's.
"""

import keras
from keras import ops

from kerasnets.backends import kernels
from kerasnets.backends.padding import padded_size


def _standardize_zero_padding(value):
    """``((top, bottom), (left, right))`` from an int or such pairs; None for none."""
    if value is None:
        return None
    pairs = ((value, value), (value, value)) if isinstance(value, int) else value
    try:
        pairs = tuple((int(before), int(after)) for before, after in pairs)
    except (TypeError, ValueError):
        pairs = None
    if pairs is None or len(pairs) != 2 or min(min(pair) for pair in pairs) < 0:
        raise ValueError(f"zero_padding must be a non-negative int or ((top, bottom), "
                         f"(left, right)); got {value!r}.")
    return pairs if any(any(pair) for pair in pairs) else None


class _ZeroPadding:
    """torch's ``Conv2d(padding=...)`` on a Keras convolution: ``zero_padding`` zeros
    around the input (an int, or ``((top, bottom), (left, right))``) before a "valid"
    convolution, as a ``ZeroPadding2D`` layer in front would add them. The zoo's strided
    convolutions use it (``blocks.conv2d``): torch's CPU kernel then pads inside the
    convolution instead of convolving a padded copy (``torch_cpu._padded``); every
    other device adds the zeros first, exactly as the separate layer did. The weights
    are the Keras layer's; the config gains ``zero_padding`` only where it is set."""

    def __init__(self, *args, zero_padding=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.zero_padding = _standardize_zero_padding(zero_padding)
        if self.zero_padding and self.padding != "valid":
            raise ValueError(f"zero_padding={zero_padding!r} needs padding=\"valid\" "
                             f"(got padding={self.padding!r}): the zeros are the padding.")

    def _conv_padding(self):
        """What :mod:`kerasnets.backends.kernels` is told: the zeros, or Keras' padding."""
        return self.zero_padding or self.padding

    def compute_output_shape(self, input_shape):
        if self.zero_padding:
            shape = list(input_shape)
            first = 1 if self.data_format == "channels_last" else 2
            for axis, pads in enumerate(self.zero_padding):
                shape[first + axis] = padded_size(shape[first + axis], pads)
            input_shape = tuple(shape)
        return super().compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        if self.zero_padding:
            config["zero_padding"] = self.zero_padding
        return config


@keras.saving.register_keras_serializable(package="kerasnets")
class Conv2D(_ZeroPadding, keras.layers.Conv2D):
    """``keras.layers.Conv2D`` whose convolution takes each backend's fastest form
    (on JAX on the CPU: 1x1 and tiny-output convolutions as matmuls)."""

    def build(self, input_shape):
        super().build(input_shape)
        kernels.store_conv_kernel(self.kernel, self.data_format)

    def convolution_op(self, inputs, kernel):
        if self.groups != 1:
            return GroupConv2D.convolution_op(self, inputs, kernel)
        return kernels.conv(
            inputs, kernel,
            strides=self.strides, padding=self._conv_padding(),
            dilation_rate=self.dilation_rate, data_format=self.data_format,
        )


@keras.saving.register_keras_serializable(package="kerasnets")
class GroupConv2D(_ZeroPadding, keras.layers.Conv2D):
    """``keras.layers.Conv2D(groups=g)`` with a fast grouped convolution.

    Kernel layout ``(kh, kw, in_channels // groups, filters)`` as in Keras.
    """

    def build(self, input_shape):
        super().build(input_shape)
        kernels.store_conv_kernel(self.kernel, self.data_format)

    def convolution_op(self, inputs, kernel):
        return kernels.grouped_conv(
            inputs, kernel,
            strides=self.strides, padding=self._conv_padding(),
            dilation_rate=self.dilation_rate, groups=self.groups,
            data_format=self.data_format,
        )


@keras.saving.register_keras_serializable(package="kerasnets")
class DepthwiseConv2D(_ZeroPadding, keras.layers.DepthwiseConv2D):
    """``keras.layers.DepthwiseConv2D`` with a per-backend depthwise kernel.

    Kernel layout ``(kh, kw, in_channels, depth_multiplier)`` as in Keras.
    """

    def call(self, inputs):
        outputs = kernels.depthwise_conv(
            inputs, self.kernel,
            strides=self.strides, padding=self._conv_padding(),
            dilation_rate=self.dilation_rate, data_format=self.data_format,
        )
        if self.use_bias:
            channels_last = self.data_format == "channels_last"
            shape = (1, 1, 1, -1) if channels_last else (1, -1, 1, 1)
            outputs = ops.add(outputs, ops.reshape(self.bias, shape))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs
