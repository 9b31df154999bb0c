"""A convolution's input and output stored in memory on JAX's CPU, so that XLA reads
them instead of recomputing them inside the transposes of the convolution's gradients.

For a kernel gradient XLA:CPU's own convolution wants the layer's input with batch and
channels swapped (NHWC -> CHWN) and the output gradient as HWNC; XLA makes each with a
transpose, and fuses into it the elementwise ops that produced the tensor: the
BatchNormalization, residual add and ReLU before the convolution, and the
BatchNormalization's backward after it. A transpose reads with strides, and a fused one
recomputes its producers at every strided read: on the trainer's ResNet-18 (28x28x1,
batch 128) such transposes took 398 ms of a 1.46 s training step, where the transpose of
a stored tensor takes 2.8 ms (``jax.profiler`` traces, docs/benchmarks.md).

:func:`stored` is an identity that XLA cannot see through: the tensor passes through a
``lax.cond`` whose predicate is always true but computed from the tensor's first
element, so XLA must hold the result in a buffer and cannot fuse across the branch; the
gradient goes through the same. ``lax.optimization_barrier`` does not do this on the
CPU: XLA:CPU removes barriers before it fuses. The values, the gradients and every
float are unchanged: the true branch is the identity, and the false branch is never
taken (its result would be zeros; the predicate ``bits | 1 != 0`` holds for every bit
pattern, NaN included).

Used by :func:`kerasnets.backends.kernels.conv` where XLA's own convolution kernel runs
(not the matmul rewrites, where no transpose is made) on JAX's CPU only: GPUs are left
to XLA. Training images/s, alternating steps of two models in one process (the trainer's
ResNet-18 88.6 -> 104.2; at 64x64, batch 32: ResNet-18 207 -> 230, DenseNet-121 80.5 ->
87.1, ResNeXt-50 74.5 -> 77.5; ResNet-50 and MobileNetV2 even). Depthwise
convolutions, written as shifted multiply-adds, gained nothing from it and do not use it.
"""

from __future__ import annotations

import contextlib

import jax
import jax.numpy as jnp
from jax import lax

STORE_CONVOLUTION_OPERANDS = True
"""Whether :func:`kerasnets.backends.kernels.conv` passes its input and output through
:func:`stored`; :func:`operands_fused_by_xla` turns it off (read when a model is traced)."""


@contextlib.contextmanager
def operands_fused_by_xla():
    """Trace models inside this block as JAX would alone (XLA fuses a convolution's
    producers into its gradients' transposes), to measure what :func:`stored` changes."""
    global STORE_CONVOLUTION_OPERANDS
    before, STORE_CONVOLUTION_OPERANDS = STORE_CONVOLUTION_OPERANDS, False
    try:
        yield
    finally:
        STORE_CONVOLUTION_OPERANDS = before


_BITS = {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}


def _through_buffer(x):
    """``x``, computed into a buffer of its own (see the module docstring)."""
    if x.size == 0:
        return x
    bits = lax.bitcast_convert_type(jnp.reshape(x, (-1,))[0], _BITS[x.dtype.itemsize])
    return lax.cond((bits | 1) != 0, lambda v: v, jnp.zeros_like, x)


@jax.custom_vjp
def stored(x):
    """``x`` and, in the backward pass, its gradient, each held in memory rather than
    recomputed where XLA reads it."""
    return _through_buffer(x)


def _stored_forward(x):
    return _through_buffer(x), None


def _stored_backward(_, gradient):
    return (_through_buffer(gradient),)


stored.defvjp(_stored_forward, _stored_backward)
