"""Backend-specific test utilities (gradients), kept in one place."""

import keras
import numpy as np


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def _probe_loss(outputs):
    """A loss linear in the logits: unlike cross-entropy it never saturates (random-init
    DenseNets output logits in the thousands), so a zero gradient means a broken wire."""
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    total = 0.0
    for out in outputs:
        weights = keras.ops.convert_to_tensor(
            np.random.RandomState(7).randn(*out.shape).astype("float32"))
        total = total + keras.ops.mean(out * weights)
    return total


def gradients(model, x, training=False):
    """Gradients of a probe loss w.r.t. every trainable weight.

    Inference mode by default: in training mode a BN beta followed only by linear
    maps and another BN (a 1x1 feature map, as small test inputs give) has an
    analytically zero gradient, which says nothing about the wiring.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = _probe_loss(model(x, training=training))
        return [to_numpy(g) for g in tape.gradient(loss, model.trainable_weights)]
    if backend == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]  # + RNG state

        def loss_of(trainable):
            out, _ = model.stateless_call(trainable, non_trainable, x, training=training)
            return _probe_loss(out)

        # one XLA compilation of the whole graph: eager JAX compiles op by op (5x slower)
        return [np.asarray(g) for g in jax.jit(jax.grad(loss_of))(trainable)]
    if backend == "torch":
        loss = _probe_loss(model(x, training=training))
        loss.backward()
        return [w.value.grad.detach().cpu().numpy() for w in model.trainable_weights]
    raise ValueError(backend)


def predict(model, x):
    """Inference-mode outputs as numpy (JAX: one jitted call, not op-by-op eager)."""
    if keras.backend.backend() == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        out = jax.jit(lambda t, n, x: model.stateless_call(t, n, x, training=False)[0])(
            trainable, non_trainable, x)
    else:
        out = model(x, training=False)
    return [to_numpy(o) for o in out] if isinstance(out, (list, tuple)) else to_numpy(out)


def max_rel_diff(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-6))


def scaled_diff(got, expected):
    """Max abs difference, relative to the logits' scale where that exceeds one
    (random-init torchvision ResNets with random BN statistics reach ~100, random-init
    DenseNets ~1e4)."""
    return float(np.abs(got - expected).max() / max(1.0, float(np.abs(expected).max())))


def record(check, name, value):
    """Append a measured difference to $KERASNETS_PARITY_LOG (when set), so that the
    worst figure of each check can be reported from a test run."""
    import os

    path = os.environ.get("KERASNETS_PARITY_LOG")
    if path:
        with open(path, "a") as log:
            log.write(f"{keras.backend.backend()} {check} {name} {value:.3e}\n")
