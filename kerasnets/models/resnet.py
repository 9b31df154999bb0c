"""ResNet (v1.5) and ResNeXt, as torchvision defines them.

He et al., "Deep Residual Learning for Image Recognition" (2015) and Xie et al.,
"Aggregated Residual Transformations for Deep Neural Networks" (2016); the Wide
ResNets are torchvision's ``wide_resnet*_2`` (Zagoruyko & Komodakis, "Wide Residual
Networks", 2016: bottlenecks twice as wide, the outer 1x1 convolutions unchanged). "v1.5"
puts the stride of a bottleneck's downsampling on its 3x3 convolution, as
torchvision does. Layer names follow torchvision's module paths with ``_`` for
``.`` (``layer1_0_conv1`` is ``layer1.0.conv1``).

``small_input=True`` swaps the 7x7/2 stem and its max-pool for one 3x3/1
convolution (the CIFAR-10 ResNet-18 of the seeds), so 28x28 and 32x32 inputs
keep their resolution into ``layer1``.
"""

import keras

from kerasnets.layers import blocks as B
from kerasnets.models._torchvision import dotted_paths
from kerasnets.registry import Paper, Reduced, TorchvisionNames, Weights, register

RESNET = Paper("Deep Residual Learning for Image Recognition",
               "https://arxiv.org/abs/1512.03385")
RESNEXT = Paper("Aggregated Residual Transformations for Deep Neural Networks",
                "https://arxiv.org/abs/1611.05431")
WIDE_RESNET = Paper("Wide Residual Networks", "https://arxiv.org/abs/1605.07146")


def _shortcut(x, filters, stride, *, norm, name):
    """Identity, or torchvision's ``downsample``: 1x1 conv with the stride, then BN."""
    if stride == 1 and B.num_channels(x) == filters:
        return x
    x = B.conv2d(x, filters, 1, stride=stride, use_bias=B.conv_bias(norm),
                 name=f"{name}_downsample_0")
    return B.norm(x, norm, name=f"{name}_downsample_1")


def _residual_add(x, shortcut, *, drop_path_rate, name):
    x = B.drop_path(x, drop_path_rate, name=f"{name}_drop_path")
    x = keras.layers.Add(name=f"{name}_add")([x, shortcut])
    return B.activation(x, "relu", name=f"{name}_out")


def basic_block(x, planes, *, stride, name, zero_init_residual=False, drop_path_rate=0.0,
                groups=1, base_width=64, norm="batch"):
    """Two 3x3 convolutions (ResNet-18/34); expansion 1."""
    if groups != 1 or base_width != 64:
        raise ValueError("basic_block supports only groups=1 and base_width=64 "
                         "(as torchvision's BasicBlock).")
    bias = B.conv_bias(norm)
    shortcut = _shortcut(x, planes, stride, norm=norm, name=name)
    y = B.conv2d(x, planes, 3, stride=stride, use_bias=bias, name=f"{name}_conv1")
    y = B.norm(y, norm, name=f"{name}_bn1")
    y = B.activation(y, "relu", name=f"{name}_relu1")
    y = B.conv2d(y, planes, 3, use_bias=bias, name=f"{name}_conv2")
    y = B.norm(y, norm, name=f"{name}_bn2",
               gamma_initializer="zeros" if zero_init_residual else "ones")
    return _residual_add(y, shortcut, drop_path_rate=drop_path_rate, name=name)


basic_block.expansion = 1


def bottleneck_block(x, planes, *, stride, name, zero_init_residual=False,
                     drop_path_rate=0.0, groups=1, base_width=64, norm="batch"):
    """1x1 reduce, 3x3 (grouped for ResNeXt, carries the stride), 1x1 expand x4."""
    width = int(planes * (base_width / 64.0)) * groups
    out_channels = planes * bottleneck_block.expansion
    bias = B.conv_bias(norm)
    shortcut = _shortcut(x, out_channels, stride, norm=norm, name=name)
    y = B.conv2d(x, width, 1, use_bias=bias, name=f"{name}_conv1")
    y = B.norm(y, norm, name=f"{name}_bn1")
    y = B.activation(y, "relu", name=f"{name}_relu1")
    y = B.conv2d(y, width, 3, stride=stride, groups=groups, use_bias=bias,
                 name=f"{name}_conv2")
    y = B.norm(y, norm, name=f"{name}_bn2")
    y = B.activation(y, "relu", name=f"{name}_relu2")
    y = B.conv2d(y, out_channels, 1, use_bias=bias, name=f"{name}_conv3")
    y = B.norm(y, norm, name=f"{name}_bn3",
               gamma_initializer="zeros" if zero_init_residual else "ones")
    return _residual_add(y, shortcut, drop_path_rate=drop_path_rate, name=name)


bottleneck_block.expansion = 4

BLOCKS = {"basic": basic_block, "bottleneck": bottleneck_block}


def build_resnet(*, input_shape, num_classes, include_top, pooling, name, block, layers,
                 groups, width_per_group, small_input=False, zero_init_residual=False,
                 drop_path_rate=0.0, dropout_rate=0.0, norm="batch"):
    """ResNet / ResNeXt.

    Args:
        block, layers: ``"basic"`` or ``"bottleneck"`` and blocks per stage.
        groups, width_per_group: ResNeXt cardinality and bottleneck width (32, 4 for 32x4d).
        small_input: 3x3 stride-1 stem without max-pool, for 28-32 pixel images.
        zero_init_residual: start each block's last BN gamma at zero (Goyal et al. 2017).
        drop_path_rate: stochastic depth, rising linearly to this rate at the last block.
        dropout_rate: dropout before the classifier (torchvision: none).
        norm: "batch" (torchvision), "group", "layer", "instance" or "none" (see
            :func:`kerasnets.layers.blocks.norm`); the layers keep the BN names.
    """
    check_zero_init_residual(zero_init_residual, norm, name=name)
    block_fn = BLOCKS[block]
    bias = B.conv_bias(norm)
    inputs = keras.Input(input_shape, name="input")
    if small_input:
        x = B.conv2d(inputs, 64, 3, use_bias=bias, name="conv1")
        x = B.norm(x, norm, name="bn1")
        x = B.activation(x, "relu", name="relu")
    else:
        x = B.conv2d(inputs, 64, 7, stride=2, padding=3, use_bias=bias, name="conv1")
        x = B.norm(x, norm, name="bn1")
        x = B.activation(x, "relu", name="relu")
        x = B.max_pool(x, 3, 2, padding=1, name="maxpool")

    total_blocks, index = sum(layers), 0
    for stage, num_blocks in enumerate(layers):
        planes = 64 * 2**stage
        for i in range(num_blocks):
            stride = 2 if stage > 0 and i == 0 else 1
            x = block_fn(x, planes, stride=stride, groups=groups, base_width=width_per_group,
                         zero_init_residual=zero_init_residual, norm=norm,
                         drop_path_rate=drop_path_rate * index / max(total_blocks - 1, 1),
                         name=f"layer{stage + 1}_{i}")
            index += 1

    outputs = B.pooled_classifier(x, num_classes=num_classes, include_top=include_top,
                                  pooling=pooling, dropout_rate=dropout_rate)
    return keras.Model(inputs, outputs, name=name)


def check_zero_init_residual(zero_init_residual, norm, *, name):
    if zero_init_residual and norm == "none":
        raise ValueError(f"{name}: zero_init_residual zeroes a norm layer's scale, and "
                         f"norm='none' has none; use another norm or leave it False.")


def _cfg(block, layers, groups=1, width_per_group=64):
    return dict(block=block, layers=layers, groups=groups, width_per_group=width_per_group)


def feature_levels(model, args):
    """timm's five levels: the stem's ReLU, then each stage's last block. The small-input
    stem has stride 1 and no max-pool, so its levels are 4x finer."""
    stem, first_stage = (1, 1) if args["small_input"] else (2, 4)
    return [("relu", stem)] + [(f"layer{stage + 1}_{blocks - 1}_out", first_stage * 2**stage)
                               for stage, blocks in enumerate(args["layers"])]


_URL = "https://download.pytorch.org/models/"
_COMMON = dict(
    torchvision=TorchvisionNames(paths=dotted_paths),  # layer1_0_conv1 is layer1.0.conv1
    recipes={"d2l": dict(lr=0.05, batch_size=256, image_size=96),  # the chapter's code
             "modern": dict(model_options={"small_input": True})},
    reduced=Reduced(config={"layers": (1, 1, 1, 1)}),  # one block per stage
    features=feature_levels)
_V1 = dict(resize_size=256)  # torchvision's IMAGENET1K_V1 (ResNet-18/34) evaluation
_V2 = dict(resize_size=232)  # IMAGENET1K_V2: the newer recipe's resize

register("resnet18", build_resnet, _cfg("basic", (2, 2, 2, 2)),
         paper=RESNET, params=11_689_512, gmacs=1.814, **_COMMON,
         weights=Weights(_URL + "resnet18-f37072fd.pth", top1=69.758, **_V1))
register("resnet34", build_resnet, _cfg("basic", (3, 4, 6, 3)),
         paper=RESNET, params=21_797_672, gmacs=3.664, **_COMMON,
         weights=Weights(_URL + "resnet34-b627a593.pth", top1=73.314, **_V1))
register("resnet50", build_resnet, _cfg("bottleneck", (3, 4, 6, 3)),
         paper=RESNET, params=25_557_032, gmacs=4.089, **_COMMON,
         weights=Weights(_URL + "resnet50-11ad3fa6.pth", top1=80.858, **_V2))
register("resnet101", build_resnet, _cfg("bottleneck", (3, 4, 23, 3)),
         paper=RESNET, params=44_549_160, gmacs=7.801, **_COMMON,
         weights=Weights(_URL + "resnet101-cd907fc2.pth", top1=81.886, **_V2))
register("resnet152", build_resnet, _cfg("bottleneck", (3, 8, 36, 3)),
         paper=RESNET, params=60_192_808, gmacs=11.514, **_COMMON,
         weights=Weights(_URL + "resnet152-f82ba261.pth", top1=82.284, **_V2))
register("resnext50_32x4d", build_resnet, _cfg("bottleneck", (3, 4, 6, 3), 32, 4),
         paper=RESNEXT, params=25_028_904, gmacs=4.230, **_COMMON,
         weights=Weights(_URL + "resnext50_32x4d-1a0047aa.pth", top1=81.198, **_V2))
register("resnext101_32x8d", build_resnet, _cfg("bottleneck", (3, 4, 23, 3), 32, 8),
         paper=RESNEXT, params=88_791_336, gmacs=16.414, **_COMMON,
         weights=Weights(_URL + "resnext101_32x8d-110c445d.pth", top1=82.834, **_V2))
register("wide_resnet50_2", build_resnet, _cfg("bottleneck", (3, 4, 6, 3), 1, 128),
         paper=WIDE_RESNET, params=68_883_240, gmacs=11.398, **_COMMON,
         weights=Weights(_URL + "wide_resnet50_2-9ba9bcbe.pth", top1=81.602, **_V2))
register("wide_resnet101_2", build_resnet, _cfg("bottleneck", (3, 4, 23, 3), 1, 128),
         paper=WIDE_RESNET, params=126_886_696, gmacs=22.753, **_COMMON,
         weights=Weights(_URL + "wide_resnet101_2-d733dc28.pth", top1=82.51, **_V2))
