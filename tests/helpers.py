"""Backend-specific test utilities (gradients), kept in one place."""

import keras
import numpy as np


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def gradients(model, x, y, training=False):
    """Gradients of the mean cross-entropy w.r.t. every trainable weight.

    Inference mode by default: in training mode a BN beta followed only by linear
    maps and another BN (a 1x1 feature map, as small test inputs give) has an
    analytically zero gradient, which says nothing about the wiring.
    """
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=training))
        return [to_numpy(g) for g in tape.gradient(loss, model.trainable_weights)]
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]  # + RNG state

        def loss_of(trainable):
            out, _ = model.stateless_call(trainable, non_trainable, x, training=training)
            return loss_fn(y, out)

        return [np.asarray(g) for g in jax.grad(loss_of)(trainable)]
    if backend == "torch":
        model.zero_grad() if hasattr(model, "zero_grad") else None
        loss = loss_fn(y, model(x, training=training))
        loss.backward()
        return [w.value.grad.detach().cpu().numpy() for w in model.trainable_weights]
    raise ValueError(backend)


def predict(model, x):
    out = model(x, training=False)
    return [to_numpy(o) for o in out] if isinstance(out, (list, tuple)) else to_numpy(out)


def max_rel_diff(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-6))
