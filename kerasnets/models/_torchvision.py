"""Naming conventions the families share for mapping their layers to torchvision's.

A family's :class:`~kerasnets.registry.TorchvisionNames` is built from these; the
family-specific rules stay in the family's own module.
"""

import keras


def dotted(name: str) -> str:
    """``layer1_0_conv1`` -> ``layer1.0.conv1`` (the families whose Keras names are
    torchvision's module paths with ``_`` for ``.``)."""
    return name.replace("_", ".")


def dotted_paths(model, prefix="", keep=()):
    """Every layer with weights at its dotted path (``prefix`` before it, except the
    names in ``keep``, which are torchvision's paths as they are)."""
    return {layer.name: layer.name if layer.name in keep else prefix + dotted(layer.name)
            for layer in model.layers if layer.weights}


def sequential_paths(model):
    """AlexNet / VGG: torchvision numbers every module of its ``features`` and
    ``classifier`` ``nn.Sequential``s, weightless ones (ReLU, pooling, dropout) too."""
    paths, part, index = {}, "features", 0
    counted = (keras.layers.Conv2D, keras.layers.BatchNormalization, keras.layers.ReLU,
               keras.layers.MaxPooling2D, keras.layers.Dropout, keras.layers.Dense)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Flatten):
            part, index = "classifier", 0
        elif isinstance(layer, counted):
            if layer.weights:
                paths[layer.name] = f"{part}.{index}"
            index += 1
    return paths


# torchvision's Conv2dNormActivation: an nn.Sequential of conv, norm (and activation).
CONV_NORM_INDEX = {"conv": "0", "bn": "1"}
