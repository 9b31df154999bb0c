"""``create_model``: a registered model, built and checked, with its weights.

:func:`create_model` resolves the name in the registry, checks the input shape
and the options (names and value types, against the family builder's
signature), builds the model in the requested data format and loads weights:
``"imagenet"`` (torchvision's, see :mod:`kerasnets.interop.imagenet`) or a
``.weights.h5``/``.keras`` file (Keras' own ``model.load_weights``).
With ``features_only=True`` it returns the feature maps at the end of each stage
instead (:mod:`kerasnets.features`).
"""

from __future__ import annotations

import contextlib
import os

import keras

from kerasnets.layers.blocks import NORMS
from kerasnets import features
from kerasnets.registry import model_info


@contextlib.contextmanager
def data_format_scope(data_format):
    """Build layers under ``data_format``; each layer records it in its config, and the
    previous global setting is restored on exit."""
    previous = keras.config.image_data_format()
    keras.config.set_image_data_format(data_format or previous)
    try:
        yield
    finally:
        keras.config.set_image_data_format(previous)


def _resolve_input_shape(info, input_shape, data_format):
    if input_shape is None:
        h, w, c = info.input_shape
        return (h, w, c) if data_format == "channels_last" else (c, h, w)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3:
        raise ValueError(f"input_shape must be (height, width, channels) "
                         f"(or (channels, height, width) for channels_first), "
                         f"got {input_shape}.")
    return input_shape


def _check_input_size(info, input_shape, data_format):
    spatial = input_shape[:2] if data_format == "channels_last" else input_shape[1:]
    channels = input_shape[2] if data_format == "channels_last" else input_shape[0]
    if channels is None or channels < 1:
        raise ValueError(f"{info.name}: input_shape {input_shape} needs a known number "
                         f"of channels ({data_format}).")
    for size in spatial:
        if size is not None and size < info.min_input_size:
            raise ValueError(
                f"Input {input_shape} is too small for {info.name}: its layers need at "
                f"least {info.min_input_size}x{info.min_input_size} pixels. Use a larger "
                f"input_shape (or resize the images, e.g. train.py --image-size "
                f"{max(info.min_input_size, info.input_shape[0])}).")


def _value_fits(value, default) -> bool:
    """Whether ``value`` has the type of the option's ``default`` (None: anything)."""
    if default is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, (int, float)):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and \
            (isinstance(default, float) or isinstance(value, int))
    return isinstance(value, type(default))


def _fraction(value):
    return None if 0 <= value < 1 else "must be in [0, 1)"


def _positive(value):
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return f"must be a number > 0, not a {type(value).__name__}"
    return None if value > 0 else "must be > 0"


def _count(value):
    return None if value >= 1 else "must be an integer >= 1"


def _cardinality(value):
    # resnext_cifar keeps its FLOPs within 5% of cardinality 1 up to 32 groups, not beyond
    return None if 1 <= value <= 32 else "must be an integer from 1 to 32"


def _one_of(*choices):
    def check(value):
        return None if value in choices else f"must be one of {', '.join(map(repr, choices))}"
    return check


# What a value must be besides its type, by option name (the families share the names).
# The builders check these too, but only while building, after a trainer has written
# its run folder; here they are checked before anything is built or written.
OPTION_RULES = {
    "dropout_rate": _fraction,
    "drop_path_rate": _fraction,
    "width_multiplier": _positive,
    "alpha": _positive,  # default None: the type check lets anything through
    "fc_units": _count,
    "bn_size": _count,
    "pool": _one_of("avg", "max"),
    "shortcut": _one_of("A", "B"),
    "norm": _one_of(*NORMS),
    "cardinality": _cardinality,
    "activation": _one_of("relu", "relu6", "hard_swish", "hard_sigmoid", "sigmoid", "tanh",
                          "silu", "gelu"),
}


def check_options(name, options):
    """Raise ``ValueError`` for an option ``name``'s builder does not take, a value of
    the wrong type (``small_input="maybe"``, ``dropout_rate="abc"``) or out of its range
    (``dropout_rate=2``, ``pool="median"``: :data:`OPTION_RULES`)."""
    info = model_info(name)
    accepted = info.options
    listed = ", ".join(f"{k}={v!r}" for k, v in accepted.items()) or "none"
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"{info.name} does not take option(s) {', '.join(unknown)}. "
                         f"Its options (with defaults): {listed}.")
    for key, value in options.items():
        default = accepted[key]
        if not _value_fits(value, default):
            raise ValueError(f"{info.name}: option {key}={value!r} should be a "
                             f"{type(default).__name__} like its default {default!r}.")
        rule = OPTION_RULES.get(key)
        problem = rule(value) if rule and value is not None else None
        if problem:
            raise ValueError(f"{info.name}: option {key}={value!r} {problem}.")


def build_model(name, *, num_classes=None, input_shape=None, include_top=True, pooling=None,
                data_format=None, check_input_size=True, **options) -> keras.Model:
    """Build model ``name`` with fresh weights (:func:`create_model` without ``weights``)."""
    info = model_info(name)
    data_format = data_format or keras.config.image_data_format()
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"data_format must be 'channels_last' or 'channels_first', "
                         f"not {data_format!r}.")
    if pooling not in (None, "avg", "max"):
        raise ValueError(f"pooling must be None, 'avg' or 'max', not {pooling!r}.")
    num_classes = info.num_classes if num_classes is None else int(num_classes)
    if include_top and num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
    input_shape = _resolve_input_shape(info, input_shape, data_format)
    if check_input_size:
        _check_input_size(info, input_shape, data_format)
    check_options(name, options)
    with data_format_scope(data_format):
        return info.builder(input_shape=input_shape, num_classes=num_classes,
                            include_top=include_top, pooling=pooling, name=name,
                            **info.config, **options)


def build_reduced(name, *, input_shape, num_classes=10, include_top=True, pooling=None,
                  data_format="channels_last", **options) -> keras.Model:
    """``name`` in its family's reduced configuration (``ModelInfo.reduced``: one block
    per stage, narrow dense heads; ``options`` override the reduced options), for the
    checks that need the family's blocks but not its depth (parity, tests)."""
    info = model_info(name)
    with data_format_scope(data_format):
        return info.builder(input_shape=input_shape, num_classes=num_classes,
                            include_top=include_top, pooling=pooling, name=name,
                            **{**info.config, **info.reduced.config},
                            **{**info.reduced.options, **options})


def create_model(name, *, num_classes=None, input_shape=None, include_top=True, pooling=None,
                 weights=None, data_format=None, features_only=False, out_indices=None,
                 **options) -> keras.Model:
    """Build a registered model.

    Args:
        name: a name from :func:`kerasnets.list_models`, e.g. ``"resnet50"``.
        num_classes: size of the classifier; default the model's own (1000 for the
            ImageNet models, 10 for ``lenet5``).
        input_shape: ``(height, width, channels)`` (``(C, H, W)`` for
            ``channels_first``); default the model's (``model_info(name).input_shape``).
            Grayscale works: ``(28, 28, 1)``.
        include_top: keep the classifier. Without it the model returns the last
            feature map, or a pooled vector if ``pooling`` is ``"avg"``/``"max"``.
        weights: ``None`` (random init), ``"imagenet"`` (torchvision's ImageNet
            weights, converted once and cached; see :mod:`kerasnets.interop.imagenet`)
            or a path to a ``.weights.h5`` or ``.keras`` file of the same architecture.
        data_format: ``"channels_last"`` (default) or ``"channels_first"``.
        features_only: return the feature maps at the end of each stage (timm's
            ``features_only``): a :class:`kerasnets.features.FeatureModel` with
            ``feature_info`` (channels, reduction and layer of each output). The
            network is built without its classifier (``include_top`` is ignored;
            ``num_classes`` and ``pooling`` are refused) and ``weights`` load into it.
        out_indices: the feature levels to return (``features_only`` only): ``None``
            for all, a list of level indices, or an int ``n`` for the last ``n``.
        **options: family options, e.g. ``dropout_rate``, ``drop_path_rate``,
            ``zero_init_residual``, ``width_multiplier``, ``small_input``;
            ``model_info(name).options`` lists them.

    Returns:
        A functional ``keras.Model`` that saves to ``.keras`` and loads back with
        ``keras.saving.load_model`` (once ``kerasnets`` is imported).
    """
    info = model_info(name)
    if weights == "imagenet" and options.get("norm", "batch") != "batch":
        raise ValueError(f"{name}: the ImageNet weights were trained with BatchNorm; "
                         f"use norm='batch' (the default) with weights='imagenet'.")
    if features_only:
        _check_features_request(info, num_classes=num_classes, pooling=pooling)
        include_top = False
    elif out_indices is not None:
        raise ValueError(f"out_indices={out_indices!r} picks feature levels: it needs "
                         f"features_only=True.")
    if weights == "imagenet":
        from kerasnets.interop import imagenet

        options = {**imagenet.published_weights(info).options, **options}
    model = build_model(name, num_classes=num_classes, input_shape=input_shape,
                        include_top=include_top, pooling=pooling, data_format=data_format,
                        **options)
    if features_only:  # checked before any weights are read
        levels = info.features(model, {**info.options, **info.config, **options})
        features.select_levels(out_indices, len(levels), name)
    if weights == "imagenet":
        imagenet.load_imagenet_weights(model, info)
    elif weights is not None:
        _load_weights_file(model, weights)
    if features_only:
        return features.feature_model(model, levels, out_indices, registered_name=name)
    return model


def _check_features_request(info, *, num_classes, pooling):
    if isinstance(info.features, str):
        raise ValueError(f"{info.name} has no features_only model: {info.features}")
    if info.features is None:
        raise ValueError(f"{info.name} declares no feature levels yet (features= in its "
                         f"register line in kerasnets/models/{info.family}.py); use "
                         f"include_top=False for its last feature map.")
    given = [f"{k}={v!r}" for k, v in (("num_classes", num_classes), ("pooling", pooling))
             if v is not None]
    if given:
        raise ValueError(f"features_only=True returns unpooled feature maps without a "
                         f"classifier: drop {' and '.join(given)}.")


def _load_weights_file(model, path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Weights file {path!r} does not exist.")
    if not path.endswith((".keras", ".weights.h5")):
        raise ValueError(f"Cannot load weights from {path!r}: expected a .weights.h5 or "
                         f".keras file.")
    try:
        model.load_weights(path)
    except ValueError as error:  # Keras names the layer; we add the file and the cure
        raise ValueError(f"{path} does not fit {model.name} as built here (same "
                         f"options, num_classes and include_top?): {error}") from None
