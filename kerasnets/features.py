"""``features_only``: a model's feature maps at the end of each stage, as timm gives them.

``create_model(name, features_only=True, out_indices=None)`` builds the network without
its classifier, loads its weights, and returns a :class:`FeatureModel` whose outputs are
the maps at the chosen feature levels, with a :class:`FeatureInfo` as ``feature_info``
(per level: ``num_chs``, ``reduction`` = the nominal stride, ``module`` = the Keras layer
name, ``index``), as timm's ``features_only`` models have.

Each family declares its levels beside its ``register`` lines (``features=``), by the
names of the layers that end each stage; timm's choices where timm has the model:

============================  =========================================  ===============
family                        levels (layer ending each one)             reductions
============================  =========================================  ===============
resnet, resnext, wide_resnet  stem ReLU, layer1..layer4                  2, 4, 8, 16, 32
  with ``small_input=True``   (the stem keeps stride 1, no max-pool)     1, 1, 2, 4, 8
cifar_resnet (resnet20...,    layer1..layer3                             1, 2, 4
plain20...)
densenet                      stem ReLU, denseblock1..3, final BN-ReLU   2, 4, 8, 16, 32
mobilenet_v1/v2/v3            timm's rule: the last block before each    2, 4, 8, 16, 32
                              stride-2 block (the stem if the first
                              block has stride 2), and the last block
                              (V3: its final 1x1 conv, a block in timm)
vgg                           the ReLU before each max-pool              1, 2, 4, 8, 16
googlenet                     conv1, conv3, inception3b, 4e, 5b (the     2, 4, 8, 16, 32
                              ends of stages, as timm's inception_v3)
alexnet                       the ReLU before each max-pool              4, 8, 16
nin                           each NiN block before its max-pool         4, 8, 16
lenet5                        none: refused with the reason
============================  =========================================  ===============

``reduction`` is the product of the strides before the level (timm's meaning): the map is
``input / reduction`` pixels for the padded families at sizes divisible by it; AlexNet's
and NiN's unpadded first convolutions make theirs a few pixels smaller.
"""

from __future__ import annotations

import keras

_KEYS = ("num_chs", "reduction", "module", "index")


class FeatureInfo:
    """What each feature level is, as timm's ``FeatureInfo``.

    ``info`` lists every level of the network (dicts with ``num_chs``, ``reduction``,
    ``module``, ``index``); ``out_indices`` are the levels the model returns, in level
    order. ``channels()``, ``reduction()`` and ``module_name()`` give that key for the
    returned levels (``idx``: the i-th returned level, or a list of them).
    """

    def __init__(self, info, out_indices):
        self.info = [dict(level) for level in info]
        self.out_indices = tuple(out_indices)

    def get(self, key, idx=None):
        if idx is None:
            return [self.info[i][key] for i in self.out_indices]
        if isinstance(idx, (tuple, list)):
            return [self.info[self.out_indices[i]][key] for i in idx]
        return self.info[self.out_indices[idx]][key]

    def get_dicts(self, keys=None, idx=None):
        keys = keys or _KEYS
        chosen = self.out_indices if idx is None else (
            [self.out_indices[i] for i in idx] if isinstance(idx, (tuple, list))
            else [self.out_indices[idx]])
        dicts = [{k: self.info[i][k] for k in keys} for i in chosen]
        return dicts[0] if isinstance(idx, int) else dicts

    def channels(self, idx=None):
        return self.get("num_chs", idx)

    def reduction(self, idx=None):
        return self.get("reduction", idx)

    def module_name(self, idx=None):
        return self.get("module", idx)

    module_names = module_name  # the plural reads better on a list

    def __getitem__(self, item):
        return self.info[item]

    def __len__(self):
        return len(self.info)

    def __repr__(self):
        return f"FeatureInfo({self.get_dicts()})"

    def get_config(self):
        return {"info": self.info, "out_indices": list(self.out_indices)}


def select_levels(out_indices, num_levels, name):
    """``out_indices`` as sorted level indices: ``None`` is every level, an int ``n`` the
    last ``n`` (timm's meaning), a sequence picks levels (negative counts from the end)."""
    valid = f"{name} has {num_levels} feature levels: indices 0 to {num_levels - 1}"
    if out_indices is None:
        return tuple(range(num_levels))
    if isinstance(out_indices, bool) or not isinstance(out_indices, (int, list, tuple)):
        raise ValueError(f"out_indices must be a list of level indices or an int (the last "
                         f"n levels), not {out_indices!r}; {valid}.")
    if isinstance(out_indices, int):
        if not 1 <= out_indices <= num_levels:
            raise ValueError(f"out_indices={out_indices} asks for the last {out_indices} "
                             f"levels; {valid}, so give 1 to {num_levels}.")
        return tuple(range(num_levels - out_indices, num_levels))
    chosen = []
    for index in out_indices:
        if isinstance(index, bool) or not isinstance(index, int) \
                or not -num_levels <= index < num_levels:
            raise ValueError(f"out_indices {list(out_indices)}: {index!r} is not a level "
                             f"index; {valid} (or -{num_levels} to -1).")
        chosen.append(index % num_levels)
    if not chosen or len(set(chosen)) != len(chosen):
        raise ValueError(f"out_indices {list(out_indices)} must name each level once and at "
                         f"least one; {valid}.")
    return tuple(sorted(chosen))


def last_layer_of(model, prefix):
    """The layer whose output ends the block named ``prefix`` (``block3`` -> ``block3_add``,
    or ``block3_project_bn`` where the block has no residual): the last of the block's
    layers in the model's topological order."""
    names = [layer.name for layer in model.layers if layer.name.startswith(prefix + "_")]
    if not names:
        raise ValueError(f"{model.name} has no layer named {prefix}_*.")
    return names[-1]


@keras.saving.register_keras_serializable(package="kerasnets")
class FeatureModel(keras.Model):
    """A functional model cut from a registered one, returning its feature maps.

    ``feature_info`` and ``registered_name`` (the model it was cut from, which the
    torchvision interop looks up) are part of its config, so both survive ``.keras``.
    """

    def __init__(self, *args, feature_info=None, registered_name=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.feature_info = feature_info
        self.registered_name = registered_name

    def get_config(self):
        info = self.feature_info.get_config() if self.feature_info else None
        return {**super().get_config(), "feature_info": info,
                "registered_name": self.registered_name}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        info = config.pop("feature_info", None)
        registered_name = config.pop("registered_name", None)
        model = super().from_config(config, custom_objects=custom_objects)
        model.feature_info = FeatureInfo(**info) if info else None
        model.registered_name = registered_name
        return model


def feature_model(model, levels, out_indices, *, registered_name):
    """``model``'s outputs at ``levels`` (``[(layer name, reduction), ...]``) chosen by
    ``out_indices``, as a :class:`FeatureModel` named ``{registered_name}_features``."""
    chosen = select_levels(out_indices, len(levels), registered_name)
    channel_axis = -1 if _channels_last(model) else 1
    info = []
    for index, (layer_name, reduction) in enumerate(levels):
        shape = model.get_layer(layer_name).output.shape
        info.append({"num_chs": int(shape[channel_axis]), "reduction": int(reduction),
                     "module": layer_name, "index": index})
    outputs = [model.get_layer(info[i]["module"]).output for i in chosen]
    return FeatureModel(model.input, outputs, name=f"{registered_name}_features",
                        feature_info=FeatureInfo(info, chosen),
                        registered_name=registered_name)


def _channels_last(model):
    """The data format the model was built in, read from its first layer that records one."""
    for layer in model.layers:
        data_format = getattr(layer, "data_format", None)
        if data_format:
            return data_format == "channels_last"
    return keras.config.image_data_format() == "channels_last"
