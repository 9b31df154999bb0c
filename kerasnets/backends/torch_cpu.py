"""Convolution and pooling on torch's CPU without the copies Keras' torch backend makes.

For a channels_last model, Keras 3.15.1's torch ``conv``, ``depthwise_conv``,
``max_pool`` and ``average_pool`` copy every input from NHWC to NCHW-contiguous memory
and the convolutions copy it back to channels_last memory (keras-team/keras#23279), and
the convolutions transpose the ``(kh, kw, in, out)`` kernel to torch's
``(out, in, kh, kw)`` as one strided copy, forward and again for its gradient. On
ResNet-18 at 64x64 (batch 32) these copies were 20% of a training step (``torch.profiler``):
8.8 ms for each copy of a 3x3 512->512 kernel, 9 ms for each copy of the 32x32x64 stem
output around the max-pool, whose NCHW pooling kernel then took 8.6 ms against 0.5 ms in
channels_last memory.

Here the NHWC tensor is read as NCHW in channels_last memory, which is the same memory
(no copy), and the kernel goes to torch's layout, channels_last, as one 2-D transpose
each way (:class:`_KerasKernel`: 2.7 ms for that kernel). The sums are torch's own
kernels' (oneDNN), as in Keras' path; only the copies are gone. Training images/s,
alternating runs (docs/benchmarks.md): ResNet-18 at 64x64 107-122 -> 141-146.

A kernel stored by :func:`store_in_torch_layout` (what ``kerasnets.layers.Conv2D`` does
on torch's CPU) needs no transpose at all: its shape and values are Keras', its memory
is torch's channels_last ``(out, kh, kw, in)``, so torch's layout is a free view, and
its gradient comes back in the variable's own memory order; the optimizer's slots
follow that order (``keras_patches.torch_slots_follow_variable_layout``), so the
update stays one contiguous pass. The transposes were 28 of 245 ms of a ResNet-18 step
(64x64, batch 32); training images/s there, alternating runs: 127-135 -> 146-167.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kerasnets.backends import keras_patches
from kerasnets.backends.padding import is_explicit, pair, same_padding


class _KerasKernel(torch.autograd.Function):
    """A Keras kernel ``(kh, kw, in, out)`` as torch's ``(out, in, kh, kw)`` in
    channels_last memory (``(out, kh, kw, in)`` in memory): one 2-D transpose of the
    ``(kh * kw * in, out)`` matrix, and one back for the gradient. ``torch.permute``
    followed by a copy is the same transpose done element by element, 3x slower on a
    kernel larger than the cache."""

    @staticmethod
    def forward(ctx, kernel):
        kh, kw, cin, cout = kernel.shape
        matrix = kernel.reshape(kh * kw * cin, cout).t().contiguous()
        return matrix.view(cout, kh, kw, cin).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        cout, cin, kh, kw = grad.shape
        matrix = grad.permute(0, 2, 3, 1).reshape(cout, kh * kw * cin)
        return matrix.t().contiguous().view(kh, kw, cin, cout)


def _torch_layout_view(kernel):
    """``kernel`` ``(kh, kw, in, out)`` seen as torch's ``(out, in, kh, kw)``."""
    return kernel.permute(3, 2, 0, 1)


def _in_torch_layout(kernel):
    """A Keras kernel as torch's ``(out, in, kh, kw)`` in channels_last memory: a view
    of a kernel stored by :func:`store_in_torch_layout`, else one 2-D transpose."""
    view = _torch_layout_view(kernel)
    if view.is_contiguous(memory_format=torch.channels_last):
        return view
    return _KerasKernel.apply(kernel)


def store_in_torch_layout(variable) -> bool:
    """Store a ``Conv2D`` kernel variable ``(kh, kw, in // groups, out)`` in torch's
    channels_last memory order ``(out, kh, kw, in)``: the same shape and values (checkpoints,
    ``get_weights`` and every op see nothing different), other strides. True if it did;
    False on a Keras version whose variables it does not know (the kernel then stays in
    Keras' layout and :class:`_KerasKernel` transposes it per call: slower, the same sums).
    """
    value = keras_patches.torch_variable_storage(variable)
    if value is None or value.ndim != 4 or value.device.type != "cpu":
        return False
    if not _torch_layout_view(value).is_contiguous(memory_format=torch.channels_last):
        relaid = value.detach().permute(3, 0, 1, 2).contiguous().permute(1, 2, 3, 0)
        keras_patches.set_torch_variable_storage(variable, relaid)
    keras_patches.torch_slots_follow_variable_layout()
    return True


def _padded(x, kernel_size, strides, dilation, padding, mode="constant"):
    """``x`` (NCHW) and the symmetric padding to pass to torch for ``padding`` (Keras'
    "valid" or "same", or explicit ``((top, bottom), (left, right))`` zeros); an
    asymmetric padding is applied to ``x`` with ``mode``, as Keras does.

    Explicit zeros go to torch's kernel, not into a padded copy: the copy (``F.pad``)
    and a stride-2 "valid" convolution over it took 1.07-2.1x as long, forward +
    backward, as the convolution told to pad (MobileNetV2's 3x3/2 depthwise at 32x32x96,
    batch 32: 5.95 and 6.61 against 3.36 and 3.37 ms; ResNet-18's 3x3/2 to 512 at
    7x7x256, batch 128: 87.1 against 64.3; ``KERAS_BACKEND=torch python -m
    kerasnets.benchmarks.padding``, docs/benchmarks.md)."""
    if padding == "valid":
        return x, 0
    if is_explicit(padding):
        pads = [tuple(pad) for pad in padding]
    else:
        pads = [same_padding(x.shape[2 + a], kernel_size[a], strides[a], dilation[a])
                for a in range(2)]
    if all(before == after for before, after in pads):
        return x, [before for before, _ in pads]
    (top, bottom), (left, right) = pads
    return F.pad(x, (left, right, top, bottom), mode=mode), 0


def conv(inputs, kernel, *, strides, padding, dilation_rate, groups=1):
    """``ops.conv`` of NHWC ``inputs`` with a ``Conv2D`` kernel ``(kh, kw, in // groups,
    out)``, as ``F.conv2d`` on the channels_last view."""
    kh, kw = kernel.shape[:2]
    strides, dilation = pair(strides), pair(dilation_rate)
    x, pad = _padded(inputs.permute(0, 3, 1, 2), (kh, kw), strides, dilation, padding)
    out = F.conv2d(x, _in_torch_layout(kernel), stride=strides, padding=pad,
                   dilation=dilation, groups=groups)
    return out.permute(0, 2, 3, 1)


def depthwise_conv(inputs, kernel, *, strides, padding, dilation_rate):
    """``ops.depthwise_conv`` of NHWC ``inputs`` with a ``(kh, kw, C, multiplier)``
    kernel: a convolution with one group per channel, output channel ``c * multiplier
    + j`` from ``kernel[..., c, j]`` as in Keras."""
    kh, kw, channels, multiplier = kernel.shape
    return conv(inputs, kernel.reshape(kh, kw, 1, channels * multiplier), strides=strides,
                padding=padding, dilation_rate=dilation_rate, groups=channels)


def max_pool(inputs, *, pool_size, strides, padding):
    """``ops.max_pool`` of NHWC ``inputs``: "same" pads with torch's implicit -inf, or
    repeats the edge where the padding is asymmetric (as Keras does; neither can win)."""
    pool_size, strides = pair(pool_size), pair(strides)
    x, pad = _padded(inputs.permute(0, 3, 1, 2), pool_size, strides, (1, 1), padding,
                     mode="replicate")
    return F.max_pool2d(x, pool_size, strides, padding=pad).permute(0, 2, 3, 1)


def average_pool(inputs, *, pool_size, strides):
    """``ops.average_pool(padding="valid")`` of NHWC ``inputs``."""
    return F.avg_pool2d(inputs.permute(0, 3, 1, 2), pair(pool_size),
                        pair(strides)).permute(0, 2, 3, 1)
