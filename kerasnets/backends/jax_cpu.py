"""What JAX's CPU needs beyond XLA's defaults, chosen by :mod:`kerasnets.backends.kernels`:

* :func:`stored`: a convolution's input and output stored in memory, so that XLA reads
  them instead of recomputing them inside the transposes of the convolution's gradients
  (below);
* :func:`shifted_multiply_adds` and :func:`depthwise_per_tap_gradient`: depthwise
  convolutions, whose kernel gradient is one tap per loop iteration (see the
  section "Depthwise convolutions" further down);
* :func:`max_pool`: the maximum of the window's strided slices, whose gradient goes to
  each window's first maximum, as torch's and TensorFlow's kernels send it (section
  "Max-pooling");
* :func:`strided_conv`: a strided convolution whose input gradient is one stride-1
  convolution per phase of the input (section "Strided convolutions").

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
import functools

import jax
import jax.numpy as jnp
from jax import lax

@contextlib.contextmanager
def _turned_off(flag):
    """Set the module's boolean ``flag`` to False inside the block (models traced there
    run without that form)."""
    before = globals()[flag]
    globals()[flag] = False
    try:
        yield
    finally:
        globals()[flag] = before


STORE_CONVOLUTION_OPERANDS = True
"""Whether :func:`kerasnets.backends.kernels.conv` passes its input and output through
:func:`stored`; :func:`operands_fused_by_xla` turns it off (read when a model is traced)."""


def operands_fused_by_xla():
    """Trace models inside this block as JAX would alone (XLA fuses a convolution's
    producers into its gradients' transposes), to measure what :func:`stored` changes."""
    return _turned_off("STORE_CONVOLUTION_OPERANDS")


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


# --- Depthwise convolutions -------------------------------------------------------------
#
# XLA:CPU runs a depthwise convolution (a grouped one, a group per channel) 5-10x slower
# than TensorFlow, so on JAX's CPU kerasnets writes it as kh * kw shifted multiply-adds,
# which XLA fuses into one loop (kerasnets.backends.kernels.depthwise_conv). The kernel
# gradient of that form is one reduction per tap, sum(window * gradient) over batch and
# space; given all of them at once, XLA copies each tap's window of the input out into a
# buffer of its own first (the windows share their input, so XLA does not fuse the slice
# into the reduction) and reduces those copies: at 32x32x96, batch 32, the kernel gradient
# took 40 ms where one tap's fused reduction takes 0.8 ms. In a loop, one tap per
# iteration, each reduction reads its window in place. One layer after a ReLU, forward +
# backward: 1.8-4.2x faster at stride 1 from 14x14 up and for every 5x5 kernel, 0.88-1.03x
# for 3x3 kernels at 8x8 and smaller, 0.57-1.37x strided. In the MobileNets, where each tap
# would also recompute the BatchNormalization before it, the loop wins at every stride.
# The incoming gradient is stored too: XLA's input gradient reads nine windows of it.
# MobileNetV2 trains 1.47x faster at 64x64 (python -m kerasnets.benchmarks.alternating
# mobilenet_v2 --without depthwise_per_tap; docs/benchmarks.md).

DEPTHWISE_KERNEL_GRADIENT_PER_TAP = True
"""Whether a depthwise convolution on JAX's CPU computes its kernel gradient one
tap per loop iteration (:func:`depthwise_per_tap_gradient`);
:func:`depthwise_gradient_by_xla` turns it off (read when a model is traced)."""


def depthwise_gradient_by_xla():
    """Trace models inside this block with XLA's own gradient of the shifted
    multiply-adds, to measure what :func:`depthwise_per_tap_gradient` changes."""
    return _turned_off("DEPTHWISE_KERNEL_GRADIENT_PER_TAP")


def strided_window(x, top, left, strides, out_hw):
    """The (out_h, out_w) strided window of NHWC ``x`` that starts at (top, left)."""
    return x[:, top:top + (out_hw[0] - 1) * strides[0] + 1:strides[0],
             left:left + (out_hw[1] - 1) * strides[1] + 1:strides[1], :]


def placed_at_window(values, top, left, strides, hw):
    """``values`` put back where :func:`strided_window` (top, left, strides) took them
    from, in an NHWC map of spatial size ``hw``: zeros between and around them."""
    zero = jnp.zeros((), values.dtype)
    spans = [(values.shape[1 + a] - 1) * strides[a] + 1 for a in range(2)]
    return lax.pad(values, zero, [(0, 0, 0), (top, hw[0] - top - spans[0], strides[0] - 1),
                                  (left, hw[1] - left - spans[1], strides[1] - 1), (0, 0, 0)])


def shifted_multiply_adds(x, weights, strides, dilation, out_hw):
    """Depthwise convolution of padded NHWC ``x`` with ``weights`` (kh, kw, C), as the sum
    of kh * kw shifted windows each times its tap's weights."""
    kh, kw = weights.shape[0], weights.shape[1]
    out = None
    for i in range(kh):
        for j in range(kw):
            window = strided_window(x, i * dilation[0], j * dilation[1], strides, out_hw)
            term = window * weights[i, j]
            out = term if out is None else out + term
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def depthwise_per_tap_gradient(x, weights, strides, dilation, out_hw):
    """:func:`shifted_multiply_adds`, whose kernel gradient is one reduction per tap in a
    loop (see above); the input gradient is XLA's own. The same sums in the same order:
    values and gradients are bit for bit those of :func:`shifted_multiply_adds`."""
    return shifted_multiply_adds(x, weights, strides, dilation, out_hw)


def _per_tap_forward(x, weights, strides, dilation, out_hw):
    return shifted_multiply_adds(x, weights, strides, dilation, out_hw), (x, weights)


def _per_tap_backward(strides, dilation, out_hw, residuals, gradient):
    x, weights = residuals
    gradient = _through_buffer(gradient)
    _, input_vjp = jax.vjp(
        lambda v: shifted_multiply_adds(v, weights, strides, dilation, out_hw), x)
    (input_gradient,) = input_vjp(gradient)
    kh, kw, channels = weights.shape
    span = ((out_hw[0] - 1) * strides[0] + 1, (out_hw[1] - 1) * strides[1] + 1)

    def tap(k):
        start = (0, (k // kw) * dilation[0], (k % kw) * dilation[1], 0)
        window = lax.dynamic_slice(x, start, (x.shape[0], *span, channels))
        window = window[:, ::strides[0], ::strides[1], :]
        return jnp.sum(window * gradient, axis=(0, 1, 2))

    kernel_gradient = lax.map(tap, jnp.arange(kh * kw)).reshape(kh, kw, channels)
    return input_gradient, kernel_gradient.astype(weights.dtype)


depthwise_per_tap_gradient.defvjp(_per_tap_forward, _per_tap_backward)


# --- Max-pooling ------------------------------------------------------------------------
#
# JAX's CPU max-pools as the maximum of the window's strided slices (kernels.max_pool):
# XLA:CPU runs reduce_window's gradient as select-and-scatter, 5-10x slower. Each of the
# nine windows reads the incoming gradient, and XLA fused what made that gradient into
# every read: in DenseNet-121 the stem's pool feeds six concatenations, and the sum of
# their gradients was recomputed nine times, 37 ms of a 320 ms step at 64x64, batch 32
# (jax.profiler). Here the gradient is stored and written directly: each window sends its
# output's gradient to the first pixel equal to the maximum, in row-major order, which is
# what torch's and TensorFlow's max-pooling kernels do (JAX's own gradient of jnp.maximum
# would split it between ties). DenseNet-121 and ResNet-18 train 1.15x faster at 64x64.

MAX_POOL_GRADIENT_TO_FIRST_MAXIMUM = True
"""Whether max-pooling on JAX's CPU uses :func:`max_pool`'s gradient;
:func:`max_pool_gradient_by_xla` turns it off (read when a model is traced)."""


def max_pool_gradient_by_xla():
    """Trace models inside this block with the gradient JAX derives for the chain of
    maxima, to measure what :func:`max_pool` changes."""
    return _turned_off("MAX_POOL_GRADIENT_TO_FIRST_MAXIMUM")


def maximum_of_windows(x, pool_size, strides):
    """Max-pooling of NHWC ``x`` (already padded, "valid") as the maximum of its
    ``kh * kw`` strided windows."""
    out_hw = tuple((x.shape[1 + a] - pool_size[a]) // strides[a] + 1 for a in range(2))
    out = None
    for i in range(pool_size[0]):
        for j in range(pool_size[1]):
            window = strided_window(x, i, j, strides, out_hw)
            out = window if out is None else jnp.maximum(out, window)
    return out


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def max_pool(x, pool_size, strides):
    """:func:`maximum_of_windows`, whose gradient goes to the first maximum of each window
    (see above)."""
    return maximum_of_windows(x, pool_size, strides)


def _max_pool_forward(x, pool_size, strides):
    # stored: else XLA recomputes the maxima inside the gradient, at every window's read
    out = stored(maximum_of_windows(x, pool_size, strides))
    return out, (x, out)


def _max_pool_backward(pool_size, strides, residuals, gradient):
    x, out = residuals
    # stored: each window reads it, and XLA would recompute what made it at every read
    # (DenseNet: the sum of the gradients of the six concatenations the pool feeds)
    gradient = _through_buffer(gradient)
    out_hw = out.shape[1:3]
    zero = jnp.zeros((), gradient.dtype)
    taken = None  # windows whose maximum an earlier pixel already was
    input_gradient = None
    for i in range(pool_size[0]):
        for j in range(pool_size[1]):
            first = strided_window(x, i, j, strides, out_hw) == out
            if taken is not None:
                first, taken = first & ~taken, taken | first
            else:
                taken = first
            # back to the pixels this window read
            placed = placed_at_window(jnp.where(first, gradient, zero), i, j, strides,
                                      x.shape[1:3])
            input_gradient = placed if input_gradient is None else input_gradient + placed
    return (input_gradient,)


max_pool.defvjp(_max_pool_forward, _max_pool_backward)


# --- Grouped convolutions ---------------------------------------------------------------
#
# kernels.grouped_conv computes them one convolution per group on JAX's CPU, and groups of
# few channels several to a convolution with block-diagonal kernels (measured there).

GROUPS_IN_BLOCKS = True
"""Whether grouped convolutions of few channels a group are computed several groups to
a convolution on JAX's CPU (``kerasnets.backends.kernels.grouped_conv``);
:func:`groups_one_by_one` turns it off (read when a model is traced)."""


def groups_one_by_one():
    """Trace models inside this block with one convolution per group, to measure what
    computing several groups to a convolution changes."""
    return _turned_off("GROUPS_IN_BLOCKS")


# --- Strided convolutions ---------------------------------------------------------------
#
# XLA computes a strided convolution's input gradient as a convolution of the output
# gradient with zeros inserted between its pixels (lhs_dilate), and XLA:CPU's kernel
# multiplies those zeros too: s * s times the forward's work. ResNet-18's 3x3/2 at 28x28,
# 64->128, batch 128: 42.5 ms where the forward takes 12.0. Split by where an input pixel
# sits modulo the stride (its phase), the input gradient is s * s stride-1 convolutions of
# the output gradient, each with the taps that reach that phase, and no zero is
# multiplied: 11.9 ms. The phases are then placed between one another (placed_at_window)
# and summed, in one fusion. The forward
# and the kernel gradient are XLA's own (the kernel gradient split by phases was slower).
# The trainer's ResNet-18 trains 1.05x faster, ResNeXt-50 at 64x64 1.07x (python -m
# kerasnets.benchmarks.alternating resnet18 --trainer --without strided_phases).

STRIDED_INPUT_GRADIENT_BY_PHASES = True
"""Whether a strided convolution on JAX's CPU computes its input gradient by phases
(:func:`strided_conv`); :func:`strided_input_gradient_by_xla` turns it off (read when a
model is traced)."""


def strided_input_gradient_by_xla():
    """Trace models inside this block with XLA's own input gradient of strided
    convolutions, to measure what :func:`strided_conv` changes."""
    return _turned_off("STRIDED_INPUT_GRADIENT_BY_PHASES")


def _convolve(x, kernel, strides, pads):
    return lax.conv_general_dilated(x, kernel, strides, pads,
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def strided_conv(x, kernel, strides, pads):
    """Convolution of NHWC ``x`` with an HWIO ``kernel``, ``strides`` and explicit
    ``pads`` ((top, bottom), (left, right)): XLA's, whose input gradient is computed by
    phases (see above)."""
    return _convolve(x, kernel, strides, pads)


def _strided_forward(x, kernel, strides, pads):
    return _convolve(x, kernel, strides, pads), (x, kernel)


def _phase_taps(phase, pad_before, size, stride):
    """Along one axis, for the input pixels ``phase, phase + stride, ...``: the first
    kernel tap that reaches them, how many taps do (every ``stride``-th), and the output
    pixel the first of them reads with the last tap."""
    first = (phase + pad_before) % stride
    count = max(0, -(-(size - first) // stride))
    return first, count, (phase + pad_before - first) // stride - count + 1


def strided_input_gradient(gradient, kernel, input_hw, strides, pads):
    """The input gradient of :func:`strided_conv`: for each phase (a, b), the input pixels
    (a + i * sh, b + j * sw) get a stride-1 convolution of ``gradient`` with the taps that
    reach them, flipped and with in and out swapped; the phases are placed between one
    another by padding with zeros and summed."""
    n, out_h, out_w, _ = gradient.shape
    transposed = jnp.swapaxes(kernel, 2, 3)
    zero = jnp.zeros((), gradient.dtype)
    total = None
    for a in range(strides[0]):
        rows = -(-(input_hw[0] - a) // strides[0])
        top, count_h, start_h = _phase_taps(a, pads[0][0], kernel.shape[0], strides[0])
        for b in range(strides[1]):
            cols = -(-(input_hw[1] - b) // strides[1])
            left, count_w, start_w = _phase_taps(b, pads[1][0], kernel.shape[1], strides[1])
            if rows <= 0 or cols <= 0 or count_h == 0 or count_w == 0:
                continue  # no input pixel here, or none any tap reaches
            taps = transposed[top::strides[0], left::strides[1]][::-1, ::-1]
            # output rows start_h .. start_h + rows + count_h - 2, zeros outside
            window = lax.pad(gradient, zero, [
                (0, 0, 0),
                (-start_h, start_h + rows + count_h - 1 - out_h, 0),
                (-start_w, start_w + cols + count_w - 1 - out_w, 0),
                (0, 0, 0)])
            phase = _convolve(window, taps, (1, 1), "VALID")
            placed = placed_at_window(phase, a, b, strides, input_hw)
            total = placed if total is None else total + placed
    if total is None:
        total = jnp.zeros((n, *input_hw, kernel.shape[2]), gradient.dtype)
    return total


def _strided_backward(strides, pads, residuals, gradient):
    x, kernel = residuals
    _, kernel_vjp = jax.vjp(lambda k: _convolve(x, k, strides, pads), kernel)
    (kernel_gradient,) = kernel_vjp(gradient)
    input_gradient = strided_input_gradient(gradient, kernel, x.shape[1:3], strides, pads)
    return input_gradient.astype(x.dtype), kernel_gradient


strided_conv.defvjp(_strided_forward, _strided_backward)
