"""Running Keras preprocessing layers as a TensorFlow graph for the input pipelines.

The ``PyDataset`` pipeline calls the same Keras layers as the tf.data one, on numpy
batches. When TensorFlow is installed the layers run as one ``tf.function`` graph,
as tf.data runs them (RandAugment is ~10x faster so); without TensorFlow they run
eagerly on the Keras backend. TensorFlow is imported only when asked for, after
keras: on the torch backend importing it first crashes the process.
"""

from __future__ import annotations

import importlib.util

__all__ = ["numpy_function"]


def numpy_function(fn):
    """``fn(*tensors) -> tensors`` as a function of numpy arrays returning numpy.

    Args:
        fn: calls Keras layers on its tensor arguments and returns a tuple of tensors.
    """
    import keras

    if importlib.util.find_spec("tensorflow") is None:
        def eager(*arrays):
            return tuple(keras.ops.convert_to_numpy(t) for t in fn(*arrays))
        return eager
    import tensorflow as tf

    graph = tf.function(fn, reduce_retracing=True)

    def run(*arrays):
        out = graph(*(tf.constant(a) for a in arrays))
        return tuple(t.numpy() for t in out)
    return run
