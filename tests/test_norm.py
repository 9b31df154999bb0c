"""The ``norm`` option (issue 14): every family with BatchNorm builds, trains and saves
with each normalisation, and ``norm="batch"`` is exactly the model it always was."""

import keras
import numpy as np
import pytest

import kerasnets
from kerasnets.factory import build_reduced
from kerasnets.layers.blocks import NORMS, norm_groups
from tests.helpers import predict

# One small network per family that has BatchNorm (its reduced configuration, the
# smallest input that keeps every stage), and the size it runs at.
FAMILIES = {"resnet18": 32, "resnet20": 32, "densenet121": 32, "vgg11_bn": 32,
            "googlenet": 32, "mobilenet_v1": 32, "mobilenet_v2": 32,
            "mobilenet_v3_small": 32, "lenet5": 28, "wrn16_4": 32, "resnext_cifar": 32}
# Options that make the small network cover more of the family's layers.
EXTRA = {"resnet20": {"shortcut": "B"}, "resnext_cifar": {"cardinality": 4},
         "mobilenet_v1": {"width_multiplier": 0.25}, "mobilenet_v2": {"width_multiplier": 0.25},
         "googlenet": {"aux_logits": False}}
CLASSES = 5


def small(name, data_format="channels_last", **options):
    """``name`` in its family's reduced configuration (fewer blocks, narrow heads)."""
    info = kerasnets.model_info(name)
    size = FAMILIES[name]
    channels = info.input_shape[-1]
    shape = (size, size, channels) if data_format == "channels_last" else (channels, size, size)
    return build_reduced(name, input_shape=shape, num_classes=CLASSES, data_format=data_format,
                         **{**EXTRA.get(name, {}), **options})


def batch(model, n=4):
    rng = np.random.RandomState(0)
    x = rng.rand(n, *model.input_shape[1:]).astype("float32")
    return x, np.eye(CLASSES, dtype="float32")[rng.randint(0, CLASSES, n)]


def norm_layers(model):
    return [layer for layer in model.layers if isinstance(
        layer, (keras.layers.BatchNormalization, keras.layers.GroupNormalization))]


_DEFAULT = {}  # name -> its small default build, shared by the tests below


def default_build(name):
    if name not in _DEFAULT:
        keras.utils.set_random_seed(3)
        _DEFAULT[name] = small(name)
    return _DEFAULT[name]


# GoogLeNet and MobileNet V2 build slowest; their blocks are conv_bn_act's, as
# MobileNet V1/V3's are (and test_zoo checks every model's parameter count).
@pytest.mark.parametrize("name", sorted(set(FAMILIES) - {"googlenet", "mobilenet_v2"}))
def test_norm_batch_is_the_default_model_weight_for_weight(name):
    """``norm="batch"`` (LeNet: ``"none"``, its default) is the model built without the
    option: the same config, and under the same seed the same weights."""
    default_norm = kerasnets.model_info(name).options["norm"]
    assert default_norm == ("none" if name == "lenet5" else "batch")
    default = default_build(name)
    keras.utils.set_random_seed(3)
    explicit = small(name, norm=default_norm)
    assert explicit.get_config() == default.get_config()  # same layers, same settings
    assert [w.path for w in explicit.weights] == [w.path for w in default.weights]
    for ours, theirs in zip(explicit.get_weights(), default.get_weights()):
        np.testing.assert_array_equal(ours, theirs)


# Each family once with another norm, each norm on two families or more (building
# every family with every norm would take minutes per backend).
OTHER_NORM = {"resnet18": "group", "resnet20": "none", "densenet121": "layer",
              "vgg11_bn": "instance", "googlenet": "none", "mobilenet_v1": "instance",
              "mobilenet_v2": "group", "mobilenet_v3_small": "layer", "lenet5": "batch",
              "wrn16_4": "none", "resnext_cifar": "group"}


@pytest.mark.parametrize("name", FAMILIES)
def test_every_norm_layer_of_a_family_follows_the_option(name):
    """The option reaches every norm of the family: the layers that are BatchNorms in the
    default build are, under the same names, the chosen norm (or gone, with ``none``)."""
    norm = OTHER_NORM[name]
    default, model = default_build(name), small(name, norm=norm)
    default_norms = {layer.name for layer in norm_layers(default)}
    other_norms = {layer.name for layer in norm_layers(model)}
    if name == "lenet5":  # LeNet has no norm by default; "batch" adds d2l's four
        assert not default_norms and len(other_norms) == 4
        return
    assert default_norms and all(isinstance(layer, keras.layers.BatchNormalization)
                                 for layer in norm_layers(default))
    if norm == "none":
        assert not other_norms
        assert {layer.name for layer in model.layers} == \
            {layer.name for layer in default.layers} - default_norms
        assert all(layer.use_bias for layer in model.layers  # the shift moves to the conv
                   if isinstance(layer, keras.layers.Conv2D))
    else:
        assert other_norms == default_norms
        assert all(type(layer) is keras.layers.GroupNormalization
                   for layer in norm_layers(model))
    x, _ = batch(model, 2)
    assert np.isfinite(predict(model, x)).all()


@pytest.mark.parametrize("name, norm", [("resnet20", norm) for norm in NORMS] +
                         [("lenet5", "batch"), ("lenet5", "instance")])
def test_each_norm_trains_a_step_and_round_trips(name, norm, tmp_path):
    """resnet20 (one block per stage, projection shortcuts) normalises feature maps;
    LeNet's dense layers, vectors (d2l's BN-LeNet, and instance as layer norm there)."""
    model = small(name, norm=norm, **({"activation": "relu"} if name == "lenet5" else {}))
    model.compile(optimizer=keras.optimizers.SGD(0.01),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    x, y = batch(model)
    before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    after = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
    unchanged = [w.path for w, a, b in zip(model.trainable_weights, before, after)
                 if np.array_equal(a, b)]
    assert not unchanged, f"not trained: {unchanged}"

    out = predict(model, x)
    path = tmp_path / f"{name}_{norm}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [type(layer) for layer in loaded.layers] == [type(layer) for layer in model.layers]
    np.testing.assert_array_equal(predict(loaded, x), out)


@pytest.mark.parametrize("norm, groups", [("group", {64: 32, 24: 24, 40: 20, 6: 6, 120: 30}),
                                          ("layer", {64: 1, 6: 1}),
                                          ("instance", {64: 64, 6: 6})])
def test_groups_of_each_norm(norm, groups):
    assert {c: norm_groups(c, norm) for c in groups} == groups
    model = small("resnet20", norm=norm)
    for layer in norm_layers(model):
        channels = layer.input.shape[-1]
        assert layer.groups == norm_groups(channels, norm) and layer.epsilon == 1e-5


def test_dense_layers_of_lenet_get_layer_norm_for_instance():
    model = small("lenet5", norm="instance")
    assert model.get_layer("conv1_norm").groups == 6  # one group per channel
    assert model.get_layer("fc1_norm").groups == 1  # a feature alone would normalise to beta
    assert model.get_layer("fc2_norm").groups == 1


def test_lenet5_with_batch_norm_is_d2ls_bn_lenet():
    """d2l's BN-LeNet: a BN (gamma, beta) after each conv and hidden dense layer, the
    layers' own biases kept; LeNet's geometry (conv1 padded by 2: 16x5x5 features)."""
    conv = (5 * 5 * 1 * 6 + 6) + (5 * 5 * 6 * 16 + 16)
    dense = (16 * 5 * 5 * 120 + 120) + (120 * 84 + 84) + (84 * 10 + 10)
    bn = 2 * (6 + 16 + 120 + 84)
    lenet = kerasnets.create_model("lenet5")
    bn_lenet = kerasnets.create_model("lenet5", norm="batch")
    assert kerasnets.count_params(lenet) == conv + dense == kerasnets.model_info("lenet5").params
    assert kerasnets.count_params(bn_lenet) == conv + dense + bn == 62_158
    names = [layer.name for layer in bn_lenet.layers]
    for layer in ("conv1", "conv2", "fc1", "fc2"):  # BN sits before the activation
        assert names.index(f"{layer}_norm") == names.index(layer) + 1
    assert "fc3_norm" not in names


@pytest.mark.parametrize("norm", ["group", "layer", "instance"])
def test_channels_first_normalises_over_the_same_axis(norm):
    last = small("resnet20", norm=norm)
    first = small("resnet20", data_format="channels_first", norm=norm)
    assert {layer.axis for layer in norm_layers(first)} == {1}
    assert [w.shape for w in first.weights] == [w.shape for w in last.weights]
    # the norm layers alone: TensorFlow has no NCHW convolution on the CPU
    for name in ("layer2_0_bn1", "layer3_0_downsample_1"):  # 32 and 64 channels
        channels = last.get_layer(name).input.shape[-1]
        x = np.random.RandomState(0).randn(2, 8, 8, channels).astype("float32") * 3 + 1
        first.get_layer(name).set_weights(last.get_layer(name).get_weights())
        nhwc = keras.ops.convert_to_numpy(last.get_layer(name)(x))
        nchw = keras.ops.convert_to_numpy(first.get_layer(name)(np.transpose(x, (0, 3, 1, 2))))
        np.testing.assert_allclose(np.transpose(nchw, (0, 2, 3, 1)), nhwc, atol=1e-5)
        assert abs(nhwc.mean()) < 1e-3  # gamma 1, beta 0: normalised


def test_zero_init_residual_zeroes_group_norm_scales():
    model = small("resnet18", norm="group", zero_init_residual=True)
    last = [model.get_layer(f"layer{s}_0_bn2") for s in (1, 2, 3, 4)]
    assert all(not np.any(keras.ops.convert_to_numpy(layer.gamma)) for layer in last)
    assert np.all(keras.ops.convert_to_numpy(model.get_layer("layer1_0_bn1").gamma) == 1)


def test_bad_norm_choices_are_clear_errors():
    with pytest.raises(ValueError, match="option norm='batchnorm' must be one of 'batch', "
                                         "'group', 'layer', 'instance', 'none'"):
        kerasnets.create_model("resnet18", norm="batchnorm")
    with pytest.raises(ValueError, match="vgg11 does not take option.*norm"):
        kerasnets.create_model("vgg11", norm="group")  # no norm layers to change
    with pytest.raises(ValueError, match="ImageNet weights were trained with BatchNorm"):
        kerasnets.create_model("resnet18", weights="imagenet", norm="group")
    with pytest.raises(ValueError, match="zero_init_residual.*norm='none' has none"):
        kerasnets.create_model("resnet18", norm="none", zero_init_residual=True)
