"""Running a model outside ``model.fit``: inference, training-mode outputs, gradients.

For checks and benchmarks (parity, tests). Eager Keras on JAX compiles op by op;
here JAX gets one jitted ``stateless_call`` of the whole graph, and every backend
returns numpy and leaves the model's state as it was.
"""

from __future__ import annotations

import keras
import numpy as np

from kerasnets.backends.devices import backend


def _to_numpy(tree):
    return keras.tree.map_structure(keras.ops.convert_to_numpy, tree)


def _jax_call(model, x, modes):
    """Outputs of ``model`` on ``x`` for each training flag in ``modes``, one jit."""
    import jax

    def run(trainable, non_trainable, x):
        return tuple(model.stateless_call(trainable, non_trainable, x, training=mode)[0]
                     for mode in modes)

    return jax.jit(run)([v.value for v in model.trainable_variables],
                        [v.value for v in model.non_trainable_variables], x)


class _KeepState:
    """Restore the non-trainable variables (BN statistics, RNG) on exit: a training-mode
    call updates them on TensorFlow and torch, but not in JAX's stateless call."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.saved = [keras.ops.convert_to_numpy(v) for v in self.model.non_trainable_variables]

    def __exit__(self, *exc):
        for variable, value in zip(self.model.non_trainable_variables, self.saved):
            variable.assign(value)


def compile_for_a_few_steps(model, **compile_args):
    """``model.compile`` for a check that runs ``train_on_batch`` once or twice: eager on
    TensorFlow (tracing the step cost more than running it: parity's TF compute phase for
    resnet18, densenet121 and vgg11_bn took 29.5 s of CPU traced, 16.5 s eager, results
    equal to 6e-14; same kernels), compiled elsewhere (JAX must jit)."""
    model.compile(run_eagerly=backend() == "tensorflow", **compile_args)


def forward_modes(model, x):
    """``(inference outputs, training-mode outputs)`` of ``model`` on ``x``, as numpy,
    leaving the model's state as it was (one compilation on JAX)."""
    if backend() == "jax":
        outs = _jax_call(model, x, (False, True))
    else:
        with _KeepState(model):
            outs = (model(x, training=False), model(x, training=True))
    return tuple(_to_numpy(out) for out in outs)


def forward(model, x):
    """Inference outputs of ``model`` on ``x`` as numpy (jitted on JAX): an array, or a
    list of arrays for a model with several outputs."""
    if backend() == "jax":
        out = _jax_call(model, x, (False,))[0]
    else:
        out = model(x, training=False)
    return list(_to_numpy(out)) if isinstance(out, (list, tuple)) else _to_numpy(out)


def gradients(model, x, loss_fn, training=False):
    """Gradients of ``loss_fn(model outputs)`` with respect to every trainable weight,
    as numpy, in the order of ``model.trainable_weights``."""
    name = backend()
    if name == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn(model(x, training=training))
        return [keras.ops.convert_to_numpy(g)
                for g in tape.gradient(loss, model.trainable_weights)]
    if name == "jax":
        import jax

        non_trainable = [v.value for v in model.non_trainable_variables]  # + RNG state

        def loss_of(trainable):
            out, _ = model.stateless_call(trainable, non_trainable, x, training=training)
            return loss_fn(out)

        trainable = [v.value for v in model.trainable_variables]
        return [np.asarray(g) for g in jax.jit(jax.grad(loss_of))(trainable)]
    if name == "torch":
        for w in model.trainable_weights:
            w.value.grad = None
        loss_fn(model(x, training=training)).backward()
        return [w.value.grad.detach().cpu().numpy() for w in model.trainable_weights]
    raise ValueError(f"No gradients for backend {name!r}.")
