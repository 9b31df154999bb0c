"""The CIFAR ResNets of the ResNet paper (section 4.2) and their plain twins."""

import keras
import numpy as np
import pytest

import kerasnets


def paper_params(n, classes=10, projections=False):
    """Trainable parameters of the 6n+2-layer CIFAR ResNet, counted from the paper's
    description: 3x3 convolutions without bias, each followed by BN (gamma, beta)."""
    total = 9 * 3 * 16 + 2 * 16  # stem
    previous = 16
    for filters in (16, 32, 64):
        for _ in range(n):
            total += 9 * previous * filters + 9 * filters * filters + 4 * filters
            if projections and previous != filters:
                total += previous * filters + 2 * filters
            previous = filters
    return total + 64 * classes + classes


@pytest.mark.parametrize("depth, n, table6", [(20, 3, 0.27e6), (32, 5, 0.46e6),
                                              (44, 7, 0.66e6), (56, 9, 0.85e6),
                                              (110, 18, 1.7e6)])
def test_parameters_are_the_papers(depth, n, table6):
    for name in (f"resnet{depth}", f"plain{depth}"):
        info = kerasnets.model_info(name)
        assert info.params == paper_params(n)
        assert round(info.params / table6, 1) == 1.0  # Table 6, to its rounding
    model = kerasnets.create_model(f"resnet{depth}", shortcut="B")
    assert kerasnets.count_params(model) == paper_params(n, projections=True)


def test_depth_and_shortcuts():
    resnet, plain = kerasnets.create_model("resnet20"), kerasnets.create_model("plain20")
    weighted = [layer for layer in resnet.layers
                if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]
    assert len(weighted) == 20  # 6n + 2
    assert sum(isinstance(layer, keras.layers.Add) for layer in resnet.layers) == 9
    assert not any(isinstance(layer, keras.layers.Add) for layer in plain.layers)
    assert resnet.get_layer("layer3_2_out").output.shape[1:] == (8, 8, 64)


def test_option_a_shortcut_is_subsampling_and_zero_channels():
    model = kerasnets.create_model("resnet20", num_classes=3, input_shape=(8, 8, 3))
    x = np.random.RandomState(0).rand(1, 8, 8, 16).astype("float32")
    subsampled = model.get_layer("layer2_0_subsample")(x)
    out = keras.ops.convert_to_numpy(model.get_layer("layer2_0_zero_pad")(subsampled))
    assert out.shape == (1, 4, 4, 32)
    np.testing.assert_array_equal(out[..., 8:24], x[:, ::2, ::2, :])
    assert not out[..., :8].any() and not out[..., 24:].any()


def test_bad_shortcut_is_a_clear_error():
    with pytest.raises(ValueError, match="option shortcut='C' must be one of 'A', 'B'"):
        kerasnets.create_model("resnet20", shortcut="C")
