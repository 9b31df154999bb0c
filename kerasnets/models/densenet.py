"""DenseNet-121/169/201, as torchvision defines them.

Huang et al., "Densely Connected Convolutional Networks" (2016). Each dense
layer is BN-ReLU-1x1 conv (``bn_size * growth_rate`` channels)-BN-ReLU-3x3 conv
(``growth_rate`` channels) whose output is concatenated to its input; transitions
halve channels (1x1 conv) and resolution (2x2 average pool). Layer names are
torchvision's module paths without ``features.``, with ``_`` for ``.``.
"""

import re

import keras

from kerasnets.layers import blocks as B
from kerasnets.models._torchvision import dotted_paths
from kerasnets.registry import Paper, Reduced, TorchvisionNames, Weights, register

DENSENET = Paper("Densely Connected Convolutional Networks", "https://arxiv.org/abs/1608.06993")


def dense_layer(x, growth_rate, bn_size, *, dropout_rate, norm, name):
    # pre-activation: every convolution's output reaches a norm (here or in the next
    # layer), so each keeps a bias only when there is no norm
    bias = B.conv_bias(norm)
    y = B.norm(x, norm, name=f"{name}_norm1")
    y = B.activation(y, "relu", name=f"{name}_relu1")
    y = B.conv2d(y, bn_size * growth_rate, 1, use_bias=bias, name=f"{name}_conv1")
    y = B.norm(y, norm, name=f"{name}_norm2")
    y = B.activation(y, "relu", name=f"{name}_relu2")
    y = B.conv2d(y, growth_rate, 3, use_bias=bias, name=f"{name}_conv2")
    if dropout_rate:
        y = keras.layers.Dropout(dropout_rate, name=f"{name}_dropout")(y)
    return keras.layers.Concatenate(axis=B.channel_axis(), name=f"{name}_concat")([x, y])


def transition(x, *, norm, name):
    x = B.norm(x, norm, name=f"{name}_norm")
    x = B.activation(x, "relu", name=f"{name}_relu")
    x = B.conv2d(x, B.num_channels(x) // 2, 1, use_bias=B.conv_bias(norm), name=f"{name}_conv")
    return B.avg_pool(x, 2, 2, name=f"{name}_pool")


def build_densenet(*, input_shape, num_classes, include_top, pooling, name, growth_rate,
                   block_config, num_init_features, bn_size=4, dropout_rate=0.0, norm="batch"):
    """DenseNet.

    Args:
        growth_rate, block_config, num_init_features: the variant (32, layers per
            block, 64 for the ImageNet models).
        bn_size: bottleneck width as a multiple of ``growth_rate``.
        dropout_rate: dropout after every dense layer (torchvision's ``drop_rate``).
        norm: "batch" (torchvision), "group", "layer", "instance" or "none" (see
            :func:`kerasnets.layers.blocks.norm`); the layers keep the BN names.
    """
    inputs = keras.Input(input_shape, name="input")
    x = B.conv2d(inputs, num_init_features, 7, stride=2, padding=3,
                 use_bias=B.conv_bias(norm), name="conv0")
    x = B.norm(x, norm, name="norm0")
    x = B.activation(x, "relu", name="relu0")
    x = B.max_pool(x, 3, 2, padding=1, name="pool0")
    for i, num_layers in enumerate(block_config, start=1):
        for j in range(1, num_layers + 1):
            x = dense_layer(x, growth_rate, bn_size, dropout_rate=dropout_rate, norm=norm,
                            name=f"denseblock{i}_denselayer{j}")
        if i != len(block_config):
            x = transition(x, norm=norm, name=f"transition{i}")
    x = B.norm(x, norm, name="norm5")
    x = B.activation(x, "relu", name="relu5")
    outputs = B.pooled_classifier(x, num_classes=num_classes, include_top=include_top,
                                  pooling=pooling, fc_name="classifier")
    return keras.Model(inputs, outputs, name=name)


def _cfg(block_config):
    return dict(growth_rate=32, block_config=block_config, num_init_features=64)


# torchvision's DenseNet checkpoints predate its module names ("norm.1" for "norm1");
# torchvision renames them on load with this pattern, and so do we.
_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def _rename_legacy_keys(state_dict, model):
    renamed = {}
    for key, value in state_dict.items():
        match = _LEGACY_KEY.match(key)
        renamed[match.group(1) + match.group(2) if match else key] = value
    return renamed


def feature_levels(model, args):
    """timm's levels: the stem's ReLU, each dense block but the last (before its
    transition halves it), and the final BN-ReLU."""
    blocks = args["block_config"]
    return [("relu0", 2)] + [(f"denseblock{i}_denselayer{layers}_concat", 2**(i + 1))
                             for i, layers in enumerate(blocks[:-1], start=1)] + [("relu5", 32)]


_URL = "https://download.pytorch.org/models/"
_COMMON = dict(
    paper=DENSENET, min_input_size=29,
    # torchvision: everything but the classifier sits in ``features``
    torchvision=TorchvisionNames(
        paths=lambda model: dotted_paths(model, prefix="features.", keep=("classifier",)),
        rename_keys=_rename_legacy_keys),
    recipes={"d2l": dict(lr=0.1, batch_size=256, image_size=96)},
    reduced=Reduced(config={"block_config": (2, 2, 2, 2)}),
    features=feature_levels)
register("densenet121", build_densenet, _cfg((6, 12, 24, 16)), params=7_978_856, gmacs=2.834,
         weights=Weights(_URL + "densenet121-a639ec97.pth", top1=74.434), **_COMMON)
register("densenet169", build_densenet, _cfg((6, 12, 32, 32)), params=14_149_480, gmacs=3.360,
         weights=Weights(_URL + "densenet169-b2777c0a.pth", top1=75.6), **_COMMON)
register("densenet201", build_densenet, _cfg((6, 12, 48, 32)), params=20_013_928, gmacs=4.291,
         weights=Weights(_URL + "densenet201-c1103571.pth", top1=76.896), **_COMMON)
