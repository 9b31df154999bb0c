"""Normalization layers whose implementation may differ per backend and device."""

import keras

from kerasnets.backends import kernels


@keras.saving.register_keras_serializable(package="kerasnets")
class BatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` (same weights, same config: checkpoints load
    either way) that computes as one fused kernel where that is faster (torch's and TF's CPU,
    :func:`kerasnets.backends.kernels.batch_norm`), and as Keras does elsewhere."""

    def call(self, inputs, training=None, mask=None):
        if mask is None:
            outputs = kernels.batch_norm(self, inputs, training=bool(training and self.trainable))
            if outputs is not None:
                return outputs
        return super().call(inputs, training=training, mask=mask)
