"""VGG 11/13/16/19, with and without BatchNorm, as torchvision defines them.

Simonyan & Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition" (2014). Stages of 3x3 convolutions (bias kept even with BN, as in
torchvision) and 2x2 max-pools; adaptive average pool to 7x7; three dense layers.

The ``_bn`` variants take the ``norm`` option (``"batch"``, ``"group"``, ``"layer"``,
``"instance"``; ``"none"`` is the plain variant with the ``_bn`` names). The plain
variants have no norm layer to change, so they do not take it.
"""

import keras

from kerasnets.layers import blocks as B
from kerasnets.models._torchvision import sequential_paths
from kerasnets.registry import Paper, Reduced, TorchvisionNames, Weights, register

VGG = Paper("Very Deep Convolutional Networks for Large-Scale Image Recognition",
            "https://arxiv.org/abs/1409.1556")

# Convolutions per stage; the channels are 64, 128, 256, 512, 512.
STAGES = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
CHANNELS = (64, 128, 256, 512, 512)


def build_vgg(*, input_shape, num_classes, include_top, pooling, name, depth,
              dropout_rate=0.5, fc_units=4096):
    """VGG-``depth`` without normalisation.

    Args:
        dropout_rate: after each of the first two dense layers.
        fc_units: width of the two hidden dense layers (4096 in the paper; most of
            VGG's 133-144M parameters sit in the first of them).
    """
    return _vgg(input_shape=input_shape, num_classes=num_classes, include_top=include_top,
                pooling=pooling, name=name, depth=depth, norm=None,
                dropout_rate=dropout_rate, fc_units=fc_units)


def build_vgg_bn(*, input_shape, num_classes, include_top, pooling, name, depth,
                 dropout_rate=0.5, fc_units=4096, norm="batch"):
    """VGG-``depth`` with a norm after every convolution (BN with eps 1e-5 by default).

    Args:
        dropout_rate, fc_units: as :func:`build_vgg`.
        norm: "batch" (torchvision), "group", "layer", "instance" or "none" (see
            :func:`kerasnets.layers.blocks.norm`); the layers keep the BN names.
    """
    return _vgg(input_shape=input_shape, num_classes=num_classes, include_top=include_top,
                pooling=pooling, name=name, depth=depth, norm=norm,
                dropout_rate=dropout_rate, fc_units=fc_units)


def _vgg(*, input_shape, num_classes, include_top, pooling, name, depth, norm, dropout_rate,
         fc_units):
    """The network; ``norm=None``: no norm layer at all (the plain VGGs)."""
    inputs = keras.Input(input_shape, name="input")
    x = inputs
    for stage, (convs, filters) in enumerate(zip(STAGES[depth], CHANNELS), start=1):
        for i in range(1, convs + 1):
            x = B.conv2d(x, filters, 3, use_bias=True, name=f"block{stage}_conv{i}")
            if norm is not None:
                x = B.norm(x, norm, name=f"block{stage}_bn{i}")
            x = B.activation(x, "relu", name=f"block{stage}_relu{i}")
        x = B.max_pool(x, 2, 2, name=f"block{stage}_pool")
    if include_top:
        x = B.adaptive_avg_pool(x, 7, name="avgpool")
        x = keras.layers.Flatten(name="flatten")(x)
        for fc in ("fc1", "fc2"):
            x = B.dense(x, fc_units, name=fc)
            x = B.activation(x, "relu", name=f"{fc}_relu")
            x = keras.layers.Dropout(dropout_rate, name=f"{fc}_dropout")(x)
        x = B.dense(x, num_classes, name="fc3")
    elif pooling:
        x = B.global_pool(x, pooling, name="global_pool")
    return keras.Model(inputs, x, name=name)


def _cfg(depth):
    return dict(depth=depth)


def _weights(checkpoint, top1):
    return Weights(f"https://download.pytorch.org/models/{checkpoint}.pth", top1=top1)


def feature_levels(model, args):
    """timm's levels: the ReLU before each max-pool (timm's sixth, its convolutional
    ``pre_logits`` head, has no counterpart here)."""
    return [(f"block{stage}_relu{convs}", 2**(stage - 1))
            for stage, convs in enumerate(STAGES[args["depth"]], start=1)]


_COMMON = dict(paper=VGG, min_input_size=32, features=feature_levels,
               torchvision=TorchvisionNames(paths=sequential_paths),
               recipes={"d2l": dict(lr=0.05, batch_size=128, image_size=224),
                        "modern": dict(lr=0.02)},
               # VGG-11's stages and a narrow dense head (the 4096-wide one is 120M+ weights)
               reduced=Reduced(config={"depth": 11}, options={"fc_units": 64}))
register("vgg11", build_vgg, _cfg(11), params=132_863_336, gmacs=7.609,
         weights=_weights("vgg11-8a719046", 69.02), **_COMMON)
register("vgg13", build_vgg, _cfg(13), params=133_047_848, gmacs=11.308,
         weights=_weights("vgg13-19584684", 69.928), **_COMMON)
register("vgg16", build_vgg, _cfg(16), params=138_357_544, gmacs=15.470,
         weights=_weights("vgg16-397923af", 71.592), **_COMMON)
register("vgg19", build_vgg, _cfg(19), params=143_667_240, gmacs=19.632,
         weights=_weights("vgg19-dcbb9e9d", 72.376), **_COMMON)
register("vgg11_bn", build_vgg_bn, _cfg(11), params=132_868_840, gmacs=7.609,
         weights=_weights("vgg11_bn-6002323d", 70.37), **_COMMON)
register("vgg13_bn", build_vgg_bn, _cfg(13), params=133_053_736, gmacs=11.308,
         weights=_weights("vgg13_bn-abd245e5", 71.586), **_COMMON)
register("vgg16_bn", build_vgg_bn, _cfg(16), params=138_365_992, gmacs=15.470,
         weights=_weights("vgg16_bn-6c64b313", 73.36), **_COMMON)
register("vgg19_bn", build_vgg_bn, _cfg(19), params=143_678_248, gmacs=19.632,
         weights=_weights("vgg19_bn-c79401a0", 74.218), **_COMMON)
