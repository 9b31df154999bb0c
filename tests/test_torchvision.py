"""Against torchvision: its state dicts load, and give its logits, on the current backend.

torchvision models are randomly initialised (no downloads), with random BatchNorm
statistics so that the running mean/variance conventions are exercised too.
"""


import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")

import kerasnets  # noqa: E402
from kerasnets import load_torchvision_weights  # noqa: E402
from kerasnets.interop import imagenet  # noqa: E402
from tests.helpers import predict, publish_fake_resnet18_weights, record, scaled_diff  # noqa: E402

TORCHVISION_MODELS = [n for n in kerasnets.list_models() if kerasnets.model_info(n).torchvision]
TOLERANCE = 1e-4  # max abs difference on logits of order one (see scaled_diff)


def torchvision_model(name, **kwargs):
    torch.manual_seed(0)
    if name == "googlenet":
        kwargs = {"aux_logits": False, "init_weights": True, **kwargs}
    model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    return model


def torch_logits(model, x_nchw):
    with torch.no_grad():
        return model(torch.from_numpy(x_nchw)).numpy()


def images(size=224, batch=1, seed=0):
    return np.random.RandomState(seed).randn(batch, 3, size, size).astype("float32")


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_logits_equal_torchvisions(name):
    reference = torchvision_model(name)
    model = kerasnets.create_model(name)
    assert kerasnets.count_params(model) == sum(p.numel() for p in reference.parameters())
    load_torchvision_weights(model, reference.state_dict())
    x = images()
    expected = torch_logits(reference, x)
    got = predict(model, np.transpose(x, (0, 2, 3, 1)))
    assert np.abs(expected).max() > 1e-2  # not a degenerate comparison
    record("torchvision", name, scaled_diff(got, expected))
    assert scaled_diff(got, expected) < TOLERANCE


@pytest.mark.parametrize("name", ["alexnet", "resnext50_32x4d", "mobilenet_v3_small"])
def test_channels_first_and_other_sizes_load_too(name):
    reference = torchvision_model(name)
    model = kerasnets.create_model(name, data_format="channels_first",
                                   input_shape=(3, 96, 112))
    load_torchvision_weights(model, reference.state_dict())
    x = np.random.RandomState(3).randn(2, 3, 96, 112).astype("float32")
    assert scaled_diff(predict(model, x), torch_logits(reference, x)) < TOLERANCE


def test_googlenet_transform_input_matches():
    reference = torchvision_model("googlenet", transform_input=True)
    model = kerasnets.create_model("googlenet", transform_input=True)
    load_torchvision_weights(model, reference.state_dict())
    x = images()
    assert scaled_diff(predict(model, np.transpose(x, (0, 2, 3, 1))),
                       torch_logits(reference, x)) < TOLERANCE


def test_state_dict_problems_name_the_key_and_the_shapes():
    state = torchvision_model("resnet18").state_dict()
    model = kerasnets.create_model("resnet18")
    missing = {k: v for k, v in state.items() if k != "layer2.0.bn1.running_var"}
    with pytest.raises(ValueError, match=r"no layer2\.0\.bn1\.running_var.*layer2_0_bn1"):
        load_torchvision_weights(model, missing)
    extra = {**state, "head.weight": torch.zeros(3, 3)}
    with pytest.raises(ValueError, match=r"1 state_dict key.*head\.weight \(3, 3\)"):
        load_torchvision_weights(model, extra)
    shaped = {**state, "fc.weight": torch.zeros(10, 512), "fc.bias": torch.zeros(10)}
    with pytest.raises(ValueError, match=r"fc\.weight: torch shape \(10, 512\).*\(512, 1000\)"):
        load_torchvision_weights(model, shaped)
    with pytest.raises(ValueError, match="no torchvision counterpart"):
        load_torchvision_weights(kerasnets.create_model("lenet5"), state)


def test_legacy_densenet_checkpoint_keys_load():
    reference = torchvision_model("densenet121")
    legacy = {k.replace("norm1.", "norm.1.").replace("conv2.", "conv.2."): v
              for k, v in reference.state_dict().items()}
    assert legacy.keys() != reference.state_dict().keys()
    model = kerasnets.create_model("densenet121", input_shape=(64, 64, 3))
    load_torchvision_weights(model, legacy)
    x = images(size=64, seed=2)
    assert scaled_diff(predict(model, np.transpose(x, (0, 2, 3, 1))),
                       torch_logits(reference, x)) < TOLERANCE


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A private torch.hub cache and Keras home holding a random resnet18 checkpoint,
    named (as torchvision names its files) after its own sha256 prefix."""
    reference = torchvision_model("resnet18")
    target = publish_fake_resnet18_weights(tmp_path, monkeypatch, reference.state_dict())
    return reference, target


def test_imagenet_weights_come_from_the_torch_hub_cache(hub):
    reference, checkpoint_file = hub
    model = kerasnets.create_model("resnet18", weights="imagenet")
    x = images(seed=4)
    assert scaled_diff(predict(model, np.transpose(x, (0, 2, 3, 1))),
                       torch_logits(reference, x)) < TOLERANCE
    converted = list(imagenet.converted_dir().glob("resnet18-*.npz"))
    assert len(converted) == 1
    checkpoint_file.unlink()  # later loads read the converted tensors only
    again = kerasnets.create_model("resnet18", weights="imagenet")
    np.testing.assert_array_equal(again.get_layer("fc").get_weights()[0],
                                  model.get_layer("fc").get_weights()[0])
    # a new head for fine-tuning: the backbone loads, the classifier stays fresh
    tuned = kerasnets.create_model("resnet18", weights="imagenet", num_classes=10,
                                   input_shape=(64, 64, 3))
    np.testing.assert_array_equal(tuned.get_layer("layer4_1_conv2").get_weights()[0],
                                  model.get_layer("layer4_1_conv2").get_weights()[0])
    assert tuned.output_shape == (None, 10)
    headless = kerasnets.create_model("resnet18", weights="imagenet", include_top=False,
                                      pooling="avg")
    assert headless.output_shape == (None, 512)


def test_missing_checkpoint_offline_is_one_clear_error(hub):
    _, checkpoint_file = hub
    checkpoint_file.unlink()
    with pytest.raises(imagenet.WeightsNotFoundError,
                       match=rf"(?s){checkpoint_file.name}.*TORCH_HOME.*download failed"):
        kerasnets.create_model("resnet18", weights="imagenet")
    with pytest.raises(ValueError, match="No ImageNet weights for 'nin'.*resnet18"):
        kerasnets.create_model("nin", weights="imagenet")


def test_damaged_checkpoint_is_refused(hub):
    _, checkpoint_file = hub
    checkpoint_file.write_bytes(checkpoint_file.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"damaged or not torchvision's file.*does not start"):
        kerasnets.create_model("resnet18", weights="imagenet")


def test_predict_gives_torchvisions_top5(hub, tmp_path, capsys):
    from PIL import Image

    from kerasnets.training.cli import predict_main

    reference, _ = hub
    image = tmp_path / "cat.jpg"
    rng = np.random.RandomState(5)
    Image.fromarray(rng.randint(0, 255, (300, 400, 3), dtype=np.uint8)).save(image)
    weights = torchvision.models.ResNet18_Weights.DEFAULT
    x = weights.transforms()(Image.open(image).convert("RGB")).unsqueeze(0).numpy()
    ours = imagenet.preprocess_images([image], "resnet18")
    np.testing.assert_allclose(np.transpose(ours, (0, 3, 1, 2)), x, atol=1e-5)
    logits = torch_logits(reference, x)[0]
    expected = [weights.meta["categories"][i] for i in np.argsort(-logits)[:5]]
    assert predict_main(["resnet18", str(image), "--weights", "imagenet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("%", 1)[1].strip() for line in lines[1:6]] == expected
