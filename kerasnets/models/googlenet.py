"""GoogLeNet (Inception v1) with BatchNorm, as torchvision defines it.

Szegedy et al., "Going Deeper with Convolutions" (2014). Every convolution is
torchvision's ``BasicConv2d`` (conv without bias, BN with eps 1e-3, ReLU); the
max-pools use ``ceil_mode``. As in torchvision, the third branch of each
Inception block uses a 3x3 convolution where the paper has 5x5 (kept so that
torchvision's weights load). Layer names are torchvision's module paths with
``_`` for ``.``.
"""

import keras

from kerasnets.layers import blocks as B
from kerasnets.models._torchvision import dotted_paths
from kerasnets.registry import (IMAGENET_MEAN, IMAGENET_STD, Paper, TorchvisionNames, Weights,
                                register)

GOOGLENET = Paper("Going Deeper with Convolutions", "https://arxiv.org/abs/1409.4842")

# Inception blocks: name -> (1x1, 3x3 reduce, 3x3, "5x5" reduce, "5x5", pool proj).
INCEPTION = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64), "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}
# The ceil-mode max-pools (stride 2) between Inception stages: after -> (name, size).
POOLS = {"inception3b": ("maxpool3", 3), "inception4e": ("maxpool4", 2)}
AUX_AFTER = {"inception4a": "aux1", "inception4d": "aux2"}


def basic_conv(x, filters, kernel_size, *, name, stride=1, padding=None, norm="batch"):
    return B.conv_bn_act(x, filters, kernel_size, stride=stride, padding=padding,
                         bn_epsilon=1e-3, norm_kind=norm, name=name)


def inception_block(x, c1, c3_reduce, c3, c5_reduce, c5, pool_proj, *, norm, name):
    branch1 = basic_conv(x, c1, 1, norm=norm, name=f"{name}_branch1")
    branch2 = basic_conv(x, c3_reduce, 1, norm=norm, name=f"{name}_branch2_0")
    branch2 = basic_conv(branch2, c3, 3, norm=norm, name=f"{name}_branch2_1")
    branch3 = basic_conv(x, c5_reduce, 1, norm=norm, name=f"{name}_branch3_0")
    branch3 = basic_conv(branch3, c5, 3, norm=norm, name=f"{name}_branch3_1")
    branch4 = B.max_pool(x, 3, 1, padding=1, ceil_mode=True, name=f"{name}_branch4_0")
    branch4 = basic_conv(branch4, pool_proj, 1, norm=norm, name=f"{name}_branch4_1")
    return keras.layers.Concatenate(axis=B.channel_axis(), name=f"{name}_concat")(
        [branch1, branch2, branch3, branch4])


def aux_head(x, num_classes, *, norm, name, dropout_rate=0.7):
    """torchvision's ``InceptionAux``: 4x4 pool, 1x1 conv, two dense layers."""
    x = B.adaptive_avg_pool(x, 4, name=f"{name}_pool")
    x = basic_conv(x, 128, 1, norm=norm, name=f"{name}_conv")
    x = keras.layers.Flatten(name=f"{name}_flatten")(x)
    x = B.dense(x, 1024, name=f"{name}_fc1")
    x = B.activation(x, "relu", name=f"{name}_relu")
    x = keras.layers.Dropout(dropout_rate, name=f"{name}_dropout")(x)
    return B.dense(x, num_classes, name=f"{name}_fc2")


def imagenet_to_torchvision_input(x, *, name):
    """torchvision's ``transform_input``: its ImageNet weights were trained on inputs
    normalised with mean = std = 0.5, so ImageNet-normalised inputs are mapped there."""
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    scale = [s / 0.5 for s in std]
    offset = [(m - 0.5) / 0.5 for m in mean]
    if not B.channels_last():  # broadcast over (C, H, W)
        scale, offset = [[[v]] for v in scale], [[[v]] for v in offset]
    return keras.layers.Rescaling(scale, offset, name=name)(x)


def build_googlenet(*, input_shape, num_classes, include_top, pooling, name,
                    aux_logits=False, dropout_rate=0.2, transform_input=False, norm="batch"):
    """GoogLeNet.

    Args:
        aux_logits: add the two auxiliary classifiers; the model then returns
            ``[logits, aux1, aux2]`` (torchvision's training-mode outputs).
        dropout_rate: before the classifier (torchvision: 0.2).
        transform_input: re-normalise ImageNet-normalised RGB inputs as torchvision's
            ImageNet weights expect (set by ``weights="imagenet"``).
        norm: "batch" (torchvision, eps 1e-3), "group", "layer", "instance" or "none"
            (see :func:`kerasnets.layers.blocks.norm`); the layers keep the BN names.
    """
    if aux_logits and not include_top:
        raise ValueError("googlenet: aux_logits=True needs include_top=True.")
    inputs = keras.Input(input_shape, name="input")
    x = imagenet_to_torchvision_input(inputs, name="transform_input") if transform_input \
        else inputs
    x = basic_conv(x, 64, 7, stride=2, padding=3, norm=norm, name="conv1")
    x = B.max_pool(x, 3, 2, ceil_mode=True, name="maxpool1")
    x = basic_conv(x, 64, 1, norm=norm, name="conv2")
    x = basic_conv(x, 192, 3, norm=norm, name="conv3")
    x = B.max_pool(x, 3, 2, ceil_mode=True, name="maxpool2")
    aux_outputs = []
    for block, channels in INCEPTION.items():
        block_name = f"inception{block}"
        x = inception_block(x, *channels, norm=norm, name=block_name)
        if aux_logits and block_name in AUX_AFTER:
            aux_outputs.append(aux_head(x, num_classes, norm=norm, name=AUX_AFTER[block_name]))
        if block_name in POOLS:
            pool_name, size = POOLS[block_name]
            x = B.max_pool(x, size, 2, ceil_mode=True, name=pool_name)
    outputs = B.pooled_classifier(x, num_classes=num_classes, include_top=include_top,
                                  pooling=pooling, dropout_rate=dropout_rate)
    return keras.Model(inputs, [outputs, *aux_outputs] if aux_outputs else outputs, name=name)


def _drop_absent_aux_heads(state_dict, model):
    """torchvision's GoogLeNet checkpoints always carry the auxiliary heads; a model
    built without them (``aux_logits=False``, as torchvision does after loading) drops
    exactly those keys."""
    if any(layer.name.startswith("aux1_") for layer in model.layers):
        return state_dict
    return {k: v for k, v in state_dict.items() if not k.startswith(("aux1.", "aux2."))}


# The end of each stage, before each stride-2 max-pool and at the last block (as timm's
# levels for inception_v3, its GoogLeNet successor).
FEATURE_LEVELS = [("conv1_act", 2), ("conv3_act", 4), ("inception3b_concat", 8),
                  ("inception4e_concat", 16), ("inception5b_concat", 32)]

register("googlenet", build_googlenet, paper=GOOGLENET, params=6_624_904, gmacs=1.498,
         min_input_size=15, features=lambda model, args: FEATURE_LEVELS,
         torchvision=TorchvisionNames(paths=dotted_paths, rename_keys=_drop_absent_aux_heads),
         weights=Weights("https://download.pytorch.org/models/googlenet-1378be20.pth",
                         top1=69.778, options={"transform_input": True}),
         recipes={"d2l": dict(lr=0.1, batch_size=128, image_size=96)})
