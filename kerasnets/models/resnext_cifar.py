"""A small ResNeXt for CIFAR-sized images, whose cardinality keeps the FLOPs constant.

Xie et al., "Aggregated Residual Transformations for Deep Neural Networks" (2016),
Table 2: as the cardinality C (groups of the 3x3 convolution) grows, the bottleneck
width per group d shrinks so that the FLOPs stay those of the C = 1 network
(1x64d, 2x40d, 4x24d, 8x14d, 32x4d at ResNet-50 scale). ``resnext_cifar`` does the
same at a CPU-sized scale (about resnet20-32's 0.05 GMACs at 32x32): a 3x3 stem
with 64 filters, three stages of three ResNeXt bottlenecks (1x1 -> grouped 3x3
with ``cardinality`` groups, carrying the stride -> 1x1 expanding to 64, 128 and 256
channels; BN after each; a 1x1 projection where the shape changes) and global
average pooling with a dense classifier. The blocks are :mod:`resnet`'s bottleneck.

The C = 1 network has bottleneck widths 16, 32 and 64 (the output / 4, as
ResNet-50's 1x64d). For another C, each stage's width is C x d_s, d_s an integer
>= 1: the floor or the ceiling of the width at which the stage's MACs equal the
C = 1 stage's, the three choices taken together so that the whole network's MACs
come closest to the C = 1 budget (:func:`group_widths`). The group widths d_s, the
stage widths C x d_s and the model's MACs at 32x32 against C = 1's 0.0482 G:

====  ===============  ===========  ======
C     d per stage      widths       MACs
====  ===============  ===========  ======
1     16, 32, 64       16, 32, 64   0
2     10, 20, 39       20, 40, 78   +0.2%
4     6, 11, 24        24, 44, 96   -0.7%
8     3, 7, 14         24, 56, 112  +0.7%
16    2, 3, 8          32, 48, 128  +1.3%
32    1, 2, 3          32, 64, 96   -3.5%
====  ===============  ===========  ======

Every C from 1 to 32 stays within 5% (``tests/test_resnext_cifar.py``); above 32 the
widths can no longer follow (d = 1 everywhere overshoots), so 32 is the limit.
"""

import itertools

import keras

from kerasnets.layers import blocks as B
from kerasnets.models.resnet import bottleneck_block, check_zero_init_residual
from kerasnets.registry import Paper, register

RESNEXT = Paper("Aggregated Residual Transformations for Deep Neural Networks",
                "https://arxiv.org/abs/1611.05431")
STEM = 64
STAGE_OUTPUTS = (64, 128, 256)
BASE_WIDTHS = (16, 32, 64)  # the C = 1 bottleneck widths: outputs / 4
BLOCKS_PER_STAGE = 3
MAX_CARDINALITY = 32
_REFERENCE_SIZE = 32  # widths are derived at CIFAR's 32x32; at 28x28 the ratios are the same


def _stage_macs(width, cardinality, stage, blocks=BLOCKS_PER_STAGE, size=_REFERENCE_SIZE):
    """Convolution MACs of one stage (as :func:`kerasnets.count_macs` counts them)."""
    in_channels = STEM if stage == 0 else STAGE_OUTPUTS[stage - 1]
    out = STAGE_OUTPUTS[stage]
    area_out = (size // 2**stage) ** 2
    area_in = area_out * (4 if stage else 1)
    macs = area_in * in_channels * width  # first block's 1x1 reduce, at the input resolution
    if in_channels != out or area_in != area_out:
        macs += area_out * in_channels * out  # projection shortcut
    macs += (blocks - 1) * area_out * out * width  # the other blocks' 1x1 reduce
    return macs + blocks * area_out * (9 * width * width // cardinality + width * out)


def group_widths(cardinality):
    """Bottleneck width per group ``d_s`` of each stage for ``cardinality`` groups."""
    if not 1 <= cardinality <= MAX_CARDINALITY:
        raise ValueError(f"resnext_cifar: cardinality must be an integer from 1 to "
                         f"{MAX_CARDINALITY}, got {cardinality}.")
    budget = sum(_stage_macs(w, 1, s) for s, w in enumerate(BASE_WIDTHS))
    choices = []
    for stage in range(len(STAGE_OUTPUTS)):
        d = 1  # the largest d whose stage fits the C = 1 stage's MACs, and d + 1
        while _stage_macs(cardinality * (d + 1), cardinality, stage) <= \
                _stage_macs(BASE_WIDTHS[stage], 1, stage):
            d += 1
        choices.append((d, d + 1))

    def distance(ds):
        macs = sum(_stage_macs(cardinality * d, cardinality, s) for s, d in enumerate(ds))
        return abs(macs - budget)

    return min(itertools.product(*choices), key=distance)


def build_resnext_cifar(*, input_shape, num_classes, include_top, pooling, name,
                        cardinality=8, norm="batch", zero_init_residual=False,
                        drop_path_rate=0.0):
    """The ResNeXt-style CIFAR network at constant FLOPs.

    Args:
        cardinality: groups of every 3x3 convolution, 1 to 32; the widths follow
            (:func:`group_widths`, the table in the module docstring).
        norm: "batch" (the paper), "group", "layer", "instance" or "none" (see
            :func:`kerasnets.layers.blocks.norm`).
        zero_init_residual: start each block's last norm scale at zero.
        drop_path_rate: stochastic depth, rising linearly to this rate at the last block.
    """
    check_zero_init_residual(zero_init_residual, norm, name=name)
    widths = group_widths(cardinality)
    inputs = keras.Input(input_shape, name="input")
    x = B.conv2d(inputs, STEM, 3, use_bias=B.conv_bias(norm), name="conv1")
    x = B.norm(x, norm, name="bn1")
    x = B.activation(x, "relu", name="relu")
    total = len(STAGE_OUTPUTS) * BLOCKS_PER_STAGE
    for stage, (out, d) in enumerate(zip(STAGE_OUTPUTS, widths)):
        planes = out // bottleneck_block.expansion
        for i in range(BLOCKS_PER_STAGE):
            index = stage * BLOCKS_PER_STAGE + i
            # resnet's bottleneck is int(planes * base_width / 64) * groups wide
            x = bottleneck_block(x, planes, stride=2 if stage > 0 and i == 0 else 1,
                                 groups=cardinality, base_width=64 * d // planes, norm=norm,
                                 zero_init_residual=zero_init_residual,
                                 drop_path_rate=drop_path_rate * index / (total - 1),
                                 name=f"layer{stage + 1}_{i}")
    outputs = B.pooled_classifier(x, num_classes=num_classes, include_top=include_top,
                                  pooling=pooling)
    return keras.Model(inputs, outputs, name=name)


def feature_levels(model, args):
    """The three stages' last blocks (64, 128, 256 channels at strides 1, 2, 4)."""
    last = BLOCKS_PER_STAGE - 1
    return [(f"layer{stage}_{last}_out", 2**(stage - 1)) for stage in (1, 2, 3)]


register("resnext_cifar", build_resnext_cifar, paper=RESNEXT, params=312_346, gmacs=0.048503,
         input_shape=(32, 32, 3), num_classes=10, features=feature_levels)
