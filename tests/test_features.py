"""``features_only`` models: the declared levels of every family, ``out_indices``, the
errors, ``.keras`` round trips and torchvision's intermediate feature maps."""

import math

import keras
import numpy as np
import pytest

import kerasnets
from kerasnets.factory import build_reduced
from kerasnets.features import FeatureInfo, FeatureModel, feature_model
from tests.helpers import predict, scaled_diff

WIDER = 32  # extra width of the test inputs: a multiple of every reduction


def _representatives():
    """One model per family, plus every other distinct declaration (or option that
    changes the levels): new families are covered without a list."""
    first = {}
    for name in kerasnets.list_models():
        first.setdefault(kerasnets.model_info(name).family, name)
    extra = ["resnet18", "resnet20", "mobilenet_v2", "mobilenet_v3_large",
             "mobilenet_v3_small", "vgg11_bn"]
    cases = [(name, {}) for name in sorted(set(first.values()) | set(extra))]
    cases += [("resnet18", {"small_input": True}), ("resnet18", {"data_format": "channels_first"})]
    return [c for c in cases if not isinstance(kerasnets.model_info(c[0]).features, str)]


def reduced_features(name, *, data_format="channels_last", out_indices=None, **options):
    """``name``'s features in its family's reduced configuration (one block per stage,
    as the parity checks use), on an input WIDER pixels wider than high."""
    info = kerasnets.model_info(name)
    config = {**info.config, **info.reduced.config}
    size = 32 * math.ceil(max(64, info.min_input_size) / 32)
    shape = (size, size + WIDER, 3) if data_format == "channels_last" else (3, size, size + WIDER)
    model = build_reduced(name, input_shape=shape, include_top=False, data_format=data_format,
                          **options)
    assert info.features is not None, f"{info.family} declares no feature levels"
    levels = info.features(model, {**info.options, **config, **options})
    return feature_model(model, levels, out_indices, registered_name=name)


@pytest.mark.parametrize("name, options", _representatives(),
                         ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v.values())))
def test_outputs_are_what_feature_info_says(name, options):
    features = reduced_features(name, **options)
    info = features.feature_info
    assert isinstance(features, FeatureModel) and features.name == f"{name}_features"
    assert len(features.outputs) == len(info) == len(info.channels()) >= 3
    assert info.reduction() == sorted(info.reduction())
    channels_last = options.get("data_format", "channels_last") == "channels_last"
    height, width = features.input_shape[1:3] if channels_last else features.input_shape[2:4]
    for output, channels, reduction in zip(features.outputs, info.channels(), info.reduction()):
        h, w, c = output.shape[1:] if channels_last else (*output.shape[2:], output.shape[1])
        assert c == channels
        # WIDER more input pixels give exactly WIDER / reduction more output pixels: the
        # declared reduction is the level's real stride, whatever the padding
        assert w - h == WIDER // reduction, (name, reduction, (h, w))
        assert 0 < h <= math.ceil(height / reduction)


def test_every_family_declares_its_levels_or_why_not():
    for name in kerasnets.list_models():
        features = kerasnets.model_info(name).features
        assert callable(features) or isinstance(features, str) and len(features) > 40, name


def test_timms_levels_for_the_models_timm_has():
    expected = {  # timm's feature_info.channels() for the same networks
        "resnet50": [64, 256, 512, 1024, 2048], "densenet121": [64, 256, 512, 1024, 1024],
        "mobilenet_v2": [16, 24, 32, 96, 320], "mobilenet_v3_large": [16, 24, 40, 112, 960],
        "mobilenet_v3_small": [16, 16, 24, 48, 576], "vgg16": [64, 128, 256, 512, 512]}
    for name, channels in expected.items():
        features = kerasnets.create_model(name, features_only=True, input_shape=(32, 32, 3))
        assert features.feature_info.channels() == channels, name
        reductions = [2, 4, 8, 16, 32] if name != "vgg16" else [1, 2, 4, 8, 16]
        assert features.feature_info.reduction() == reductions, name


def test_out_indices_select_levels_with_the_same_values():
    x = np.random.RandomState(0).rand(2, 32, 32, 3).astype("float32")
    every = kerasnets.create_model("resnet18", features_only=True, input_shape=(32, 32, 3))
    all_maps = predict(every, x)
    assert every.feature_info.out_indices == (0, 1, 2, 3, 4)
    levels = list(zip(every.feature_info.module_name(), every.feature_info.reduction()))
    for out_indices, chosen in (((3, -4), [1, 3]), (2, [3, 4]), ([-1], [4])):
        some = feature_model(every, levels, out_indices, registered_name="resnet18")
        assert some.feature_info.out_indices == tuple(chosen)
        assert some.feature_info.channels() == [every.feature_info.channels()[i] for i in chosen]
        assert some.feature_info.module_name() == [f"layer{i}_1_out" for i in chosen]
        assert len(some.feature_info) == 5  # every level is described, as in timm
    maps = predict(some, x)  # the last one: (-1,), a single output
    np.testing.assert_allclose(maps, all_maps[4], atol=1e-6)
    assert every.feature_info.get_dicts(idx=0) == {"num_chs": 64, "reduction": 2,
                                                   "module": "relu", "index": 0}


@pytest.mark.parametrize("out_indices, message", [
    ((5,), r"5 is not a level index; resnet18 has 5 feature levels: indices 0 to 4"),
    ((1, "layer2"), r"'layer2' is not a level index"),
    ((0, 0), r"must name each level once.*indices 0 to 4"),
    ((), r"must name each level once"),
    (6, r"last 6 levels.*give 1 to 5"),
    ("layer1", r"must be a list of level indices or an int"),
])
def test_bad_out_indices_name_the_valid_range(out_indices, message):
    with pytest.raises(ValueError, match=message):
        kerasnets.create_model("resnet18", features_only=True, out_indices=out_indices,
                               input_shape=(32, 32, 3))


def test_what_features_only_refuses():
    with pytest.raises(ValueError, match="lenet5 has no features_only model: LeNet-5 has no "
                                         "multi-scale stages"):
        kerasnets.create_model("lenet5", features_only=True)
    with pytest.raises(ValueError, match="without a classifier: drop num_classes=10 and "
                                         "pooling='avg'"):
        kerasnets.create_model("resnet18", features_only=True, num_classes=10, pooling="avg")
    with pytest.raises(ValueError, match="out_indices=.* needs features_only=True"):
        kerasnets.create_model("resnet18", out_indices=(1, 2))


def test_keras_round_trip_keeps_outputs_and_feature_info(tmp_path):
    features = reduced_features("resnet18", out_indices=(0, 2, 4))
    x = np.random.RandomState(0).rand(2, *features.input_shape[1:]).astype("float32")
    path = tmp_path / "features.keras"
    features.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, FeatureModel) and loaded.registered_name == "resnet18"
    assert isinstance(loaded.feature_info, FeatureInfo)
    assert loaded.feature_info.get_dicts() == features.feature_info.get_dicts()
    assert loaded.feature_info.out_indices == (0, 2, 4) and len(loaded.feature_info) == 5
    for got, expected in zip(predict(loaded, x), predict(features, x)):
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_weights_file_of_the_headless_model_loads(tmp_path):
    headless = kerasnets.create_model("resnet20", include_top=False)
    path = tmp_path / "resnet20.weights.h5"
    headless.save_weights(path)
    keras.utils.set_random_seed(1)  # other initial weights: only the file can make them equal
    features = kerasnets.create_model("resnet20", features_only=True, weights=path)
    x = np.random.RandomState(0).rand(2, 32, 32, 3).astype("float32")
    np.testing.assert_allclose(predict(features, x)[-1], predict(headless, x), atol=1e-5)


# ------------------------------------------------------------------ against torchvision

@pytest.mark.parametrize("name, nodes, cuts", [
    ("resnet18", ["relu", "layer1", "layer2", "layer3", "layer4"], (None, (0, 1))),
    ("mobilenet_v2", ["features.1", "features.3", "features.6", "features.13", "features.17"],
     (None,)),
])
def test_torchvision_weights_give_torchvisions_feature_maps(name, nodes, cuts):
    torch = pytest.importorskip("torch")
    extraction = pytest.importorskip("torchvision.models.feature_extraction")
    from tests.test_torchvision import torchvision_model  # random weights and BN statistics

    reference = torchvision_model(name)
    x = np.random.RandomState(0).randn(2, 3, 64, 64).astype("float32")
    with torch.no_grad():
        expected = extraction.create_feature_extractor(reference, nodes)(torch.from_numpy(x))
    expected = [np.transpose(v.numpy(), (0, 2, 3, 1)) for v in expected.values()]
    for out_indices in cuts:  # a cut model leaves the later stages' keys out
        features = kerasnets.create_model(name, features_only=True, out_indices=out_indices,
                                          input_shape=(64, 64, 3))
        kerasnets.load_torchvision_weights(features, reference.state_dict())
        got = predict(features, np.transpose(x, (0, 2, 3, 1)))
        chosen = features.feature_info.out_indices
        assert len(got) == len(chosen)
        for level, value in zip(chosen, got):
            assert np.abs(expected[level]).max() > 1e-2  # not a degenerate comparison
            assert scaled_diff(value, expected[level]) < 1e-4, (name, level)
