"""Wide Residual Networks for CIFAR (WRN-d-k), as Zagoruyko & Komodakis wrote them.

Zagoruyko & Komodakis, "Wide Residual Networks" (2016), Table 1 and the authors'
PyTorch code (github.com/szagoruyko/wide-residual-networks, ``pytorch/resnet.py``):
a 3x3 convolution with 16 filters, three groups of ``N = (d - 4) / 6``
pre-activation basic blocks of width 16k, 32k and 64k (the first block of groups
2 and 3 has stride 2, on its first convolution), a final BN-ReLU, global average
pooling and a dense classifier. A block is BN-ReLU-conv3x3-BN-ReLU-[dropout]-conv3x3
plus its input; where the width changes the shortcut is a 1x1 convolution (with
the stride) of the block's first BN-ReLU output, as in the authors' code. Convolutions
have no bias; weights start as the authors' (Kaiming normal, fan in). Dropout
sits between the two convolutions, after the second ReLU, as in the authors' Lua
code (the paper: 0.3 on CIFAR; off by default here).

``wrn28_10`` (36.5M parameters) is the top entry of Fashion-MNIST's benchmark table
(96.3% with random erasing); 28x28x1 inputs work as they are (global pooling).
Layer names follow the authors' parameter names with ``_`` for ``.``
(``group0_block0_conv0`` is ``group0.block0.conv0``).
"""

import keras

from kerasnets.layers import blocks as B
from kerasnets.layers.initializers import HostVarianceScaling
from kerasnets.registry import Paper, Reduced, register

WIDE_RESNET = Paper("Wide Residual Networks", "https://arxiv.org/abs/1605.07146")
GROUP_WIDTHS = (16, 32, 64)  # times the widening factor k


def kaiming_normal_fan_in():
    """``torch.nn.init.kaiming_normal_`` with its defaults (fan in, ReLU gain), the
    authors' init of every convolution and of the classifier."""
    return HostVarianceScaling(2.0, "fan_in", "untruncated_normal")


def _conv(x, filters, kernel_size, *, stride=1, norm, name):
    return B.conv2d(x, filters, kernel_size, stride=stride, use_bias=B.conv_bias(norm),
                    kernel_initializer=kaiming_normal_fan_in(), name=name)


def wide_block(x, filters, *, stride, dropout_rate, norm, name):
    """Pre-activation basic block; the projection shortcut reads the first BN-ReLU."""
    o1 = B.norm(x, norm, name=f"{name}_bn0")
    o1 = B.activation(o1, "relu", name=f"{name}_relu0")
    y = _conv(o1, filters, 3, stride=stride, norm=norm, name=f"{name}_conv0")
    y = B.norm(y, norm, name=f"{name}_bn1")
    y = B.activation(y, "relu", name=f"{name}_relu1")
    if dropout_rate:
        y = keras.layers.Dropout(dropout_rate, name=f"{name}_dropout")(y)
    y = _conv(y, filters, 3, norm=norm, name=f"{name}_conv1")
    shortcut = x
    if B.num_channels(x) != filters:
        shortcut = _conv(o1, filters, 1, stride=stride, norm=norm, name=f"{name}_convdim")
    return keras.layers.Add(name=f"{name}_add")([y, shortcut])


def build_wide_resnet_cifar(*, input_shape, num_classes, include_top, pooling, name, depth,
                            widen_factor, dropout_rate=0.0, norm="batch"):
    """WRN-``depth``-``widen_factor``.

    Args:
        depth, widen_factor: the variant (28 and 10 for WRN-28-10); ``depth - 4`` must
            be a multiple of 6.
        dropout_rate: between the two convolutions of every block (the paper: 0.3).
        norm: "batch" (the paper), "group", "layer", "instance" or "none" (see
            :func:`kerasnets.layers.blocks.norm`).
    """
    if (depth - 4) % 6:
        raise ValueError(f"{name}: depth - 4 must be a multiple of 6, got depth={depth}.")
    blocks_per_group = (depth - 4) // 6
    inputs = keras.Input(input_shape, name="input")
    x = _conv(inputs, GROUP_WIDTHS[0], 3, norm=norm, name="conv0")
    for group, width in enumerate(GROUP_WIDTHS):
        for i in range(blocks_per_group):
            x = wide_block(x, width * widen_factor, stride=2 if group > 0 and i == 0 else 1,
                           dropout_rate=dropout_rate, norm=norm, name=f"group{group}_block{i}")
    x = B.norm(x, norm, name="bn")
    x = B.activation(x, "relu", name="relu")
    if include_top:
        x = B.global_pool(x, "avg", name="avgpool")
        return keras.Model(inputs, keras.layers.Dense(
            num_classes, kernel_initializer=kaiming_normal_fan_in(), name="fc")(x), name=name)
    if pooling:
        x = B.global_pool(x, pooling, name="avgpool")
    return keras.Model(inputs, x, name=name)


def feature_levels(model, args):
    """Each group's last block (strides 1, 2, 4); the last level is after the final
    BN-ReLU, as pre-activation networks end (timm's ResNetV2 does the same)."""
    last = (args["depth"] - 4) // 6 - 1
    return [(f"group0_block{last}_add", 1), (f"group1_block{last}_add", 2), ("relu", 4)]


_COMMON = dict(paper=WIDE_RESNET, features=feature_levels, input_shape=(32, 32, 3), num_classes=10,
               # "modern" is already the paper's SGD 0.1, Nesterov, weight decay 5e-4,
               # batch 128; the paper adds dropout 0.3 in every block
               recipes={"modern": dict(model_options={"dropout_rate": 0.3})},
               # one block per group, widen factor 1: the same operations (and one parity network
               # for every variant) at a cost the three-backend parity run can afford
               reduced=Reduced(config={"depth": 10, "widen_factor": 1}))
# (depth, widen factor, trainable parameters, GMACs at 32x32)
VARIANTS = ((16, 4, 2_748_890, 0.392612), (28, 10, 36_479_194, 5.243329))
for _depth, _k, _params, _gmacs in VARIANTS:
    register(f"wrn{_depth}_{_k}", build_wide_resnet_cifar,
             dict(depth=_depth, widen_factor=_k), params=_params, gmacs=_gmacs, **_COMMON)
