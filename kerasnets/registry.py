"""The model registry: every architecture by name, with everything known about it.

A family is one module in ``kerasnets/models/``; it registers each variant in one
line, with all that the rest of the package needs to know about it::

    register("resnet50", build_resnet, dict(block="bottleneck", layers=(3, 4, 6, 3)),
             paper=RESNET, params=25_557_032, gmacs=4.089,
             torchvision=TORCHVISION_NAMES, weights=Weights(URL + "resnet50-11ad3fa6.pth",
             resize_size=232, top1=80.858))

The registry knows no family by name: the first lookup imports every module of
``kerasnets.models`` (a plugin scan, as timm's registry does), so adding a
family is adding a file. The trainer's recipes, the torchvision interop, the
parity tools, the benchmarks and the tests read what they need from here.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import pkgutil
import re
from dataclasses import dataclass, field
from typing import Callable

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Paper:
    title: str
    url: str

    def __str__(self):
        return f"{self.title} ({self.url})"


@dataclass(frozen=True)
class Weights:
    """Published pretrained weights of one variant, and how their inputs were prepared.

    ``url`` is torchvision's checkpoint. torchvision publishes the first hex digits
    of each file's sha256 in its name (``resnet18-f37072fd.pth``) and torch.hub checks
    downloads against that prefix; so do we (:attr:`sha256_prefix`).
    ``options`` are builder options the weights need (GoogLeNet's ``transform_input``).
    """

    url: str
    top1: float  # published ImageNet-1K top-1, %
    resize_size: int = 256
    crop_size: int = 224
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    options: dict = field(default_factory=dict)

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def sha256_prefix(self) -> str:
        match = re.search(r"-([a-f0-9]{6,})\.", self.filename)
        if not match:
            raise ValueError(f"{self.filename}: no sha256 prefix in the file name.")
        return match.group(1)


@dataclass(frozen=True)
class TorchvisionNames:
    """How a family's Keras layer names map to torchvision's module paths.

    ``paths(model)`` returns ``{keras layer name: torch module path}`` for every
    layer with weights (``None`` for a layer torchvision does not have).
    ``rename_keys(state_dict, model)``, when given, fixes a checkpoint's keys first
    (old key spellings, heads the model was built without).
    """

    paths: Callable
    rename_keys: Callable | None = None


@dataclass(frozen=True)
class Reduced:
    """A smaller network of the same family: the same operations with fewer repeated
    blocks (``config`` overrides) and narrower dense heads (``options``), for checks
    that need the operations rather than the size (cross-backend parity, tests)."""

    config: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ModelInfo:
    """What is known about a registered model without building it.

    ``params`` and ``gmacs`` are measured on the default configuration
    (``input_shape``, ``num_classes``), checked by ``tests/test_zoo.py``.
    ``min_input_size`` is the smallest square input every layer accepts.
    ``torchvision`` (when torchvision has the model under the same name) maps the
    layer names; ``weights`` are its published ImageNet weights; ``recipes`` are
    the trainer's per-model settings (``{"d2l": {...}, "modern": {...}}``).
    ``features`` declares the feature levels of ``features_only`` models
    (:mod:`kerasnets.features`): a callable ``(model, args) -> [(layer name,
    reduction), ...]`` over the built model and the builder's arguments (config and
    options, defaults included), or a sentence saying why the family has none.
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
    torchvision: TorchvisionNames | None = field(default=None, repr=False)
    weights: Weights | None = field(default=None, repr=False)
    recipes: dict = field(default_factory=dict, repr=False)
    reduced: Reduced = field(default_factory=Reduced, repr=False)
    features: Callable | str | None = field(default=None, repr=False)

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
_FAMILIES_PACKAGE = "kerasnets.models"
_discovered = False


def register(name, builder, config=None, *, paper, params, gmacs, family=None, **info):
    """Register variant ``name`` as ``builder(**config)``; duplicate names are refused."""
    if name in _REGISTRY:
        raise ValueError(f"Model {name!r} is registered twice.")
    if params < 1 or not gmacs > 0 or not paper.url.startswith("http"):
        raise ValueError(f"{name}: params and gmacs must be positive and the paper a URL.")
    family = family or builder.__module__.rsplit(".", 1)[-1]
    _REGISTRY[name] = ModelInfo(name=name, family=family, builder=builder,
                                config=dict(config or {}), paper=paper, params=params,
                                gmacs=gmacs, **info)


def _discover():
    """Import every family module once (files starting with ``_`` are helpers)."""
    global _discovered
    if _discovered:
        return
    package = importlib.import_module(_FAMILIES_PACKAGE)
    for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if not module.name.startswith("_"):
            importlib.import_module(f"{_FAMILIES_PACKAGE}.{module.name}")
    _discovered = True


def list_models(pattern: str = "*") -> list[str]:
    """Sorted names of the registered models matching the shell-style ``pattern``."""
    _discover()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


def model_info(name: str) -> ModelInfo:
    """Metadata of model ``name``; an unknown name raises ``ValueError`` with suggestions."""
    _discover()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), _REGISTRY, n=5, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"Unknown model {name!r}.{hint} "
                         f"Available: {', '.join(list_models())}.")
    return _REGISTRY[name]
