"""Pooling: max- and average pooling with per-device kernels, and adaptive average pooling with
PyTorch's exact semantics on every backend."""

import keras
import numpy as np
from keras import ops

from kerasnets.backends import kernels


@keras.saving.register_keras_serializable(package="kerasnets")
class MaxPooling2D(keras.layers.MaxPooling2D):
    """``keras.layers.MaxPooling2D`` routed through :func:`kerasnets.backends.kernels.max_pool`
    (on JAX on the CPU: the maximum of strided slices, whose gradient XLA runs fast)."""

    def call(self, inputs):
        return kernels.max_pool(inputs, pool_size=self.pool_size, strides=self.strides,
                                padding=self.padding, data_format=self.data_format)


@keras.saving.register_keras_serializable(package="kerasnets")
class AveragePooling2D(keras.layers.AveragePooling2D):
    """``keras.layers.AveragePooling2D`` routed through
    :func:`kerasnets.backends.kernels.average_pool` (NHWC on a TensorFlow CPU)."""

    def call(self, inputs):
        return kernels.average_pool(inputs, pool_size=self.pool_size, strides=self.strides,
                                    padding=self.padding, data_format=self.data_format)


def adaptive_pool_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``(out, in)`` averaging matrix of ``torch.nn.AdaptiveAvgPool``: output ``i``
    averages inputs ``floor(i * in / out)`` up to ``ceil((i + 1) * in / out)``."""
    matrix = np.zeros((out_size, in_size), np.float32)
    for i in range(out_size):
        start = (i * in_size) // out_size
        end = -(-((i + 1) * in_size) // out_size)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


@keras.saving.register_keras_serializable(package="kerasnets")
class AdaptiveAveragePooling2D(keras.layers.Layer):
    """``torch.nn.AdaptiveAvgPool2d(output_size)`` as two small matrix products.

    Unlike ``keras.layers.AdaptiveAveragePooling2D`` it also works when the
    output is larger than the input (torch then repeats pixels), which small
    inputs to AlexNet, VGG and GoogLeNet's auxiliary heads produce. Needs a
    known height and width.
    """

    def __init__(self, output_size, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.output_size = (output_size, output_size) if isinstance(output_size, int) \
            else tuple(output_size)
        self.data_format = data_format or keras.config.image_data_format()

    def build(self, input_shape):
        spatial = input_shape[1:3] if self.data_format == "channels_last" else input_shape[2:4]
        if None in spatial:
            raise ValueError(f"{self.name}: adaptive pooling needs a known input height and "
                             f"width, got {tuple(input_shape)}.")
        self._rows = adaptive_pool_matrix(spatial[0], self.output_size[0])
        self._cols = adaptive_pool_matrix(spatial[1], self.output_size[1])

    def call(self, inputs):
        rows = ops.convert_to_tensor(self._rows, dtype=inputs.dtype)
        cols = ops.convert_to_tensor(self._cols, dtype=inputs.dtype)
        if self.data_format == "channels_last":
            return ops.einsum("ih,jw,nhwc->nijc", rows, cols, inputs)
        return ops.einsum("ih,jw,nchw->ncij", rows, cols, inputs)

    def compute_output_shape(self, input_shape):
        if self.data_format == "channels_last":
            return (input_shape[0], *self.output_size, input_shape[3])
        return (input_shape[0], input_shape[1], *self.output_size)

    def get_config(self):
        return {**super().get_config(), "output_size": self.output_size,
                "data_format": self.data_format}
