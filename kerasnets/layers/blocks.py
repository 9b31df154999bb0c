"""Building blocks shared by every family.

Each helper takes a tensor and returns a tensor, creates named layers only
(names are the weight-compatibility API), and follows PyTorch's conventions so
that torchvision's weights give torchvision's outputs:

* padding is given as torch gives it (an int per side); stride-1 convolutions
  with symmetric padding use Keras ``"same"``, every other convolution takes
  torch's zeros itself (``zero_padding``), because Keras ``"same"`` with stride 2
  pads bottom/right only; pooling pads with a ``ZeroPadding2D`` layer;
* BatchNorm takes torch's epsilon and momentum (Keras momentum = 1 - torch's);
* the data format comes from ``keras.config.image_data_format()``, which
  :func:`kerasnets.create_model` sets while a model is built.
"""

from __future__ import annotations

import keras

from kerasnets.layers.conv import Conv2D, DepthwiseConv2D, GroupConv2D
from kerasnets.layers.initializers import glorot_uniform, kaiming_normal_fan_out
from kerasnets.layers.normalization import BatchNormalization
from kerasnets.layers.pooling import AdaptiveAveragePooling2D, AveragePooling2D, MaxPooling2D


def channels_last() -> bool:
    return keras.config.image_data_format() == "channels_last"


def channel_axis() -> int:
    return -1 if channels_last() else 1


def num_channels(x) -> int:
    return x.shape[channel_axis()]


def spatial_shape(x):
    return tuple(x.shape[1:3]) if channels_last() else tuple(x.shape[2:4])


def zero_pad(x, padding, *, name):
    """Pad ``padding`` pixels: an int, or ``((top, bottom), (left, right))``."""
    return keras.layers.ZeroPadding2D(padding, name=name)(x)


def conv2d(x, filters, kernel_size, *, name, stride=1, padding=None, groups=1,
           dilation=1, use_bias=False, kernel_initializer=None):
    """``torch.nn.Conv2d`` semantics on a Keras tensor.

    ``padding`` is torch's symmetric padding per side; ``None`` means
    ``dilation * (kernel_size - 1) // 2`` ("same" for odd kernels).
    ``groups == in_channels == filters`` gives a depthwise convolution.
    ``kernel_initializer`` defaults to torchvision's (Kaiming normal, fan out).
    """
    kernel_initializer = kernel_initializer or kaiming_normal_fan_out()
    if padding is None:
        padding = dilation * (kernel_size - 1) // 2
    keras_padding, zero_padding = "valid", None
    if padding and stride == 1 and 2 * padding == dilation * (kernel_size - 1):
        keras_padding = "same"  # identical to torch's symmetric padding here
    elif padding:
        zero_padding = padding  # the layer adds the zeros (torch's CPU: in its kernel)
    common = dict(kernel_size=kernel_size, strides=stride, padding=keras_padding,
                  zero_padding=zero_padding, dilation_rate=dilation, use_bias=use_bias,
                  name=name)
    in_channels = num_channels(x)
    if groups == 1:
        layer = Conv2D(filters, kernel_initializer=kernel_initializer, **common)
    elif groups == in_channels == filters:
        layer = DepthwiseConv2D(depth_multiplier=1, depthwise_initializer=kernel_initializer,
                                **common)
    else:
        layer = GroupConv2D(filters, groups=groups, kernel_initializer=kernel_initializer,
                            **common)
    return layer(x)


def batch_norm(x, *, name, epsilon=1e-5, torch_momentum=0.1, gamma_initializer="ones"):
    """``torch.nn.BatchNorm2d(eps, momentum)``; Keras momentum is ``1 - torch_momentum``."""
    return BatchNormalization(
        axis=channel_axis(), epsilon=epsilon, momentum=1.0 - torch_momentum,
        gamma_initializer=gamma_initializer, name=name)(x)


# The normalisations a family's ``norm`` option picks from (issue 14). "batch" is the
# zoo's BatchNormalization, layer for layer, so torchvision's weights still load.
NORMS = ("batch", "group", "layer", "instance", "none")
MAX_GROUPS = 32  # Wu & He's GroupNorm default


def norm_groups(channels, kind):
    """Groups of ``GroupNormalization`` for ``kind``: group, the largest divisor of
    ``channels`` up to 32 (so 24 channels get 24 groups, 40 get 20); layer, 1;
    instance, one per channel."""
    if kind == "group":
        return max(g for g in range(1, min(MAX_GROUPS, channels) + 1) if channels % g == 0)
    return {"layer": 1, "instance": channels}[kind]


def norm(x, kind="batch", *, name, epsilon=1e-5, torch_momentum=0.1, gamma_initializer="ones"):
    """The normalisation ``kind`` (one of :data:`NORMS`) over the channels of ``x``.

    * ``batch``: :func:`batch_norm` (``epsilon`` and ``torch_momentum`` are the
      family's, e.g. 1e-3 in GoogLeNet and MobileNet V3).
    * ``group``, ``layer``, ``instance``: ``keras.layers.GroupNormalization`` with
      :func:`norm_groups` groups and torch's epsilon 1e-5 (``torch.nn.GroupNorm``'s).
      ``layer`` is GroupNorm with one group: mean and variance over C, H, W of each
      sample and a per-channel scale and shift, as the GroupNorm paper defines layer
      norm for conv nets (``torch.nn.GroupNorm(1, C)``); Keras' ``LayerNormalization``
      over (H, W, C) would instead learn one scale per pixel, tying the weights to
      the input size.
    * ``none``: ``x`` unchanged; the convolution before it should then keep its bias
      (:func:`conv_bias`).

    On a dense layer's ``(batch, features)`` output, ``instance`` would normalise
    each feature alone (output = beta whatever the input), so it means ``layer`` there.
    """
    if kind == "batch":
        return batch_norm(x, name=name, epsilon=epsilon, torch_momentum=torch_momentum,
                          gamma_initializer=gamma_initializer)
    if kind == "none":
        return x
    if kind not in NORMS:
        raise ValueError(f"Unknown norm {kind!r}; use one of {', '.join(NORMS)}.")
    if kind == "instance" and len(x.shape) == 2:
        kind = "layer"
    return keras.layers.GroupNormalization(
        groups=norm_groups(num_channels(x), kind), axis=channel_axis(), epsilon=1e-5,
        gamma_initializer=gamma_initializer, name=name)(x)


def conv_bias(norm_kind) -> bool:
    """Whether a convolution followed by ``norm_kind`` needs its own bias: a norm's
    beta is the shift, so only without one (``none``) would the layer lose it."""
    return norm_kind == "none"


def activation(x, kind, *, name):
    """Apply ``kind``: relu, relu6, hard_swish, hard_sigmoid, sigmoid, tanh or None."""
    if kind is None:
        return x
    if kind == "relu":
        return keras.layers.ReLU(name=name)(x)
    if kind == "relu6":
        return keras.layers.ReLU(max_value=6.0, name=name)(x)
    if kind in ("hard_swish", "hard_sigmoid", "sigmoid", "tanh", "silu", "gelu"):
        return keras.layers.Activation(kind, name=name)(x)
    raise ValueError(f"Unknown activation {kind!r}; use relu, relu6, hard_swish, "
                     "hard_sigmoid, sigmoid, tanh, silu or gelu.")


def conv_bn_act(x, filters, kernel_size, *, name, stride=1, padding=None, groups=1,
                act="relu", bn_epsilon=1e-5, bn_momentum=0.1, gamma_initializer="ones",
                norm_kind="batch"):
    """torchvision's ``Conv2dNormActivation``: conv (no bias), norm (BN by default:
    ``norm_kind``, see :func:`norm`), activation.

    Layers are named ``{name}_conv``, ``{name}_bn`` and ``{name}_act`` (``_bn`` whatever
    the norm, so that the names stay the API).
    """
    x = conv2d(x, filters, kernel_size, stride=stride, padding=padding, groups=groups,
               use_bias=conv_bias(norm_kind), name=f"{name}_conv")
    x = norm(x, norm_kind, epsilon=bn_epsilon, torch_momentum=bn_momentum,
             gamma_initializer=gamma_initializer, name=f"{name}_bn")
    return activation(x, act, name=f"{name}_act")


def _ceil_mode_extra(size, pool_size, stride, padding):
    """Extra bottom/right padding that turns a floor-mode pool into torch's ceil mode."""
    if size is None:  # unknown size: stride - 1 is exact whenever pool_size >= stride
        return stride - 1
    out = -(-(size + 2 * padding - pool_size) // stride) + 1
    if (out - 1) * stride >= size + padding:  # torch: last window must start inside
        out -= 1
    return max(0, (out - 1) * stride + pool_size - size - 2 * padding)


def max_pool(x, pool_size, stride, *, name, padding=0, ceil_mode=False):
    """``torch.nn.MaxPool2d(pool_size, stride, padding, ceil_mode)``.

    Pads with zeros, not -inf: every max-pool in the zoo follows a ReLU (or a
    concatenation of ReLU outputs), so its inputs are >= 0 and a zero in the
    window never wins over a real value unless that value is zero too.
    """
    extra = [0, 0]
    if ceil_mode:
        extra = [_ceil_mode_extra(s, pool_size, stride, padding) for s in spatial_shape(x)]
    if padding or any(extra):
        x = zero_pad(x, ((padding, padding + extra[0]), (padding, padding + extra[1])),
                     name=f"{name}_pad")
    return MaxPooling2D(pool_size, strides=stride, padding="valid", name=name)(x)


def avg_pool(x, pool_size, stride, *, name):
    """``torch.nn.AvgPool2d(pool_size, stride)`` without padding."""
    return AveragePooling2D(pool_size, strides=stride, padding="valid", name=name)(x)


def adaptive_avg_pool(x, output_size, *, name):
    """``torch.nn.AdaptiveAvgPool2d``; skipped when the input already has that size."""
    if spatial_shape(x) == (output_size, output_size):
        return x
    return AdaptiveAveragePooling2D(output_size, name=name)(x)


def drop_path(x, rate, *, name):
    """Stochastic depth: drop the whole residual branch of a sample with ``rate``.

    A ``Dropout`` whose mask is shared over H, W and C is exactly timm's
    ``drop_path`` / torchvision's ``StochasticDepth(mode="row")``: survivors are
    scaled by ``1 / (1 - rate)``.
    """
    if not rate:
        return x
    return keras.layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=name)(x)


def dense(x, units, *, name, use_bias=True):
    return keras.layers.Dense(units, use_bias=use_bias, kernel_initializer=glorot_uniform(),
                              name=name)(x)


def global_pool(x, pooling, *, name, keepdims=False):
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(keepdims=keepdims, name=name)(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(keepdims=keepdims, name=name)(x)
    raise ValueError(f"pooling must be None, 'avg' or 'max', not {pooling!r}.")


def pooled_classifier(x, *, num_classes, include_top, pooling, dropout_rate=0.0,
                      fc_name="fc", pool_name="avgpool", dropout_name="dropout"):
    """The head of the globally pooled families (ResNet, DenseNet, MobileNet, ...).

    ``include_top``: global average pool, dropout, dense ``fc_name``.
    Otherwise the feature map, globally pooled when ``pooling`` is given.
    """
    if include_top:
        x = global_pool(x, "avg", name=pool_name)
        if dropout_rate:
            x = keras.layers.Dropout(dropout_rate, name=dropout_name)(x)
        return dense(x, num_classes, name=fc_name)
    if pooling:
        return global_pool(x, pooling, name=pool_name)
    return x


def squeeze_excite(x, squeeze_channels, *, name, act="relu", gate="hard_sigmoid"):
    """torchvision's ``SqueezeExcitation``: pool, 1x1 conv, act, 1x1 conv, gate, scale."""
    channels = num_channels(x)
    s = global_pool(x, "avg", keepdims=True, name=f"{name}_pool")
    s = conv2d(s, squeeze_channels, 1, use_bias=True, name=f"{name}_fc1")
    s = activation(s, act, name=f"{name}_act")
    s = conv2d(s, channels, 1, use_bias=True, name=f"{name}_fc2")
    s = activation(s, gate, name=f"{name}_gate")
    return keras.layers.Multiply(name=f"{name}_scale")([x, s])


def make_divisible(value, divisor=8, min_value=None):
    """Round channels to a multiple of ``divisor``, never below 90% (MobileNet rule)."""
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value
