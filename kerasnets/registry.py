"""The model registry: every architecture by name, with its metadata.

Families register each variant in one line (see ``kerasnets/models/resnet.py``)::

    register("resnet50", build_resnet, dict(block="bottleneck", layers=(3, 4, 6, 3)),
             paper=RESNET, params=25_557_032, gmacs=4.09)

:func:`create_model` resolves the name, checks the input and the options, and
calls the family builder inside the requested data format.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import inspect
import os
from dataclasses import dataclass, field
from typing import Callable

import keras


@dataclass(frozen=True)
class Paper:
    title: str
    url: str

    def __str__(self):
        return f"{self.title} ({self.url})"


@dataclass(frozen=True)
class ModelInfo:
    """What is known about a registered model without building it.

    ``params`` and ``gmacs`` are measured on the default configuration
    (``input_shape``, ``num_classes``), checked by ``tests/test_zoo.py``.
    ``min_input_size`` is the smallest square input every layer accepts.
    """

    name: str
    family: str
    builder: Callable = field(repr=False)
    config: dict = field(repr=False)
    paper: Paper
    params: int
    gmacs: float
    input_shape: tuple = (224, 224, 3)
    num_classes: int = 1000
    min_input_size: int = 1
    torchvision: bool = False  # torchvision has it, under the same name

    @property
    def options(self) -> dict:
        """Keyword options the family builder accepts, with their defaults.

        A builder's arguments without a default describe the architecture and come
        from the variant's config; those with a default are the user's options.
        """
        sig = inspect.signature(self.builder)
        return {p.name: p.default for p in sig.parameters.values()
                if p.kind == p.KEYWORD_ONLY and p.default is not p.empty}


_REGISTRY: dict[str, ModelInfo] = {}


def register(name, builder, config=None, *, paper, params, gmacs, family=None, **info):
    """Register variant ``name`` as ``builder(**config)``; duplicate names are refused."""
    if name in _REGISTRY:
        raise ValueError(f"Model {name!r} is registered twice.")
    family = family or builder.__module__.rsplit(".", 1)[-1]
    _REGISTRY[name] = ModelInfo(name=name, family=family, builder=builder,
                                config=dict(config or {}), paper=paper, params=params,
                                gmacs=gmacs, **info)


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching the shell-style ``pattern``."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def model_info(name: str) -> ModelInfo:
    """Metadata of model ``name``; an unknown name raises ``ValueError`` with suggestions."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=5, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown model {name!r}.{hint} "
                         f"Available: {', '.join(list_models())}.")
    return _REGISTRY[name]


@contextlib.contextmanager
def data_format_scope(data_format):
    """Build layers under ``data_format``; each layer records it in its config."""
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


def _check_options(info, options):
    accepted = info.options
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        listed = ", ".join(f"{k}={v!r}" for k, v in accepted.items()) or "none"
        raise ValueError(f"{info.name} does not take option(s) {', '.join(unknown)}. "
                         f"Its options (with defaults): {listed}.")


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
    _check_options(info, options)
    with data_format_scope(data_format):
        return info.builder(input_shape=input_shape, num_classes=num_classes,
                            include_top=include_top, pooling=pooling, name=name,
                            **info.config, **options)


def create_model(name, *, num_classes=None, input_shape=None, include_top=True, pooling=None,
                 weights=None, data_format=None, **options) -> keras.Model:
    """Build a registered model.

    Args:
        name: a name from :func:`list_models`, e.g. ``"resnet50"``.
        num_classes: size of the classifier; default the model's own (1000 for the
            ImageNet models, 10 for ``lenet5``).
        input_shape: ``(height, width, channels)`` (``(C, H, W)`` for
            ``channels_first``); default the model's (``model_info(name).input_shape``).
            Grayscale works: ``(28, 28, 1)``.
        include_top: keep the classifier. Without it the model returns the last
            feature map, or a pooled vector if ``pooling`` is ``"avg"``/``"max"``.
        weights: ``None`` (random init), ``"imagenet"`` (torchvision's ImageNet
            weights, converted once and cached; see :mod:`kerasnets.interop.imagenet`)
            or a path to a ``.weights.h5`` or ``.keras`` file whose layers match.
        data_format: ``"channels_last"`` (default) or ``"channels_first"``.
        **options: family options, e.g. ``dropout_rate``, ``drop_path_rate``,
            ``zero_init_residual``, ``width_multiplier``, ``small_input``;
            ``model_info(name).options`` lists them.

    Returns:
        A functional ``keras.Model`` that saves to ``.keras`` and loads back with
        ``keras.saving.load_model`` (once ``kerasnets`` is imported).
    """
    if weights == "imagenet":
        from kerasnets.interop.imagenet import PRETRAINED_OPTIONS, checkpoint

        checkpoint(name)  # a clear error for models without published weights
        options = {**PRETRAINED_OPTIONS.get(name, {}), **options}
    model = build_model(name, num_classes=num_classes, input_shape=input_shape,
                        include_top=include_top, pooling=pooling, data_format=data_format,
                        **options)
    if weights == "imagenet":
        from kerasnets.interop.imagenet import load_imagenet_weights

        load_imagenet_weights(model, name)
    elif weights is not None:
        load_weights(model, weights)
    return model


def load_weights(model, path):
    """Load ``path`` (``.weights.h5`` or ``.keras``) into ``model``, by layer."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"Weights file {path!r} does not exist.")
    if path.endswith(".keras"):
        source = keras.saving.load_model(path, compile=False)
        _copy_weights(source, model, path)
    elif path.endswith(".weights.h5"):
        model.load_weights(path)
    else:
        raise ValueError(f"Cannot load weights from {path!r}: expected a .weights.h5 or "
                         f".keras file.")


def _copy_weights(source, target, path):
    src = {w.path: w for w in source.weights}
    for w in target.weights:
        if w.path not in src:
            raise ValueError(f"{path}: has no weight {w.path!r} for {target.name}.")
        if tuple(src[w.path].shape) != tuple(w.shape):
            raise ValueError(f"{path}: weight {w.path!r} has shape {tuple(src[w.path].shape)}, "
                             f"{target.name} needs {tuple(w.shape)}.")
        w.assign(src[w.path])
