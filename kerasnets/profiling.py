"""Counting a built model: trainable parameters and multiply-accumulates.

MACs count what torchvision's published GFLOPS count: the multiply-adds of
convolutions and dense layers at batch size 1 (BatchNorm, activations, pooling
and additions are left out, being a few percent at most).
"""

import math

import keras


def count_params(model: keras.Model, trainable: bool = True) -> int:
    weights = model.trainable_weights if trainable else model.non_trainable_weights
    return int(sum(math.prod(w.shape) for w in weights))


def _spatial_size(shape, data_format):
    return math.prod(shape[1:-1] if data_format == "channels_last" else shape[2:])


def layer_macs(layer) -> int:
    """Multiply-accumulates of one call of ``layer`` on one image (0 if weightless)."""
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        out = layer.output.shape
        kh, kw, _, _ = layer.kernel.shape
        channels = out[-1] if layer.data_format == "channels_last" else out[1]
        return _spatial_size(out, layer.data_format) * channels * kh * kw
    if isinstance(layer, keras.layers.Conv2D):
        out = layer.output.shape
        kh, kw, in_per_group, filters = layer.kernel.shape
        return _spatial_size(out, layer.data_format) * filters * kh * kw * in_per_group
    if isinstance(layer, keras.layers.Dense):
        return math.prod(layer.kernel.shape)
    return 0


def count_macs(model: keras.Model) -> int:
    """Multiply-accumulates of one forward pass on one image; nested models included."""
    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            total += count_macs(layer)
        else:
            total += layer_macs(layer)
    return total


def model_table(names=None) -> str:
    """A markdown table of the zoo from the metadata (nothing is built)."""
    from kerasnets.registry import list_models, model_info

    rows = ["| model | trainable params | GMACs | default input | min input | paper |",
            "|---|---:|---:|---|---:|---|"]
    for name in names or list_models():
        info = model_info(name)
        shape = "x".join(str(d) for d in info.input_shape)
        rows.append(f"| `{name}` | {info.params:,} | {info.gmacs:g} | {shape} | "
                    f"{info.min_input_size} | [{info.paper.title}]({info.paper.url}) |")
    return "\n".join(rows)
