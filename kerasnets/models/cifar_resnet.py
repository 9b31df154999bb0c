"""The CIFAR-10 ResNets of the ResNet paper (section 4.2), and their plain twins.

He et al., "Deep Residual Learning for Image Recognition" (2015), Table 6: a 3x3
convolution with 16 filters, then three stages of ``n`` basic blocks with 16, 32
and 64 filters (the first block of stages 2 and 3 halves the resolution with a
stride-2 convolution), global average pooling and a dense classifier: ``6n + 2``
weighted layers (``resnet20`` is n = 3 ... ``resnet110`` n = 18).

Shortcuts are the paper's option A by default: identity, and where the shape
changes, the input subsampled by 2 and zero-padded with as many new channels
(no parameters). ``shortcut="B"`` uses projection shortcuts (1x1 convolution and
BN) there instead. The ``plain*`` twins are the same networks without any
shortcut: the paper's Figure 6 compares the two to show the degradation
problem of deep plain nets.
"""

import keras
from keras import ops

from kerasnets.layers import blocks as B
from kerasnets.layers.pooling import MaxPooling2D
from kerasnets.registry import Paper, Reduced, register

RESNET = Paper("Deep Residual Learning for Image Recognition",
               "https://arxiv.org/abs/1512.03385")
STAGE_FILTERS = (16, 32, 64)


@keras.saving.register_keras_serializable(package="kerasnets")
class ZeroPadChannels(keras.layers.Layer):
    """Option A's shortcut: append ``extra`` zero channels (no weights)."""

    def __init__(self, extra, data_format=None, **kwargs):
        super().__init__(**kwargs)
        self.extra = int(extra)
        self.data_format = data_format or keras.config.image_data_format()

    def call(self, inputs):
        axis = 3 if self.data_format == "channels_last" else 1
        pads = [[0, 0]] * 4
        pads[axis] = [self.extra // 2, self.extra - self.extra // 2]  # split as the paper's code
        return ops.pad(inputs, pads)

    def compute_output_shape(self, input_shape):
        axis = 3 if self.data_format == "channels_last" else 1
        shape = list(input_shape)
        shape[axis] += self.extra
        return tuple(shape)

    def get_config(self):
        return {**super().get_config(), "extra": self.extra, "data_format": self.data_format}


def _shortcut(x, filters, stride, *, kind, norm, name):
    if stride == 1 and B.num_channels(x) == filters:
        return x
    if kind == "B":  # projection: 1x1 convolution with the stride, then BN
        x = B.conv2d(x, filters, 1, stride=stride, use_bias=B.conv_bias(norm),
                     name=f"{name}_downsample_0")
        return B.norm(x, norm, name=f"{name}_downsample_1")
    x = MaxPooling2D(1, strides=stride, name=f"{name}_subsample")(x)
    return ZeroPadChannels(filters - B.num_channels(x), name=f"{name}_zero_pad")(x)


def basic_block(x, filters, *, stride, shortcut, norm="batch", name):
    """Two 3x3 convolutions with BN; ``shortcut`` is "A", "B" or None (plain)."""
    bias = B.conv_bias(norm)
    y = B.conv2d(x, filters, 3, stride=stride, use_bias=bias, name=f"{name}_conv1")
    y = B.norm(y, norm, name=f"{name}_bn1")
    y = B.activation(y, "relu", name=f"{name}_relu1")
    y = B.conv2d(y, filters, 3, use_bias=bias, name=f"{name}_conv2")
    y = B.norm(y, norm, name=f"{name}_bn2")
    if shortcut is not None:
        y = keras.layers.Add(name=f"{name}_add")(
            [y, _shortcut(x, filters, stride, kind=shortcut, norm=norm, name=name)])
    return B.activation(y, "relu", name=f"{name}_out")


def build_cifar_resnet(*, input_shape, num_classes, include_top, pooling, name,
                       blocks_per_stage, residual, shortcut="A", norm="batch"):
    """A CIFAR ResNet (``residual=True``) or its plain twin, ``6 * blocks_per_stage + 2``
    layers deep.

    Args:
        shortcut: "A" (identity, zero-padded where the shape changes: the paper's
            CIFAR choice) or "B" (1x1 projections where the shape changes).
        norm: "batch" (the paper), "group", "layer", "instance" or "none" (see
            :func:`kerasnets.layers.blocks.norm`).
    """
    if shortcut not in ("A", "B"):
        raise ValueError(f"{name}: shortcut must be 'A' or 'B', not {shortcut!r}.")
    inputs = keras.Input(input_shape, name="input")
    x = B.conv2d(inputs, STAGE_FILTERS[0], 3, use_bias=B.conv_bias(norm), name="conv1")
    x = B.norm(x, norm, name="bn1")
    x = B.activation(x, "relu", name="relu")
    for stage, filters in enumerate(STAGE_FILTERS):
        for i in range(blocks_per_stage):
            x = basic_block(x, filters, stride=2 if stage > 0 and i == 0 else 1,
                            shortcut=shortcut if residual else None, norm=norm,
                            name=f"layer{stage + 1}_{i}")
    outputs = B.pooled_classifier(x, num_classes=num_classes, include_top=include_top,
                                  pooling=pooling)
    return keras.Model(inputs, outputs, name=name)


def feature_levels(model, args):
    """The three stages' last blocks (16, 32, 64 channels at strides 1, 2, 4)."""
    last = args["blocks_per_stage"] - 1
    return [(f"layer{stage}_{last}_out", 2**(stage - 1)) for stage in (1, 2, 3)]


_COMMON = dict(input_shape=(32, 32, 3), num_classes=10, paper=RESNET, features=feature_levels,
               # the paper's CIFAR recipe: weight decay 1e-4, no resizing
               recipes={"modern": dict(weight_decay=1e-4)},
               reduced=Reduced(config={"blocks_per_stage": 1}))
# (depth, n, trainable parameters with option A, GMACs at 32x32); the paper's Table 6
# rounds the parameters to 0.27M, 0.46M, 0.66M, 0.85M and 1.7M.
DEPTHS = ((20, 3, 269_722, 0.04055), (32, 5, 464_154, 0.06886), (44, 7, 658_586, 0.09717),
          (56, 9, 853_018, 0.12548), (110, 18, 1_727_962, 0.25289))
for _depth, _n, _params, _gmacs in DEPTHS:
    register(f"resnet{_depth}", build_cifar_resnet, dict(blocks_per_stage=_n, residual=True),
             params=_params, gmacs=_gmacs, **_COMMON)
    register(f"plain{_depth}", build_cifar_resnet, dict(blocks_per_stage=_n, residual=False),
             params=_params, gmacs=_gmacs, **_COMMON)
