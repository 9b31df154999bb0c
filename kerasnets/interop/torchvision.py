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

import keras
import numpy as np

from kerasnets.registry import list_models, model_info

# torch buffers with no Keras counterpart; they carry no information for inference.
IGNORED_SUFFIXES = ("num_batches_tracked",)


def _to_numpy(tensor):
    if hasattr(tensor, "detach"):  # torch.Tensor, without importing torch here
        tensor = tensor.detach().cpu().numpy()
    return np.asarray(tensor)


# --- layer name -> torch module path (each family declares its own) -------------------


def _torchvision_names(model):
    try:  # a features_only model keeps the name of the model it was cut from
        info = model_info(getattr(model, "registered_name", None) or model.name)
    except ValueError:
        info = None
    if info is None or info.torchvision is None:
        have = [n for n in list_models() if model_info(n).torchvision is not None]
        raise ValueError(f"Model {model.name!r} has no torchvision counterpart; torchvision "
                         f"weights load into: {', '.join(have)}.")
    return info.torchvision


def torch_paths(model) -> dict[str, str]:
    """Keras layer name -> torchvision module path, for every layer with weights."""
    paths = _torchvision_names(model).paths(model)
    for layer in model.layers:
        if layer.weights and paths.get(layer.name) is None:
            raise ValueError(f"No torchvision counterpart for layer {layer.name!r} of "
                             f"{model.name}.")
    return paths


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


def _normalise_keys(state_dict, model):
    rename = _torchvision_names(model).rename_keys
    return rename(state_dict, model) if rename else state_dict


def load_torchvision_weights(model, state_dict, *, partial=False) -> list[str]:
    """Copy a torchvision ``state_dict`` into ``model`` (a kerasnets model of the same name).

    Raises ``ValueError`` naming the key and both shapes on any missing, extra or
    mis-shaped tensor; nothing is skipped silently except torch's
    ``num_batches_tracked`` counters (and GoogLeNet's auxiliary heads when the
    model has none, as torchvision's own loader does).

    ``partial=True`` is for a model built with another head (``num_classes``) or
    none (``include_top=False``): layers whose shapes differ keep their fresh
    initialisation and keys no layer uses are left out. Every other layer must
    still find its tensors. Returns the names of the layers kept fresh.

    A ``features_only`` model takes the state dict of its whole network: the keys
    of the layers it was cut without (the head, the stages after its last level)
    are left out.
    """
    remaining = {k: _to_numpy(v) for k, v in _normalise_keys(state_dict, model).items()
                 if not k.endswith(IGNORED_SUFFIXES)}
    paths = torch_paths(model)
    assignments, fresh = [], []
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
        mismatch = next(((v, a, s) for v, a, s in zip(layer.weights, arrays, used)
                         if tuple(v.shape) != tuple(a.shape)), None)
        if mismatch and partial:
            fresh.append(layer.name)
            continue
        if mismatch:
            variable, array, suffix = mismatch
            raise ValueError(
                f"{prefix}.{suffix}: torch shape {tuple(torch_weights[suffix].shape)} "
                f"converts to {tuple(array.shape)}, but Keras weight {variable.path} has "
                f"shape {tuple(variable.shape)}.")
        assignments += zip(layer.weights, arrays)
        for suffix in used:
            del remaining[f"{prefix}.{suffix}"]
    if remaining and not (partial or hasattr(model, "feature_info")):
        extra = ", ".join(f"{k} {tuple(v.shape)}" for k, v in list(remaining.items())[:10])
        raise ValueError(f"{len(remaining)} state_dict key(s) match no layer of "
                         f"{model.name}: {extra}.")
    for variable, array in assignments:
        variable.assign(array.astype(variable.dtype))
    return fresh
