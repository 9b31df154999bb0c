"""torchvision state dicts <-> kerasnets models.

:func:`load_torchvision_weights` copies every tensor of a torchvision
``state_dict`` into the matching kerasnets model, converting layouts:

* convolutions ``(out, in/groups, kh, kw)`` -> ``(kh, kw, in/groups, out)``;
  depthwise ``(C, 1, kh, kw)`` -> ``(kh, kw, C, 1)``;
* dense ``(out, in)`` -> ``(in, out)``; a dense layer fed by a flattened
  feature map also has its input rows reordered from torch's (C, H, W) to the
  (H, W, C) that ``keras.layers.Flatten`` produces in both data formats;
* BatchNorm weight/bias/running_mean/running_var -> gamma/beta/moving_mean/
  moving_variance (epsilon and momentum are part of the architecture).

Every key must be used and every Keras weight filled, with matching shapes:
anything else is an error that names the key and both shapes.
"""

from __future__ import annotations

import re

import keras
import numpy as np

# torch buffers with no Keras counterpart; they carry no information for inference.
IGNORED_SUFFIXES = ("num_batches_tracked",)


def _to_numpy(tensor):
    if hasattr(tensor, "detach"):  # torch.Tensor, without importing torch here
        tensor = tensor.detach().cpu().numpy()
    return np.asarray(tensor)


# --- layer name -> torch module path, per family --------------------------------


def _dotted(name):
    return name.replace("_", ".")


def _sequential_paths(model):
    """AlexNet / VGG: torch numbers every module of ``features`` and ``classifier``."""
    paths, part, index = {}, "features", 0
    counted = (keras.layers.Conv2D, keras.layers.BatchNormalization, keras.layers.ReLU,
               keras.layers.MaxPooling2D, keras.layers.Dropout, keras.layers.Dense)
    for layer in model.layers:
        if isinstance(layer, keras.layers.Flatten):
            part, index = "classifier", 0
        elif isinstance(layer, counted):
            paths[layer.name] = f"{part}.{index}"
            index += 1
    return paths


_CONV_NORM = {"conv": "0", "bn": "1"}  # torchvision's Conv2dNormActivation


def _mobilenet_v2_path(name, names):
    if name == "classifier":
        return "classifier.1"
    match = re.fullmatch(r"(stem|last|block(\d+))_(expand|dw|project)?_?(conv|bn)", name)
    if not match:
        return None
    head, number, part, kind = match.groups()
    if head in ("stem", "last"):
        return f"features.{_stem_or_last_index(head, names)}.{_CONV_NORM[kind]}"
    has_expand = f"block{number}_expand_conv" in names
    order = (["expand"] if has_expand else []) + ["dw", "project"]
    position = order.index(part)
    if part == "project":  # plain conv then BN, numbered on
        return f"features.{number}.conv.{position + (kind == 'bn')}"
    return f"features.{number}.conv.{position}.{_CONV_NORM[kind]}"


def _mobilenet_v3_path(name, names):
    if name in ("classifier_fc1", "classifier_fc2"):
        return "classifier.0" if name.endswith("1") else "classifier.3"
    match = re.fullmatch(r"(stem|last|block(\d+))_(expand|dw|se|project)?_?(conv|bn|fc1|fc2)",
                         name)
    if not match:
        return None
    head, number, part, kind = match.groups()
    if head in ("stem", "last"):
        return f"features.{_stem_or_last_index(head, names)}.{_CONV_NORM[kind]}"
    order = [p for p in ("expand", "dw", "se", "project")
             if p in ("dw", "project") or any(n.startswith(f"block{number}_{p}_") for n in names)]
    prefix = f"features.{number}.block.{order.index(part)}"
    return f"{prefix}.{kind}" if part == "se" else f"{prefix}.{_CONV_NORM[kind]}"


def _stem_or_last_index(head, names):
    """MobileNets: the stem is ``features.0``, the last conv follows the blocks."""
    if head == "stem":
        return 0
    return len({n.split("_")[0] for n in names if n.startswith("block")}) + 1


def _names(model):
    return {layer.name for layer in model.layers}


def torch_paths(model) -> dict[str, str]:
    """Keras layer name -> torchvision module path, for every layer with weights."""
    family, names = _family(model), _names(model)
    if family in ("alexnet", "vgg"):
        sequential = _sequential_paths(model)
    paths = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        if family in ("resnet", "googlenet"):
            path = _dotted(layer.name)
        elif family == "densenet":
            path = layer.name if layer.name == "classifier" else f"features.{_dotted(layer.name)}"
        elif family in ("alexnet", "vgg"):
            path = sequential.get(layer.name)
        elif family == "mobilenet_v2":
            path = _mobilenet_v2_path(layer.name, names)
        else:
            path = _mobilenet_v3_path(layer.name, names)
        if path is None:
            raise ValueError(f"No torchvision counterpart for layer {layer.name!r} of "
                             f"{model.name}.")
        paths[layer.name] = path
    return paths


def _family(model):
    from kerasnets.registry import model_info  # local: registry imports the zoo

    name = model.name
    try:
        info = model_info(name)
    except ValueError:
        info = None
    if info is None or not info.torchvision:
        raise ValueError(f"Model {name!r} has no torchvision counterpart; torchvision "
                         f"weights load into: alexnet, vgg*, googlenet, resnet*, resnext*, "
                         f"densenet*, mobilenet_v2, mobilenet_v3_*.")
    if info.family == "mobilenet":
        return "mobilenet_v3" if name.startswith("mobilenet_v3") else "mobilenet_v2"
    return info.family


# --- tensor conversion ------------------------------------------------------------


def _fed_by_flatten(layer):
    """The feature-map shape a Dense layer's input was flattened from, if any."""
    node = layer._inbound_nodes[0]
    tensor = node.input_tensors[0]
    while True:
        producer = tensor._keras_history.operation
        if isinstance(producer, keras.layers.Flatten):
            return producer, producer.input.shape
        if not isinstance(producer, keras.layers.Dropout):
            return None, None
        tensor = producer._inbound_nodes[0].input_tensors[0]


def _convert(layer, torch_weights):
    """The Keras arrays for ``layer`` from its torch tensors (dict by torch suffix)."""
    if isinstance(layer, keras.layers.BatchNormalization):
        order = ["weight", "bias", "running_mean", "running_var"]
        return [torch_weights[k] for k in order], order
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        arrays = [np.transpose(torch_weights["weight"], (2, 3, 0, 1))]
    elif isinstance(layer, keras.layers.Conv2D):
        arrays = [np.transpose(torch_weights["weight"], (2, 3, 1, 0))]
    elif isinstance(layer, keras.layers.Dense):
        kernel = torch_weights["weight"]
        flatten, shape = _fed_by_flatten(layer)
        if flatten is not None:  # Keras flattens (H, W, C) in either data format
            if flatten.data_format == "channels_last":
                h, w, c = shape[1:]
            else:
                c, h, w = shape[1:]
            kernel = kernel.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(-1, h * w * c)
        arrays = [kernel.T]
    else:
        raise ValueError(f"Don't know how to load torch weights into {type(layer).__name__} "
                         f"layer {layer.name!r}.")
    order = ["weight"]
    if layer.use_bias:
        arrays.append(torch_weights["bias"])
        order.append("bias")
    return arrays, order


# torchvision's DenseNet checkpoints predate its module names ("norm.1" for "norm1");
# torchvision renames them on load with this pattern, and so do we.
_LEGACY_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")


def _normalise_keys(state_dict, model):
    keys = {}
    for key, value in state_dict.items():
        match = _LEGACY_DENSENET_KEY.match(key)
        keys[match.group(1) + match.group(2) if match else key] = value
    # Checkpoints of torchvision's GoogLeNet always carry its auxiliary heads; a
    # model built without them (aux_logits=False, as torchvision does after loading)
    # drops exactly those keys.
    if _family(model) == "googlenet" and "aux1_fc2" not in _names(model):
        keys = {k: v for k, v in keys.items() if not k.startswith(("aux1.", "aux2."))}
    return keys


def load_torchvision_weights(model, state_dict) -> None:
    """Copy a torchvision ``state_dict`` into ``model`` (a kerasnets model of the same name).

    Raises ``ValueError`` naming the key and both shapes on any missing, extra or
    mis-shaped tensor; nothing is skipped silently except torch's
    ``num_batches_tracked`` counters (and GoogLeNet's auxiliary heads when the
    model has none, as torchvision's own loader does).
    """
    remaining = {k: _to_numpy(v) for k, v in _normalise_keys(state_dict, model).items()
                 if not k.endswith(IGNORED_SUFFIXES)}
    paths = torch_paths(model)
    assignments = []
    for layer in model.layers:
        if layer.name not in paths:
            continue
        prefix = paths[layer.name]
        torch_weights = {k[len(prefix) + 1:]: v for k, v in remaining.items()
                         if k.startswith(prefix + ".") and "." not in k[len(prefix) + 1:]}
        try:
            arrays, used = _convert(layer, torch_weights)
        except KeyError as missing:
            raise ValueError(f"state_dict has no {prefix}.{missing.args[0]} for Keras layer "
                             f"{layer.name!r} (shapes "
                             f"{[tuple(w.shape) for w in layer.weights]}).") from None
        for variable, array, suffix in zip(layer.weights, arrays, used):
            if tuple(variable.shape) != tuple(array.shape):
                raise ValueError(
                    f"{prefix}.{suffix}: torch shape {tuple(torch_weights[suffix].shape)} "
                    f"converts to {tuple(array.shape)}, but Keras weight {variable.path} has "
                    f"shape {tuple(variable.shape)}.")
            assignments.append((variable, array))
        for suffix in used:
            del remaining[f"{prefix}.{suffix}"]
    if remaining:
        extra = ", ".join(f"{k} {tuple(v.shape)}" for k, v in list(remaining.items())[:10])
        raise ValueError(f"{len(remaining)} state_dict key(s) match no layer of "
                         f"{model.name}: {extra}.")
    for variable, array in assignments:
        variable.assign(array.astype(variable.dtype))
