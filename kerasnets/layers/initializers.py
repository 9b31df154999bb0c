"""Weight initialisers drawn with numpy on the host.

Keras' stock initialisers draw with the backend's RNG, and on JAX every new
weight shape is a new XLA compilation (~0.15 s each): building DenseNet-169
took 19 s, nearly all of it compiling random number generators. Drawing with
numpy and handing Keras the array makes a build take well under a second on
every backend. The draws follow ``keras.utils.set_random_seed`` (it seeds numpy).
"""

import math

import keras
import numpy as np


def _fans(shape):
    """Keras' fan computation: receptive field x input/output channels."""
    if len(shape) < 2:
        return shape[0] if shape else 1, shape[0] if shape else 1
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


@keras.saving.register_keras_serializable(package="kerasnets")
class HostVarianceScaling(keras.initializers.Initializer):
    """``keras.initializers.VarianceScaling`` drawn with numpy (same statistics)."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None):
        self.scale, self.mode, self.distribution, self.seed = scale, mode, distribution, seed

    def __call__(self, shape, dtype=None):
        fan_in, fan_out = _fans(tuple(shape))
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, fan)
        seed = self.seed if self.seed is not None else np.random.randint(2**31 - 1)
        rng = np.random.default_rng(seed)
        if self.distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            values = rng.uniform(-limit, limit, size=shape)
        elif self.distribution == "untruncated_normal":
            values = rng.normal(0.0, math.sqrt(variance), size=shape)
        else:  # truncated at two standard deviations, rescaled as Keras does
            std = math.sqrt(variance) / 0.87962566103423978
            values = rng.normal(0.0, std, size=shape)
            bad = np.abs(values) > 2 * std
            while bad.any():
                values[bad] = rng.normal(0.0, std, size=int(bad.sum()))
                bad = np.abs(values) > 2 * std
        return values.astype(keras.backend.standardize_dtype(dtype or "float32"))

    def get_config(self):
        return dict(scale=self.scale, mode=self.mode, distribution=self.distribution,
                    seed=self.seed)


def kaiming_normal_fan_out():
    """torchvision's convolution init: ``kaiming_normal_(mode="fan_out", relu)``."""
    return HostVarianceScaling(2.0, "fan_out", "untruncated_normal")


def glorot_uniform():
    """Keras' default (and d2l's Xavier-uniform) for dense and LeNet/NiN layers."""
    return HostVarianceScaling(1.0, "fan_avg", "uniform")
