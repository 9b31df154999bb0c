"""Named training recipes: settings per model that flags can override.

``d2l`` is the recipe of the d2l chapter on classic CNNs (the seeds): plain SGD
(no momentum, no weight decay), 10 epochs, Fashion-MNIST resized per model and
scaled to [0, 1], with the chapter's learning rates and batch sizes. The d2l
code trains ResNet with lr 0.05 (the chapter's ``lr, num_epochs, batch_size =
0.05, 10, 256``), which we follow.

``modern`` is a stronger recipe for small images: SGD with Nesterov momentum,
cosine schedule with warm-up, weight decay, label smoothing, random crops and
flips, standardised inputs, at the data set's own resolution (ResNet/ResNeXt
with the small-input stem), never below a model's minimum input size.

A recipe is settings for every model, then each model's own from its family
module (``recipes={"d2l": {...}}`` in its ``register`` line): the registry is
where a family keeps what the trainer needs to know about it.
"""

from __future__ import annotations

import math

from kerasnets.data.specs import spec_for
from kerasnets.registry import model_info

COMMON = {
    "d2l": dict(optimizer="sgd", momentum=0.0, nesterov=False, weight_decay=0.0,
                schedule="constant", epochs=10, normalize="unit", label_smoothing=0.0,
                warmup_epochs=0),
    "modern": dict(optimizer="sgd", momentum=0.9, nesterov=True, lr=0.1, batch_size=128,
                   weight_decay=5e-4, schedule="cosine", warmup_epochs=2, epochs=30,
                   label_smoothing=0.1, normalize="standardize", flip=True),
    "none": {},
}

RECIPES = {
    "d2l": "the d2l chapter's settings (the seeds): plain SGD, 10 epochs, "
           "per-model lr/batch/resize",
    "modern": "SGD+Nesterov, cosine with warm-up, weight decay, label smoothing, "
              "random crop (1/8 of the size) + flip, native resolution",
    "none": "no recipe: the built-in defaults and your flags only",
}


def recipe_settings(recipe: str, model: str, dataset: str, native_size: int) -> dict:
    """The settings ``recipe`` gives ``model`` on ``dataset`` images of ``native_size`` pixels."""
    if recipe not in RECIPES:
        raise ValueError(f"Unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}.")
    own = model_info(model).recipes.get(recipe, {})
    settings = {**COMMON[recipe], **own}
    if own.get("model_options"):
        settings["model_options"] = dict(own["model_options"])
    if recipe == "modern":
        size = settings.setdefault("image_size", fitting_size(model, native_size))
        settings.setdefault("crop_padding", crop_padding_for(size))
        if not spec_for(dataset).flip_preserves_class:
            settings["flip"] = False  # e.g. a mirrored digit is another digit
    return settings


def crop_padding_for(size: int) -> int:
    """The modern recipe's random-crop padding for ``size``-pixel images: an eighth of the
    size (4 px at CIFAR's 32), at least 2."""
    return max(2, size // 8)


def fitting_size(model: str, native_size: int) -> int:
    """``native_size``, or the next multiple of 32 when the model needs more."""
    minimum = model_info(model).min_input_size
    return native_size if native_size >= minimum else 32 * math.ceil(minimum / 32)
