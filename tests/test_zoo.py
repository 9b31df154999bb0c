"""The shared harness: every registered model, on the current backend.

Each model is built once per backend at its default configuration (exact
parameter count, MACs against the metadata) and once small (10 classes, the
smallest sensible input; deeper siblings with one block per stage, see FULL_DEPTH)
for forward, gradients, config round trip, ``.keras`` saving, summary,
channels_first and the headless/pooled variants.
"""

import gc
import pkgutil

import keras
import numpy as np
import pytest

import kerasnets
from kerasnets import models as families
from kerasnets.factory import build_model, build_reduced
from kerasnets.registry import Paper, register
from tests.helpers import gradients, predict, scaled_diff

MODELS = kerasnets.list_models()
# With pytest-xdist (--dist loadgroup) all tests of one model run in one worker, one
# after the other (conftest.py keeps a group together), and share its small model.
PER_MODEL = [pytest.param(name, marks=pytest.mark.xdist_group(name)) for name in MODELS]


def small_size(name):
    return max(kerasnets.model_info(name).min_input_size, 32)


SMALL_CLASSES = 10  # with 3, NiN's three stacked ReLUs of num_classes width are often all dead


def small_input(name, batch=2, channels_first=False):
    size = small_size(name)
    x = np.random.RandomState(1).rand(batch, size, size, 3).astype("float32")
    return np.transpose(x, (0, 3, 1, 2)) if channels_first else x


# The small tests build the shallowest model of each kind (builder and block, at any
# depth and width) at full depth, and its deeper or wider siblings with one block per
# stage (``ModelInfo.reduced``): the same blocks, a fifth of the CI time
# (resnext101_32x8d alone took 150 s on JAX). Every model is still built at full size
# (test_default_config_matches_metadata) and run against torchvision at full depth
# (test_torchvision.py).
DEPTH_AND_WIDTH = {"layers", "block_config", "blocks_per_stage", "depth", "width_per_group",
                   "widen_factor"}


def _kind(name):
    info = kerasnets.model_info(name)
    return info.builder, repr(sorted((k, v) for k, v in info.config.items()
                                     if k not in DEPTH_AND_WIDTH))


FULL_DEPTH = {min((n for n in MODELS if _kind(n) == _kind(name)),
                  key=lambda n: kerasnets.model_info(n).params) for name in MODELS}


def small_model(name, include_top=True, pooling=None, data_format="channels_last", **kwargs):
    """``name`` at a small input with 10 classes and the family's reduced options (a
    narrow dense head: AlexNet/VGG's holds 100M+ weights at any input size); one block
    per stage unless ``name`` is in ``FULL_DEPTH``."""
    info = kerasnets.model_info(name)
    kwargs = {**info.reduced.options, **kwargs}
    size = small_size(name)
    shape = (3, size, size) if data_format == "channels_first" else (size, size, 3)
    common = dict(num_classes=SMALL_CLASSES, input_shape=shape, include_top=include_top,
                  pooling=pooling)
    if name in FULL_DEPTH:
        return kerasnets.create_model(name, data_format=data_format, **common, **kwargs)
    return build_reduced(name, data_format=data_format, **common, **kwargs)


_SMALL = {}  # name -> (model, outputs) of the current model only


def small_model_and_outputs(name):
    """Built once for the tests of ``name``, which run back to back; the previous model
    is dropped (a JAX worker that kept all of them grew past 12 GB)."""
    if name not in _SMALL:
        _SMALL.clear()
        gc.collect()
        model = small_model(name)
        _SMALL[name] = model, predict(model, small_input(name))
    return _SMALL[name]


def test_every_family_module_is_discovered():
    modules = {m.name for m in pkgutil.iter_modules(families.__path__)
               if not m.name.startswith("_")}
    registered = {kerasnets.model_info(name).builder.__module__.rsplit(".", 1)[-1]
                  for name in MODELS}
    assert modules == registered  # every family file registers models, found without a list
    assert MODELS == sorted(MODELS) and len(MODELS) >= 26
    assert kerasnets.list_models("resnext*") == ["resnext101_32x8d", "resnext50_32x4d",
                                                 "resnext_cifar"]


def test_register_refuses_duplicates_and_empty_metadata():
    paper = Paper("x", "https://example.org")
    with pytest.raises(ValueError, match="registered twice"):
        register("resnet18", build_model, paper=paper, params=1, gmacs=1.0)
    with pytest.raises(ValueError, match="params and gmacs must be positive"):
        register("new_model", build_model, paper=paper, params=0, gmacs=1.0)


def test_unknown_name_names_the_closest_matches():
    with pytest.raises(ValueError, match="Unknown model 'resnet5'.*resnet50"):
        kerasnets.create_model("resnet5")
    with pytest.raises(ValueError, match="Did you mean.*mobilenet_v2"):
        kerasnets.model_info("mobilenetv2")


@pytest.mark.parametrize("name", MODELS)
def test_default_config_matches_metadata(name):
    info = kerasnets.model_info(name)
    model = kerasnets.create_model(name)
    assert model.name == name
    assert tuple(model.input_shape[1:]) == info.input_shape
    assert model.output_shape == (None, info.num_classes)
    assert kerasnets.count_params(model) == info.params
    assert kerasnets.count_macs(model) / 1e9 == pytest.approx(info.gmacs, rel=0.01)


@pytest.mark.parametrize("name", PER_MODEL)
def test_small_model_forward_gradients_config_and_saving(name, tmp_path):
    model, out = small_model_and_outputs(name)
    x = small_input(name)
    assert out.shape == (2, SMALL_CLASSES) and np.isfinite(out).all()

    grads = gradients(model, x)
    assert len(grads) == len(model.trainable_weights)
    dead = [w.path for w, g in zip(model.trainable_weights, grads) if not np.any(g)]
    assert not dead, f"weights without gradient: {dead}"
    out = predict(model, x)  # the training-mode pass may have moved BN statistics

    clone = keras.Model.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(predict(clone, x), out, rtol=1e-5, atol=1e-5)
    assert [layer.name for layer in clone.layers] == [layer.name for layer in model.layers]

    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_array_equal(predict(loaded, x), out)

    lines = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line))
    assert any(f"{kerasnets.count_params(model):,}" in line for line in lines)


@pytest.mark.parametrize("name", PER_MODEL)
def test_channels_first_gives_the_same_model(name):
    """Also on a TensorFlow CPU without oneDNN's NCHW kernels (backends/kernels.py)."""
    last, out_last = small_model_and_outputs(name)
    first = small_model(name, data_format="channels_first")
    assert [w.shape for w in first.weights] == [w.shape for w in last.weights]
    assert {layer.data_format for layer in first.layers if hasattr(layer, "data_format")} \
        == {"channels_first"}
    first.set_weights(last.get_weights())
    out_first = predict(first, small_input(name, channels_first=True))
    assert scaled_diff(out_first, out_last) < 1e-4
    assert keras.config.image_data_format() == "channels_last"  # the scope was undone


def _spatial_dims(model):
    """Height and width of every 4-D (channels_last) layer output."""
    return [d for layer in model.layers if len(layer.output.shape) == 4
            for d in layer.output.shape[1:3]]


@pytest.mark.parametrize("name", MODELS)
def test_min_input_size_is_exact(name):
    info = kerasnets.model_info(name)
    size = info.min_input_size
    model = build_model(name, num_classes=3, input_shape=(size, size, 3))
    assert all(d >= 1 for d in _spatial_dims(model))
    if size == 1:
        return  # every layer pads: any input works
    with pytest.raises(ValueError, match=f"too small for {name}.*at least {size}x{size}"):
        kerasnets.create_model(name, num_classes=3, input_shape=(size - 1, size + 5, 3))
    try:  # without the check the network itself breaks at size - 1
        smaller = build_model(name, num_classes=3, input_shape=(size - 1, size - 1, 3),
                              check_input_size=False)
    except Exception:
        return
    assert any(d < 1 for d in _spatial_dims(smaller))


@pytest.mark.parametrize("name", PER_MODEL)
def test_headless_and_pooled(name):
    features = small_model(name, include_top=False)
    assert len(features.output_shape) == 4
    channels = features.output_shape[-1]
    for pooling in ("avg", "max"):
        pooled = small_model(name, include_top=False, pooling=pooling)
        assert pooled.output_shape == (None, channels)
    with pytest.raises(ValueError, match="pooling must be"):
        kerasnets.create_model(name, include_top=False, pooling="mean")


def test_grayscale_and_lenet_defaults():
    model = kerasnets.create_model("lenet5")
    assert model.input_shape == (None, 28, 28, 1) and model.output_shape == (None, 10)
    assert kerasnets.model_info("lenet5").options["activation"] == "sigmoid"
    resnet = kerasnets.create_model("resnet18", num_classes=10, input_shape=(28, 28, 1),
                                    small_input=True)
    assert resnet.get_layer("layer1_0_out").output.shape[1:3] == (28, 28)
    assert resnet.get_layer("layer4_1_out").output.shape[1:3] == (4, 4)
    assert "maxpool" not in [layer.name for layer in resnet.layers]
    standard = kerasnets.create_model("resnet18", input_shape=(28, 28, 1))
    assert standard.get_layer("layer1_0_out").output.shape[1:3] == (7, 7)


def test_unknown_option_lists_the_accepted_ones():
    with pytest.raises(ValueError, match="resnet18 does not take option.*alpha.*small_input"):
        kerasnets.create_model("resnet18", alpha=0.5)
    with pytest.raises(ValueError, match="does not take option.*layers"):
        kerasnets.create_model("resnet18", layers=(1, 1, 1, 1))  # architecture, not option


@pytest.mark.parametrize("option, value, expected", [
    ("small_input", "maybe", "small_input='maybe' should be a bool"),
    ("dropout_rate", "abc", "dropout_rate='abc' should be a float"),
    ("zero_init_residual", 1, "zero_init_residual=1 should be a bool"),
])
def test_option_values_are_type_checked(option, value, expected):
    with pytest.raises(ValueError, match=expected):
        kerasnets.create_model("resnet18", **{option: value})
    kerasnets.create_model("resnet18", num_classes=2, input_shape=(32, 32, 3),
                           dropout_rate=0)  # an int where a float is expected is fine


def test_bad_arguments_are_clear():
    with pytest.raises(ValueError, match="data_format must be"):
        kerasnets.create_model("lenet5", data_format="NHWC")
    with pytest.raises(ValueError, match=r"input_shape must be \(height, width, channels\)"):
        kerasnets.create_model("lenet5", input_shape=(28, 28))
    with pytest.raises(ValueError, match="num_classes must be >= 1"):
        kerasnets.create_model("lenet5", num_classes=0)
    with pytest.raises(ValueError, match="width_multiplier"):
        kerasnets.create_model("mobilenet_v2", width_multiplier=0)


def test_zero_init_residual_and_drop_path():
    model = kerasnets.create_model("resnet18", num_classes=3, input_shape=(32, 32, 3),
                                   zero_init_residual=True, drop_path_rate=0.2)
    gammas = [model.get_layer(f"layer{s}_{b}_bn2").gamma for s in (1, 2, 3, 4) for b in (0, 1)]
    assert all(not np.any(keras.ops.convert_to_numpy(g)) for g in gammas)
    assert np.all(keras.ops.convert_to_numpy(model.get_layer("layer1_1_bn1").gamma) == 1)
    rates = [layer.rate for layer in model.layers if layer.name.endswith("drop_path")]
    assert rates == pytest.approx([0.2 * i / 7 for i in range(1, 8)])  # first block: rate 0
    x = np.ones((4, 32, 32, 3), "float32")
    np.testing.assert_array_equal(predict(model, x), predict(model, x))  # off at inference


@pytest.mark.parametrize("alpha", [0.25, 0.5, 0.75, 1.0])
def test_mobilenet_v1_alpha_matches_keras_applications(alpha):
    ours = kerasnets.create_model("mobilenet_v1", alpha=alpha)
    reference = keras.applications.MobileNet(alpha=alpha, weights=None)
    assert kerasnets.count_params(ours) == kerasnets.count_params(reference)
    same = kerasnets.create_model("mobilenet_v1", width_multiplier=alpha)
    assert kerasnets.count_params(same) == kerasnets.count_params(ours)


def test_width_multiplier_shrinks_mobilenets():
    for name in ("mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large"):
        full = kerasnets.count_params(kerasnets.create_model(name))
        half = kerasnets.count_params(kerasnets.create_model(name, width_multiplier=0.5))
        assert half < 0.7 * full


def test_googlenet_aux_heads():
    model = kerasnets.create_model("googlenet", num_classes=3, input_shape=(64, 64, 3),
                                   aux_logits=True)
    outs = predict(model, np.zeros((1, 64, 64, 3), "float32"))
    assert [o.shape for o in outs] == [(1, 3)] * 3
    # torchvision's googlenet(aux_logits=True) has 13,004,888 parameters.
    with_aux = kerasnets.create_model("googlenet", aux_logits=True)
    assert kerasnets.count_params(with_aux) == 13_004_888


def test_weights_argument_loads_files(tmp_path):
    model = small_model("resnet18")
    x = small_input("resnet18")
    model.save_weights(tmp_path / "w.weights.h5")
    model.save(tmp_path / "m.keras")
    for path in ("w.weights.h5", "m.keras"):
        again = small_model("resnet18", weights=tmp_path / path)
        np.testing.assert_allclose(predict(again, x), predict(model, x), rtol=1e-6, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        small_model("resnet18", weights=tmp_path / "missing.weights.h5")
    with pytest.raises(ValueError, match="expected a .weights.h5 or .keras"):
        (tmp_path / "w.npz").write_bytes(b"")
        small_model("resnet18", weights=tmp_path / "w.npz")
