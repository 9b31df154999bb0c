"""MobileNet V1, V2 and V3.

* V1: Howard et al., "MobileNets: Efficient Convolutional Neural Networks for
  Mobile Vision Applications" (2017), as the paper and the seeds write it
  (depthwise-separable conv blocks with BN and ReLU; channels ``int(c * alpha)``
  as keras.applications); torch-style symmetric padding like the rest of the zoo.
* V2: Sandler et al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks"
  (2018), as torchvision defines it.
* V3: Howard et al., "Searching for MobileNetV3" (2019), as torchvision defines
  it (BN eps 1e-3, momentum 0.01; squeeze-excitation with hard-sigmoid).

The width multiplier is ``width_multiplier`` (``alpha`` is accepted too, the name
keras.applications uses). The resolution multiplier is the input size. ``norm``
picks the normalisation of every conv block ("batch", as the papers, "group",
"layer", "instance" or "none": :func:`kerasnets.layers.blocks.norm`); a depthwise
convolution's channels are normalised like any other's.
"""

import re

import keras

from kerasnets.features import last_layer_of
from kerasnets.layers import blocks as B
from kerasnets.models._torchvision import CONV_NORM_INDEX
from kerasnets.registry import Paper, TorchvisionNames, Weights, register

MOBILENET_V1 = Paper("MobileNets: Efficient Convolutional Neural Networks for Mobile Vision "
                     "Applications", "https://arxiv.org/abs/1704.04861")
MOBILENET_V2 = Paper("MobileNetV2: Inverted Residuals and Linear Bottlenecks",
                     "https://arxiv.org/abs/1801.04381")
MOBILENET_V3 = Paper("Searching for MobileNetV3", "https://arxiv.org/abs/1905.02244")


def _width(width_multiplier, alpha):
    width = width_multiplier if alpha is None else alpha
    if width <= 0:
        raise ValueError(f"width_multiplier (alpha) must be > 0, got {width}.")
    return width


def _residual(x, shortcut, *, drop_path_rate, name):
    x = B.drop_path(x, drop_path_rate, name=f"{name}_drop_path")
    return keras.layers.Add(name=f"{name}_add")([x, shortcut])


# --- V1 ---------------------------------------------------------------------------

# (pointwise filters, depthwise stride) of the 13 depthwise-separable blocks.
V1_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
             (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))


def build_mobilenet_v1(*, input_shape, num_classes, include_top, pooling, name,
                       width_multiplier=1.0, alpha=None, activation="relu",
                       dropout_rate=1e-3, norm="batch"):
    """MobileNet V1.

    Args:
        width_multiplier / alpha: channel multiplier (0.25, 0.5, 0.75, 1.0).
        activation: "relu" (paper, seeds) or "relu6" (keras.applications).
        dropout_rate: before the classifier (keras.applications: 1e-3).
    """
    width = _width(width_multiplier, alpha)
    inputs = keras.Input(input_shape, name="input")
    x = B.conv_bn_act(inputs, int(32 * width), 3, stride=2, act=activation, norm_kind=norm,
                      name="stem")
    for i, (filters, stride) in enumerate(V1_BLOCKS, start=1):
        x = B.conv_bn_act(x, B.num_channels(x), 3, stride=stride, groups=B.num_channels(x),
                          act=activation, norm_kind=norm, name=f"block{i}_dw")
        x = B.conv_bn_act(x, int(filters * width), 1, act=activation, norm_kind=norm,
                          name=f"block{i}_pw")
    outputs = B.pooled_classifier(x, num_classes=num_classes, include_top=include_top,
                                  pooling=pooling, dropout_rate=dropout_rate,
                                  fc_name="classifier")
    return keras.Model(inputs, outputs, name=name)


# --- V2 ---------------------------------------------------------------------------

# (expansion t, channels c, repeats n, first stride s) from the paper's Table 2.
V2_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
               (6, 160, 3, 2), (6, 320, 1, 1))


def inverted_residual_v2(x, out_channels, *, stride, expand_ratio, drop_path_rate, norm,
                         name):
    in_channels = B.num_channels(x)
    hidden = int(round(in_channels * expand_ratio))
    y = x
    if expand_ratio != 1:
        y = B.conv_bn_act(y, hidden, 1, act="relu6", norm_kind=norm, name=f"{name}_expand")
    y = B.conv_bn_act(y, hidden, 3, stride=stride, groups=hidden, act="relu6",
                      norm_kind=norm, name=f"{name}_dw")
    y = B.conv_bn_act(y, out_channels, 1, act=None, norm_kind=norm, name=f"{name}_project")
    if stride == 1 and in_channels == out_channels:
        y = _residual(y, x, drop_path_rate=drop_path_rate, name=name)
    return y


def build_mobilenet_v2(*, input_shape, num_classes, include_top, pooling, name,
                       width_multiplier=1.0, alpha=None, dropout_rate=0.2, drop_path_rate=0.0,
                       norm="batch"):
    """MobileNet V2.

    Args:
        width_multiplier / alpha: channel multiplier (channels rounded to multiples of 8).
        dropout_rate: before the classifier (torchvision: 0.2).
        drop_path_rate: stochastic depth on the residual blocks, rising linearly.
    """
    width = _width(width_multiplier, alpha)
    inputs = keras.Input(input_shape, name="input")
    x = B.conv_bn_act(inputs, B.make_divisible(32 * width), 3, stride=2, act="relu6",
                      norm_kind=norm, name="stem")
    total = sum(n for _, _, n, _ in V2_SETTINGS)
    index = 0
    for t, c, n, s in V2_SETTINGS:
        for i in range(n):
            index += 1
            x = inverted_residual_v2(x, B.make_divisible(c * width), stride=s if i == 0 else 1,
                                     expand_ratio=t, norm=norm, name=f"block{index}",
                                     drop_path_rate=drop_path_rate * (index - 1) / (total - 1))
    x = B.conv_bn_act(x, B.make_divisible(1280 * max(1.0, width)), 1, act="relu6",
                      norm_kind=norm, name="last")
    outputs = B.pooled_classifier(x, num_classes=num_classes, include_top=include_top,
                                  pooling=pooling, dropout_rate=dropout_rate,
                                  fc_name="classifier")
    return keras.Model(inputs, outputs, name=name)


# --- V3 ---------------------------------------------------------------------------

# torchvision's settings: (kernel, expanded, out, squeeze-excite, activation, stride).
V3_LARGE = ((3, 16, 16, False, "relu", 1), (3, 64, 24, False, "relu", 2),
            (3, 72, 24, False, "relu", 1), (5, 72, 40, True, "relu", 2),
            (5, 120, 40, True, "relu", 1), (5, 120, 40, True, "relu", 1),
            (3, 240, 80, False, "hard_swish", 2), (3, 200, 80, False, "hard_swish", 1),
            (3, 184, 80, False, "hard_swish", 1), (3, 184, 80, False, "hard_swish", 1),
            (3, 480, 112, True, "hard_swish", 1), (3, 672, 112, True, "hard_swish", 1),
            (5, 672, 160, True, "hard_swish", 2), (5, 960, 160, True, "hard_swish", 1),
            (5, 960, 160, True, "hard_swish", 1))
V3_SMALL = ((3, 16, 16, True, "relu", 2), (3, 72, 24, False, "relu", 2),
            (3, 88, 24, False, "relu", 1), (5, 96, 40, True, "hard_swish", 2),
            (5, 240, 40, True, "hard_swish", 1), (5, 240, 40, True, "hard_swish", 1),
            (5, 120, 48, True, "hard_swish", 1), (5, 144, 48, True, "hard_swish", 1),
            (5, 288, 96, True, "hard_swish", 2), (5, 576, 96, True, "hard_swish", 1),
            (5, 576, 96, True, "hard_swish", 1))
V3_BN = dict(bn_epsilon=1e-3, bn_momentum=0.01)


def inverted_residual_v3(x, kernel, expanded, out_channels, use_se, act, stride, *,
                         drop_path_rate, norm, name):
    in_channels = B.num_channels(x)
    y = x
    if expanded != in_channels:
        y = B.conv_bn_act(y, expanded, 1, act=act, norm_kind=norm, name=f"{name}_expand",
                          **V3_BN)
    y = B.conv_bn_act(y, expanded, kernel, stride=stride, groups=expanded, act=act,
                      norm_kind=norm, name=f"{name}_dw", **V3_BN)
    if use_se:
        y = B.squeeze_excite(y, B.make_divisible(expanded // 4), name=f"{name}_se")
    y = B.conv_bn_act(y, out_channels, 1, act=None, norm_kind=norm, name=f"{name}_project",
                      **V3_BN)
    if stride == 1 and in_channels == out_channels:
        y = _residual(y, x, drop_path_rate=drop_path_rate, name=name)
    return y


def build_mobilenet_v3(*, input_shape, num_classes, include_top, pooling, name, settings,
                       last_channels, width_multiplier=1.0, alpha=None, dropout_rate=0.2,
                       drop_path_rate=0.0, norm="batch"):
    """MobileNet V3 (large or small by ``settings``).

    Args:
        width_multiplier / alpha: channel multiplier (channels rounded to multiples of 8).
        dropout_rate: between the two classifier layers (torchvision: 0.2).
        drop_path_rate: stochastic depth on the residual blocks, rising linearly.
    """
    width = _width(width_multiplier, alpha)
    inputs = keras.Input(input_shape, name="input")
    x = B.conv_bn_act(inputs, B.make_divisible(16 * width), 3, stride=2, act="hard_swish",
                      norm_kind=norm, name="stem", **V3_BN)
    for i, (kernel, expanded, out, use_se, act, stride) in enumerate(settings, start=1):
        x = inverted_residual_v3(x, kernel, B.make_divisible(expanded * width),
                                 B.make_divisible(out * width), use_se, act, stride,
                                 drop_path_rate=drop_path_rate * (i - 1) / (len(settings) - 1),
                                 norm=norm, name=f"block{i}")
    x = B.conv_bn_act(x, 6 * B.num_channels(x), 1, act="hard_swish", norm_kind=norm,
                      name="last", **V3_BN)
    if include_top:
        x = B.global_pool(x, "avg", name="avgpool")
        x = B.dense(x, B.make_divisible(last_channels * width), name="classifier_fc1")
        x = B.activation(x, "hard_swish", name="classifier_act")
        if dropout_rate:
            x = keras.layers.Dropout(dropout_rate, name="classifier_dropout")(x)
        x = B.dense(x, num_classes, name="classifier_fc2")
    elif pooling:
        x = B.global_pool(x, pooling, name="avgpool")
    return keras.Model(inputs, x, name=name)


# --- torchvision's module paths ---------------------------------------------------


def _stem_or_last_index(head, names):
    """torchvision numbers ``features``: the stem is 0, the last conv follows the blocks."""
    if head == "stem":
        return 0
    return len({n.split("_")[0] for n in names if n.startswith("block")}) + 1


def _v2_path(name, names):
    if name == "classifier":
        return "classifier.1"
    match = re.fullmatch(r"(stem|last|block(\d+))_(expand|dw|project)?_?(conv|bn)", name)
    if not match:
        return None
    head, number, part, kind = match.groups()
    if head in ("stem", "last"):
        return f"features.{_stem_or_last_index(head, names)}.{CONV_NORM_INDEX[kind]}"
    has_expand = f"block{number}_expand_conv" in names
    order = (["expand"] if has_expand else []) + ["dw", "project"]
    position = order.index(part)
    if part == "project":  # a plain conv then BN in torchvision, numbered on
        return f"features.{number}.conv.{position + (kind == 'bn')}"
    return f"features.{number}.conv.{position}.{CONV_NORM_INDEX[kind]}"


def _v3_path(name, names):
    if name in ("classifier_fc1", "classifier_fc2"):
        return "classifier.0" if name.endswith("1") else "classifier.3"
    match = re.fullmatch(r"(stem|last|block(\d+))_(expand|dw|se|project)?_?(conv|bn|fc1|fc2)",
                         name)
    if not match:
        return None
    head, number, part, kind = match.groups()
    if head in ("stem", "last"):
        return f"features.{_stem_or_last_index(head, names)}.{CONV_NORM_INDEX[kind]}"
    order = [p for p in ("expand", "dw", "se", "project")
             if p in ("dw", "project") or any(n.startswith(f"block{number}_{p}_") for n in names)]
    prefix = f"features.{number}.block.{order.index(part)}"
    return f"{prefix}.{kind}" if part == "se" else f"{prefix}.{CONV_NORM_INDEX[kind]}"


def _paths(path_of):
    def paths(model):
        names = {layer.name for layer in model.layers}
        return {layer.name: path_of(layer.name, names) for layer in model.layers
                if layer.weights}
    return paths


# --- feature levels (features_only) -----------------------------------------------


def _levels_before_strides(units):
    """timm's rule for these nets: ``units`` are ``(name prefix, stride)`` in order; a level
    ends at the last unit before each stride-2 unit, and at the last unit."""
    levels, reduction = [], 1
    for i, (prefix, stride) in enumerate(units):
        reduction *= stride
        if i == len(units) - 1 or units[i + 1][1] > 1:
            levels.append((prefix, reduction))
    return levels


def _block_strides(strides):
    return [(f"block{i}", s) for i, s in enumerate(strides, start=1)]


def _features(units):
    """Levels of the built model: a block ends at its residual add, or at its last layer."""
    def feature_levels(model, args):
        return [(last_layer_of(model, prefix), reduction)
                for prefix, reduction in _levels_before_strides(units(args))]
    return feature_levels


def _v1_units(args):
    return [("stem", 2)] + _block_strides(s for _, s in V1_BLOCKS)


def _v2_units(args):  # timm's levels end at block17 (320 channels), not at the 1x1 conv after
    return [("stem", 2)] + _block_strides(s if i == 0 else 1 for *_, n, s in V2_SETTINGS
                                          for i in range(n))


def _v3_units(args):  # timm counts the final 1x1 conv ("last") as a block: the last level
    return [("stem", 2)] + _block_strides(row[-1] for row in args["settings"]) + [("last", 1)]


_URL = "https://download.pytorch.org/models/"
_RECIPES = {"d2l": dict(lr=0.1, batch_size=256, image_size=96)}
register("mobilenet_v1", build_mobilenet_v1, paper=MOBILENET_V1, params=4_231_976, gmacs=0.569,
         recipes=_RECIPES, features=_features(_v1_units))
register("mobilenet_v2", build_mobilenet_v2, paper=MOBILENET_V2, params=3_504_872, gmacs=0.301,
         features=_features(_v2_units),
         torchvision=TorchvisionNames(paths=_paths(_v2_path)), recipes=_RECIPES,
         weights=Weights(_URL + "mobilenet_v2-7ebf99e0.pth", top1=72.154, resize_size=232))
_V3 = dict(paper=MOBILENET_V3, torchvision=TorchvisionNames(paths=_paths(_v3_path)),
           recipes=_RECIPES, features=_features(_v3_units))
register("mobilenet_v3_large", build_mobilenet_v3, dict(settings=V3_LARGE, last_channels=1280),
         params=5_483_032, gmacs=0.217, **_V3,
         weights=Weights(_URL + "mobilenet_v3_large-5c1a4163.pth", top1=75.274,
                         resize_size=232))
register("mobilenet_v3_small", build_mobilenet_v3, dict(settings=V3_SMALL, last_channels=1024),
         params=2_542_856, gmacs=0.057, **_V3,
         weights=Weights(_URL + "mobilenet_v3_small-047dcff4.pth", top1=67.668))
