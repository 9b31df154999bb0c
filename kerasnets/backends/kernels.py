"""Convolutions and pooling whose fastest form differs per backend and device.

``kerasnets.layers.Conv2D``, ``GroupConv2D``, ``DepthwiseConv2D`` and
``MaxPooling2D`` route their forward pass here; their weights are exactly those
of the Keras layers they extend, so a rewrite never changes a checkpoint.
Rewrites apply on the CPU only: on a GPU, XLA and cuDNN have fast native
kernels (see ``docs/benchmarks.md`` for the CPU measurements).

What runs where (CPU only; everything else is the Keras op):

=========================  ==========  ===========================================
op                         backend     CPU form
=========================  ==========  ===========================================
grouped convolution        JAX         one convolution per group, concatenated; groups of
                                       <= 4 channels merged into convolutions of 16
                                       channels with block-diagonal kernels
grouped convolution        TF          TF's own with oneDNN (float32, bfloat16); else split
depthwise convolution      JAX         ``kh * kw`` shifted multiply-adds, the kernel
                                       gradient one tap per loop iteration
                                       (``jax_cpu.depthwise_per_tap_gradient``)
1x1 convolution            JAX         one matmul (1.5-2.4x faster than ``lax.conv``)
kxk conv, output <= 3x3    JAX         im2col + one matmul (40x at 2x2x512)
max-pooling                JAX         maximum of ``kh * kw`` strided slices, the
                                       gradient to each window's first maximum
                                       (``jax_cpu.max_pool``)
strided kxk convolution    JAX         XLA's, its input gradient one stride-1
                                       convolution per phase (``jax_cpu.strided_conv``)
every other convolution    JAX         XLA:CPU's own kernel, not YNNPACK's: a flag
                                       ``startup`` adds to ``XLA_FLAGS``; its input and
                                       output held in memory (``jax_cpu.stored``)
every convolution (NHWC)   torch       torch's own kernel on the channels_last view,
max / average pooling      torch       without Keras' copies (``torch_cpu``)
Conv2D kernel storage      torch       torch's memory order, Keras' shape and values
strided 1x1 convolution    torch       strided slice + 1x1 stride-1 convolution
torch's explicit padding   torch       inside torch's kernel (no padded copy); elsewhere
                                       the zeros are added first, as ZeroPadding2D does
BatchNormalization         torch, TF   one fused kernel (``batch_norm`` below)
NCHW conv and pooling      TF          in NHWC between two transposes
=========================  ==========  ===========================================

TensorFlow's CPU convolution, depthwise convolution and pooling kernels are NHWC
only unless TF was built with oneDNN's NCHW kernels for that CPU (an AMD EPYC
without AVX-512 has none: "The Conv2D op currently only supports the NHWC tensor
format on the CPU"), so on a TF CPU a ``channels_first`` model computes every such
op in NHWC between two transposes: the same sums, in any TF build.
"""

from __future__ import annotations

import keras
from keras import ops

from kerasnets.backends import devices
from kerasnets.backends.padding import is_explicit, output_size, pair, same_padding


# XLA:CPU's convolution is slow on tiny feature maps (a 3x3 512->512 convolution on
# 2x2 maps: 1.6 s forward+backward at batch 32, 40 ms as im2col + matmul); from 4x4 on
# the two are even (``python -m kerasnets.benchmarks.jax_conv``, docs/benchmarks.md).
IM2COL_MAX_OUTPUT_PIXELS = 9


def _jax_cpu() -> bool:
    return devices.backend() == "jax" and devices.on_cpu()


def _tf_cpu_nchw(data_format) -> bool:
    return (data_format == "channels_first" and devices.backend() == "tensorflow"
            and devices.on_cpu())


def _torch_cpu() -> bool:
    return devices.backend() == "torch" and devices.on_cpu()


def _torch_cpu_nhwc(data_format) -> bool:
    """Where :mod:`kerasnets.backends.torch_cpu` replaces Keras' copying ops."""
    return data_format == "channels_last" and _torch_cpu()


def _strided_1x1_on_torch_cpu(kernel, strides, dilation_rate) -> bool:
    return (tuple(kernel.shape[:2]) == (1, 1) and pair(strides) != (1, 1)
            and pair(dilation_rate) == (1, 1) and _torch_cpu())


def store_conv_kernel(variable, data_format) -> None:
    """Lay out a just-built ``Conv2D`` kernel variable ``(kh, kw, in // groups, out)``
    for the device's convolution: on torch's CPU (channels_last), in torch's own memory
    order, so no convolution transposes it (``torch_cpu.store_in_torch_layout``; the
    same shape and values). Elsewhere as Keras made it."""
    if _torch_cpu_nhwc(data_format):
        from kerasnets.backends import torch_cpu

        torch_cpu.store_in_torch_layout(variable)


def _zero_pad(inputs, padding, data_format):
    """``(inputs, padding)`` for Keras' ops, which take "valid" or "same" only: explicit
    ``((top, bottom), (left, right))`` zeros are added first (what ``ZeroPadding2D``
    does) and the convolution is then "valid"."""
    if not is_explicit(padding):
        return inputs, padding
    spatial = [tuple(pad) for pad in padding]
    pads = ([(0, 0), *spatial, (0, 0)] if data_format == "channels_last"
            else [(0, 0), (0, 0), *spatial])
    return ops.pad(inputs, pads), "valid"


def _in_nhwc(op, inputs, **kwargs):
    """``op(inputs, data_format="channels_last", **kwargs)`` on NCHW ``inputs``, as NCHW."""
    out = op(ops.transpose(inputs, (0, 2, 3, 1)), data_format="channels_last", **kwargs)
    return ops.transpose(out, (0, 3, 1, 2))


def conv(inputs, kernel, *, strides, padding, dilation_rate, data_format):
    """2-D convolution with a ``Conv2D`` kernel ``(kh, kw, in, out)``.

    ``padding`` is "valid", "same" or torch's explicit zeros ``((top, bottom), (left,
    right))`` (see ``kerasnets.layers.Conv2D``'s ``zero_padding``): torch's CPU pads
    inside its kernel, every other device adds the zeros first.

    On JAX on the CPU, a 1x1 convolution is one matmul and a convolution whose output
    has at most ``IM2COL_MAX_OUTPUT_PIXELS`` pixels is im2col + one matmul; both are
    the same sums as ``lax.conv`` (float64 gradient parity in the tests).
    """
    as_matmul = _jax_cpu() and _as_matmul_on_jax(inputs, kernel, strides=strides,
                                                 padding=padding,
                                                 dilation_rate=dilation_rate,
                                                 data_format=data_format)
    xla_kernel_on_jax = _jax_cpu() and not as_matmul
    store = xla_kernel_on_jax and _jax_stores_conv_operands()
    if store:  # before the zeros are added: a padded first element is a constant
        inputs = _jax_stored(inputs)
    if xla_kernel_on_jax and _by_phases_on_jax(strides, dilation_rate, data_format):
        out = _strided_conv_on_jax(inputs, kernel, strides=pair(strides), padding=padding)
        return _jax_stored(out) if store else out
    if not _torch_cpu_nhwc(data_format) or _strided_1x1_on_torch_cpu(kernel, strides,
                                                                    dilation_rate):
        inputs, padding = _zero_pad(inputs, padding, data_format)
    if _tf_cpu_nchw(data_format):
        return _in_nhwc(ops.conv, inputs, kernel=kernel, strides=strides, padding=padding,
                        dilation_rate=dilation_rate)
    if _strided_1x1_on_torch_cpu(kernel, strides, dilation_rate):
        # PyTorch 2.14.1's CPU kernel for a strided 1x1 convolution in channels_last
        # memory (which Keras' torch backend always uses) returns a wrong kernel
        # gradient now and then: 47 of 3,000 calls on an AMD EPYC with AVX2, 0 of 3,000
        # as a strided slice and a 1x1 stride-1 convolution (the same sums; "same"
        # padding of a 1x1 kernel is none). Every ResNet downsample shortcut is one.
        sh, sw = pair(strides)
        inputs = (inputs[:, ::sh, ::sw, :] if data_format == "channels_last"
                  else inputs[:, :, ::sh, ::sw])
        strides, padding = 1, "valid"
    if _torch_cpu_nhwc(data_format):
        from kerasnets.backends import torch_cpu

        return torch_cpu.conv(inputs, ops.convert_to_tensor(kernel), strides=strides,
                              padding=padding, dilation_rate=dilation_rate)
    if as_matmul:
        return _conv_as_matmul(inputs, kernel, strides=pair(strides), padding=padding,
                               data_format=data_format)
    out = ops.conv(inputs, kernel, strides=strides, padding=padding,
                   dilation_rate=dilation_rate, data_format=data_format)
    return _jax_stored(out) if store else out


def _as_matmul_on_jax(inputs, kernel, *, strides, padding, dilation_rate, data_format):
    """Whether JAX's CPU computes this convolution as a matmul (:func:`conv`); padding
    may still be torch's explicit zeros."""
    if pair(dilation_rate) != (1, 1):
        return False
    kh, kw = kernel.shape[0], kernel.shape[1]
    spatial = inputs.shape[1:3] if data_format == "channels_last" else inputs.shape[2:4]
    if is_explicit(padding):
        spatial = [None if spatial[a] is None else spatial[a] + sum(padding[a])
                   for a in range(2)]
        padding = "valid"
    out = [output_size(spatial[a], (kh, kw)[a], pair(strides)[a], padding) for a in range(2)]
    return (kh, kw) == (1, 1) or (None not in out and out[0] * out[1] <= IM2COL_MAX_OUTPUT_PIXELS)


def _by_phases_on_jax(strides, dilation_rate, data_format) -> bool:
    """Whether a strided convolution JAX's CPU hands to XLA's own kernel takes its input
    gradient by phases (:func:`kerasnets.backends.jax_cpu.strided_conv`)."""
    from kerasnets.backends import jax_cpu

    return (pair(strides) != (1, 1) and pair(dilation_rate) == (1, 1)
            and data_format == "channels_last" and jax_cpu.STRIDED_INPUT_GRADIENT_BY_PHASES)


def _strided_conv_on_jax(inputs, kernel, *, strides, padding):
    """:func:`kerasnets.backends.jax_cpu.strided_conv` with Keras' or torch's padding
    given to XLA's convolution (no padded copy of the input)."""
    from kerasnets.backends import jax_cpu

    kernel = ops.convert_to_tensor(kernel)
    if padding == "same":
        pads = tuple(same_padding(inputs.shape[1 + a], kernel.shape[a], strides[a], 1)
                     for a in range(2))
    elif padding == "valid":
        pads = ((0, 0), (0, 0))
    else:
        pads = tuple(tuple(pad) for pad in padding)
    return jax_cpu.strided_conv(inputs, kernel.astype(inputs.dtype), strides, pads)


def _jax_stores_conv_operands() -> bool:
    """Whether a convolution JAX's CPU hands to XLA's own kernel holds its input and
    output in memory (:func:`kerasnets.backends.jax_cpu.stored`)."""
    from kerasnets.backends import jax_cpu

    return jax_cpu.STORE_CONVOLUTION_OPERANDS


def _jax_stored(x):
    from kerasnets.backends import jax_cpu

    return jax_cpu.stored(x)


def _windows(x, kh, kw, strides, padding):
    """The ``kh * kw`` strided slices of NHWC ``x`` a (kh, kw) window visits, in
    row-major kernel order, each of the output's spatial size."""
    import jax.numpy as jnp

    if padding == "same":
        pads = [same_padding(x.shape[1 + a], (kh, kw)[a], strides[a], 1) for a in range(2)]
        x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    from kerasnets.backends import jax_cpu

    out_hw = ((x.shape[1] - kh) // strides[0] + 1, (x.shape[2] - kw) // strides[1] + 1)
    return [jax_cpu.strided_window(x, i, j, strides, out_hw)
            for i in range(kh) for j in range(kw)]


def _conv_as_matmul(inputs, kernel, *, strides, padding, data_format):
    import jax.numpy as jnp

    kernel = ops.convert_to_tensor(kernel)
    x = inputs if data_format == "channels_last" else jnp.transpose(inputs, (0, 2, 3, 1))
    kh, kw, cin, cout = kernel.shape
    windows = _windows(x, kh, kw, strides, padding)
    patches = windows[0] if len(windows) == 1 else jnp.concatenate(windows, axis=-1)
    n, out_h, out_w = patches.shape[:3]
    out = jnp.matmul(patches.reshape(-1, kh * kw * cin),
                     kernel.reshape(kh * kw * cin, cout).astype(patches.dtype))
    out = out.reshape(n, out_h, out_w, cout)
    return out if data_format == "channels_last" else jnp.transpose(out, (0, 3, 1, 2))


def max_pool(inputs, *, pool_size, strides, padding, data_format):
    """Max-pooling. On JAX on the CPU, the maximum of the window's strided slices:
    XLA:CPU runs ``reduce_window``'s gradient as select-and-scatter, 5-10x slower
    (3x3/2 at 32x32x64: 43 ms vs 4.3 ms); its gradient goes to the first maximum of each
    window, as torch's and TensorFlow's do (``jax_cpu.max_pool``)."""
    if _tf_cpu_nchw(data_format):
        return _in_nhwc(ops.max_pool, inputs, pool_size=pool_size, strides=strides,
                        padding=padding)
    if _torch_cpu_nhwc(data_format):
        from kerasnets.backends import torch_cpu

        return torch_cpu.max_pool(inputs, pool_size=pool_size, strides=strides,
                                  padding=padding)
    if not _jax_cpu():
        return ops.max_pool(inputs, pool_size=pool_size, strides=strides, padding=padding,
                            data_format=data_format)
    import jax.numpy as jnp

    kh, kw = pair(pool_size)
    x = inputs if data_format == "channels_last" else jnp.transpose(inputs, (0, 2, 3, 1))
    if padding == "same":  # pad with -inf: a padded pixel never wins
        pads = [same_padding(x.shape[1 + a], (kh, kw)[a], pair(strides)[a], 1)
                for a in range(2)]
        x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=-jnp.inf)
    from kerasnets.backends import jax_cpu

    pool = (jax_cpu.max_pool if jax_cpu.MAX_POOL_GRADIENT_TO_FIRST_MAXIMUM
            else jax_cpu.maximum_of_windows)
    out = pool(x, (kh, kw), pair(strides))
    return out if data_format == "channels_last" else jnp.transpose(out, (0, 3, 1, 2))


def grouped_conv(inputs, kernel, *, strides, padding, dilation_rate, groups, data_format,
                 form=None):
    """2-D convolution with ``groups`` groups and a ``Conv2D(groups=...)`` kernel, in
    ``form`` (default: :func:`grouped_conv_form`'s choice for this device and dtype; the
    benchmark names each form to time it).

    ``kernel`` has the layout of ``keras.layers.Conv2D(groups=g)``:
    ``(kh, kw, in_channels // g, out_channels)``, output channels ordered group
    by group. Where it runs (:func:`grouped_conv_form`), forward + backward of
    ResNeXt-50's 3x3 grouped convolutions (32 groups; ``python -m
    kerasnets.benchmarks.grouped_conv``, docs/benchmarks.md):

    * TF's CPU with oneDNN: TensorFlow's own kernel, 1.2-6x faster than one convolution
      per group (16x16x128 at batch 32: 7.0 vs 20.7 ms). Not Keras' ``ops.conv``, which
      compiles every grouped convolution on TF with XLA (2.5 s there);
    * JAX's CPU: one convolution per group (XLA:CPU's grouped kernel: 2.5 s vs 25 ms),
      and on TF without oneDNN, or in float16/float64, which have no CPU gradient kernel;
    * torch's CPU: torch's own kernel without Keras' copies (``torch_cpu.conv``);
    * every GPU: Keras' op (native kernels).
    """
    if groups == 1:
        return conv(inputs, kernel, strides=strides, padding=padding,
                    dilation_rate=dilation_rate, data_format=data_format)
    form = form or grouped_conv_form(inputs.dtype)
    if not (form == "torch" and _torch_cpu_nhwc(data_format)):
        inputs, padding = _zero_pad(inputs, padding, data_format)
    if _tf_cpu_nchw(data_format):  # one pair of transposes, not one per group
        return _in_nhwc(grouped_conv, inputs, kernel=kernel, strides=strides, padding=padding,
                        dilation_rate=dilation_rate, groups=groups, form=form)
    if form == "torch" and data_format == "channels_last":
        from kerasnets.backends import torch_cpu

        return torch_cpu.conv(inputs, ops.convert_to_tensor(kernel), strides=strides,
                              padding=padding, dilation_rate=dilation_rate, groups=groups)
    if form == "tensorflow":
        return _tf_grouped_conv(inputs, kernel, strides=strides, padding=padding,
                                dilation_rate=dilation_rate)
    if form == "split":
        channel_axis = -1 if data_format == "channels_last" else 1
        block = _groups_per_block_on_jax(kernel, groups, data_format)
        kernels = (ops.split(kernel, groups, axis=-1) if block == 1
                   else _block_diagonal_kernels(kernel, groups, block))
        outputs = [conv(x, k, strides=strides, padding=padding, dilation_rate=dilation_rate,
                        data_format=data_format)
                   for x, k in zip(ops.split(inputs, groups // block, axis=channel_axis),
                                   kernels)]
        return ops.concatenate(outputs, axis=channel_axis)
    return ops.conv(inputs, kernel, strides=strides, padding=padding,
                    dilation_rate=dilation_rate, data_format=data_format)


# XLA:CPU's convolution is slow with few channels: ResNeXt-50 32x4d's first stage, 32
# groups of 4 channels, took 239 ms forward + backward one convolution per group (28x28,
# batch 128). Groups merged four by four into convolutions of 16 channels, whose kernels
# hold the groups' kernels on their diagonal and zeros elsewhere, do four times the
# multiplications and take 136 ms; 16x16, batch 32: 14.9 -> 10.0 ms (python -m
# kerasnets.benchmarks.grouped_conv). Blocks of 16 channels were the fastest for 1, 2 and 4
# channels a group; with 8 channels a group, two by two was even (a throwaway sweep,
# docs/benchmarks.md).
# ResNeXt-50 trains 1.08x faster at 64x64, 1.06x on the trainer's workload (python -m
# kerasnets.benchmarks.alternating resnext50_32x4d --without group_blocks).
GROUP_BLOCK_CHANNELS = 16
GROUP_BLOCK_MAX_GROUP_CHANNELS = 4


def _groups_per_block_on_jax(kernel, groups, data_format) -> int:
    """How many groups one convolution of the split form computes on JAX's CPU (1
    elsewhere, for groups of more than ``GROUP_BLOCK_MAX_GROUP_CHANNELS`` input channels,
    and inside ``jax_cpu.groups_one_by_one``)."""
    from kerasnets.backends import jax_cpu

    per_group = kernel.shape[2]
    if not (_jax_cpu() and data_format == "channels_last" and jax_cpu.GROUPS_IN_BLOCKS
            and per_group <= GROUP_BLOCK_MAX_GROUP_CHANNELS):
        return 1
    block = min(groups, max(1, GROUP_BLOCK_CHANNELS // per_group))
    while groups % block:
        block -= 1
    return block


def _block_diagonal_kernels(kernel, groups, block):
    """The kernels of ``groups // block`` convolutions, each computing ``block`` groups:
    the groups' kernels on the diagonal, zeros elsewhere (input channel ``b * in + c`` of
    a block feeds only output channels ``b * out ...`` of the same group ``b``)."""
    kh, kw, per_group, filters = kernel.shape
    per_group_out = filters // groups
    kernel = ops.reshape(ops.convert_to_tensor(kernel),
                         (kh, kw, per_group, groups // block, block, per_group_out))
    diagonal = ops.einsum("hwcsed,be->shwbced", kernel, ops.eye(block, dtype=kernel.dtype))
    diagonal = ops.reshape(diagonal, (groups // block, kh, kw, block * per_group,
                                      block * per_group_out))
    return [diagonal[s] for s in range(groups // block)]


def grouped_conv_form(dtype="float32") -> str:
    """How :func:`grouped_conv` computes ``dtype`` inputs here: ``"keras"`` (Keras' op:
    on a GPU), ``"torch"`` (torch's own kernel without Keras' copies: torch's CPU;
    Keras' op for ``channels_first``), ``"tensorflow"`` (TF's own kernel: TF's CPU with
    oneDNN, float32 and bfloat16, the types oneDNN computes; TF has no CPU gradient
    kernel for float16 or float64 groups) or ``"split"`` (one convolution per group:
    JAX's CPU, and TF's CPU otherwise)."""
    if not devices.on_cpu():
        return "keras"
    if devices.backend() == "torch":
        return "torch"
    if (devices.backend() == "tensorflow" and devices.tf_onednn()
            and keras.backend.standardize_dtype(dtype) in ("float32", "bfloat16")):
        return "tensorflow"
    return "split"


def _tf_grouped_conv(inputs, kernel, *, strides, padding, dilation_rate):
    """TensorFlow's own grouped convolution (NHWC). Keras' ``ops.conv`` compiles every
    grouped convolution on TF with XLA ("broken on CPU without XLA"), whose CPU kernel
    is as slow as JAX's; with oneDNN TensorFlow's kernel is not broken, and fast."""
    import tensorflow as tf

    return tf.nn.convolution(inputs, kernel, strides=pair(strides),
                             padding=padding.upper(), dilations=pair(dilation_rate),
                             data_format="NHWC")


def depthwise_conv(inputs, kernel, *, strides, padding, dilation_rate, data_format):
    """Depthwise 2-D convolution with a ``DepthwiseConv2D`` kernel ``(kh, kw, C, 1)``.

    On JAX (XLA:CPU) a depthwise convolution is a grouped convolution with one
    group per channel, which XLA:CPU runs 5-10x slower than TensorFlow; there it is
    written as ``kh * kw`` shifted multiply-adds, which XLA fuses into one loop.
    ``padding`` as in :func:`conv`.
    """
    if not _torch_cpu_nhwc(data_format):
        inputs, padding = _zero_pad(inputs, padding, data_format)
    if _tf_cpu_nchw(data_format):
        return _in_nhwc(ops.depthwise_conv, inputs, kernel=kernel, strides=strides,
                        padding=padding, dilation_rate=dilation_rate)
    if _torch_cpu_nhwc(data_format):
        from kerasnets.backends import torch_cpu

        return torch_cpu.depthwise_conv(inputs, ops.convert_to_tensor(kernel), strides=strides,
                                        padding=padding, dilation_rate=dilation_rate)
    if devices.backend() == "jax" and kernel.shape[-1] == 1 and devices.on_cpu():
        return _depthwise_shifted(inputs, kernel, strides=strides, padding=padding,
                                  dilation_rate=dilation_rate, data_format=data_format)
    return ops.depthwise_conv(
        inputs, kernel, strides=strides, padding=padding,
        dilation_rate=dilation_rate, data_format=data_format,
    )


def _depthwise_shifted(inputs, kernel, *, strides, padding, dilation_rate, data_format):
    import jax.numpy as jnp

    strides, dilation = pair(strides), pair(dilation_rate)
    kernel = ops.convert_to_tensor(kernel)
    x = inputs if data_format == "channels_last" else jnp.transpose(inputs, (0, 2, 3, 1))
    kh, kw = kernel.shape[0], kernel.shape[1]
    if padding == "same":
        pads = [same_padding(x.shape[1 + a], (kh, kw)[a], strides[a], dilation[a])
                for a in range(2)]
        x = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    height, width = x.shape[1], x.shape[2]
    out_h = (height - (kh - 1) * dilation[0] - 1) // strides[0] + 1
    out_w = (width - (kw - 1) * dilation[1] - 1) // strides[1] + 1
    weights = kernel[..., 0].astype(x.dtype)  # (kh, kw, C)
    from kerasnets.backends import jax_cpu

    # The kernel gradient as one reduction per tap in a loop (see jax_cpu).
    taps = (jax_cpu.depthwise_per_tap_gradient if jax_cpu.DEPTHWISE_KERNEL_GRADIENT_PER_TAP
            else jax_cpu.shifted_multiply_adds)
    out = taps(x, weights, strides, dilation, (out_h, out_w))
    return out if data_format == "channels_last" else jnp.transpose(out, (0, 3, 1, 2))


def average_pool(inputs, *, pool_size, strides, padding, data_format):
    """Average pooling: the Keras op (in NHWC on a TF CPU, see the module docstring;
    without Keras' copies on torch's CPU, "valid" padding)."""
    if _torch_cpu_nhwc(data_format) and padding == "valid":
        from kerasnets.backends import torch_cpu

        return torch_cpu.average_pool(inputs, pool_size=pool_size, strides=strides)
    if _tf_cpu_nchw(data_format):
        return _in_nhwc(ops.average_pool, inputs, pool_size=pool_size, strides=strides,
                        padding=padding)
    return ops.average_pool(inputs, pool_size=pool_size, strides=strides, padding=padding,
                            data_format=data_format)


def batch_norm(layer, inputs, training: bool):
    """``layer`` (a ``keras.layers.BatchNormalization``) on ``inputs`` as one fused
    kernel, updating its moving statistics as Keras does; None where Keras' own
    computation is to run (not a CPU; JAX, whose XLA fuses Keras' ops itself; a mask,
    renorm or synchronisation; float16/bfloat16 inputs, which Keras computes in
    float32; float64 on TF, whose fused kernel has none; channels_first on TF; one
    value per channel in training on torch, whose kernel refuses it).

    On torch and TF Keras computes the moments and normalises with separate ops, each
    a pass over the feature map forward and backward; the fused kernel is one pass
    each way. Training images/s, alternating runs of ``python -m
    kerasnets.benchmarks.workloads`` on an AMD EPYC (docs/benchmarks.md): torch,
    ResNet-18 on the trainer's 28x28x1 at batch 128, 34.6 and 34.9 -> 36.5 and 39.6;
    TF (oneDNN), 64x64x3 at batch 32, DenseNet-121 75.1 and 77.0 -> 89.1 and 89.3,
    ResNet-18 154 and 165 -> 174 and 183, MobileNetV2 219 and 138 -> 322 and 269.
    Keras' moving variance uses the biased batch variance, the fused kernels return
    the unbiased one: the biased one is recovered exactly (``* (n - 1) / n``).
    """
    if not devices.on_cpu():
        return None
    fused = {"torch": _torch_fused_batch_norm, "tensorflow": _tf_fused_batch_norm}
    backend = devices.backend()
    return fused[backend](layer, inputs, training) if backend in fused else None


def _update_moving_statistics(layer, mean, variance):
    """Keras' update of ``layer``'s moving statistics with a batch's mean and biased
    variance (in their dtype)."""
    m = layer.momentum
    for moving, batch in ((layer.moving_mean, mean), (layer.moving_variance, variance)):
        moving.assign(ops.cast(moving.value, batch.dtype) * m + batch * (1 - m))


def _torch_fused_batch_norm(layer, inputs, training):
    """``torch.nn.functional.batch_norm``; the batch statistics are read from scratch
    buffers it updates with momentum 1.

    The moving statistics are updated in torch's own ops, with Keras' arithmetic: Keras'
    ops convert each Python scalar to a tensor (0.3 ms a layer per forward pass under
    cProfile). No step got measurably faster for it: MobileNetV2 at 64x64 trained at
    248.7 and 246.9 images/s before, 240.5 and 229.9 after, in alternating
    ``python -m kerasnets.benchmarks.workloads`` runs (docs/benchmarks.md)."""
    import torch
    import torch.nn.functional as F

    x = inputs if isinstance(inputs, torch.Tensor) else ops.convert_to_tensor(inputs)
    axis = layer.axis % x.ndim
    if x.device.type != "cpu" or x.ndim not in (2, 4) or axis not in (1, x.ndim - 1) \
            or x.dtype not in (torch.float32, torch.float64) or layer.renorm \
            or layer.synchronized:
        return None
    channels = x.shape[axis]
    n = x.numel() // channels  # values per channel
    if training and n < 2:  # torch refuses; Keras normalises to beta (variance 0)
        return None
    channels_last = x.ndim == 4 and axis == 3
    nchw = x.permute(0, 3, 1, 2) if channels_last else x  # channels_last memory: no copy
    gamma = layer.gamma.value.to(x.dtype) if layer.scale else None
    beta = layer.beta.value.to(x.dtype) if layer.center else None
    if training:
        mean = torch.zeros(channels, dtype=x.dtype)
        variance = torch.ones(channels, dtype=x.dtype)
        out = F.batch_norm(nchw, mean, variance, gamma, beta, training=True, momentum=1.0,
                           eps=layer.epsilon)
        # Keras' update (moving * m + batch * (1 - m), in the batch's dtype) with the
        # biased variance; not in place: torch's backward reads the buffers
        biased = variance * ((n - 1) / n)
        m = layer.momentum
        with torch.no_grad():
            for moving, batch in ((layer.moving_mean, mean), (layer.moving_variance, biased)):
                moving.assign(moving.value.to(batch.dtype) * m + batch * (1 - m))
    else:
        out = F.batch_norm(nchw, layer.moving_mean.value.to(x.dtype),
                           layer.moving_variance.value.to(x.dtype), gamma, beta,
                           training=False, eps=layer.epsilon)
    out = out.permute(0, 2, 3, 1) if channels_last else out
    return out if out.dtype == getattr(torch, layer.compute_dtype) else \
        ops.cast(out, layer.compute_dtype)


def _tf_fused_batch_norm(layer, inputs, training):
    """TensorFlow's ``FusedBatchNormV3`` (NHWC, float32), called as a raw op: the
    Python wrapper ``tf.nn.fused_batch_norm`` raises epsilon to 1.001e-5 (cuDNN's
    floor), and torchvision's is 1e-5. Its batch variance is the unbiased one; Keras'
    moving variance takes the biased one, recovered exactly as on torch (0 for one value
    per channel, where the unbiased one divides by zero)."""
    import tensorflow as tf

    x = tf.convert_to_tensor(inputs)
    if x.shape.rank != 4 or layer.axis % 4 != 3 or x.dtype != tf.float32 \
            or layer.renorm or layer.synchronized:
        return None
    channels = x.shape[3]
    gamma = layer.gamma.value if layer.scale else tf.ones((channels,), x.dtype)
    beta = layer.beta.value if layer.center else tf.zeros((channels,), x.dtype)
    if not training:
        y, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x, scale=gamma, offset=beta, mean=layer.moving_mean.value,
            variance=layer.moving_variance.value, epsilon=layer.epsilon,
            data_format="NHWC", is_training=False)
        return y
    empty = tf.constant([], x.dtype)
    y, mean, unbiased, *_ = tf.raw_ops.FusedBatchNormV3(
        x=x, scale=gamma, offset=beta, mean=empty, variance=empty, epsilon=layer.epsilon,
        exponential_avg_factor=1.0, data_format="NHWC", is_training=True)
    n = tf.cast(tf.size(x) // channels, x.dtype)  # values per channel (the batch may be unknown)
    _update_moving_statistics(
        layer, mean, tf.where(n > 1, unbiased * ((n - 1) / n), tf.zeros_like(unbiased)))
    return y
