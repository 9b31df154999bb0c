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


@keras.saving.register_keras_serializable(package="kerasnets")
class Conv2D(keras.layers.Conv2D):
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
            strides=self.strides, padding=self.padding,
            dilation_rate=self.dilation_rate, data_format=self.data_format,
        )


@keras.saving.register_keras_serializable(package="kerasnets")
class GroupConv2D(keras.layers.Conv2D):
    """``keras.layers.Conv2D(groups=g)`` with a fast grouped convolution.

    Kernel layout ``(kh, kw, in_channels // groups, filters)`` as in Keras.
    """

    def build(self, input_shape):
        super().build(input_shape)
        kernels.store_conv_kernel(self.kernel, self.data_format)

    def convolution_op(self, inputs, kernel):
        return kernels.grouped_conv(
            inputs, kernel,
            strides=self.strides, padding=self.padding,
            dilation_rate=self.dilation_rate, groups=self.groups,
            data_format=self.data_format,
        )


@keras.saving.register_keras_serializable(package="kerasnets")
class DepthwiseConv2D(keras.layers.DepthwiseConv2D):
    """``keras.layers.DepthwiseConv2D`` with a per-backend depthwise kernel.

    Kernel layout ``(kh, kw, in_channels, depth_multiplier)`` as in Keras.
    """

    def call(self, inputs):
        outputs = kernels.depthwise_conv(
            inputs, self.kernel,
            strides=self.strides, padding=self.padding,
            dilation_rate=self.dilation_rate, data_format=self.data_format,
        )
        if self.use_bias:
            channels_last = self.data_format == "channels_last"
            shape = (1, 1, 1, -1) if channels_last else (1, -1, 1, 1)
            outputs = ops.add(outputs, ops.reshape(self.bias, shape))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs
