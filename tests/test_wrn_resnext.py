"""The CIFAR Wide ResNets (wrn28_10, wrn16_4) and resnext_cifar's constant-FLOPs cardinality."""

import keras
import numpy as np
import pytest

import kerasnets
from tests.helpers import predict


def wrn_params(depth, k, classes=10, in_channels=3):
    """Trainable parameters of WRN-depth-k from the paper's description: a 3x3 stem
    with 16 filters, three groups of (depth - 4) / 6 pre-activation blocks of width
    16k, 32k, 64k (two BN (gamma, beta) and two 3x3 convolutions without bias each, a
    1x1 projection where the width changes), a final BN and a dense classifier."""
    n = (depth - 4) // 6
    total, previous = 9 * in_channels * 16, 16
    for width in (16 * k, 32 * k, 64 * k):
        for _ in range(n):
            total += 2 * previous + 9 * previous * width + 2 * width + 9 * width * width
            if previous != width:
                total += previous * width
            previous = width
    return total + 2 * previous + previous * classes + classes


@pytest.mark.parametrize("name, depth, k", [("wrn28_10", 28, 10), ("wrn16_4", 16, 4)])
def test_wrn_parameters_are_the_papers(name, depth, k):
    assert kerasnets.model_info(name).params == wrn_params(depth, k)
    assert round(wrn_params(28, 10) / 1e6, 1) == 36.5  # the paper: 36.5M


def test_wrn_structure_dropout_and_fashion_mnist_input():
    model = kerasnets.create_model("wrn16_4", input_shape=(28, 28, 1), dropout_rate=0.3)
    assert kerasnets.count_params(model) == wrn_params(16, 4, in_channels=1)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    # depth = stem + 2 per block + the three 1x1 projections (6N + 4 with N = 2)
    assert len(convs) == 16 and sum(c.kernel_size == (1, 1) for c in convs) == 3
    assert not any(c.use_bias for c in convs)
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert len(dropouts) == 6 and {d.rate for d in dropouts} == {0.3}
    assert model.get_layer("group2_block1_add").output.shape[1:] == (7, 7, 256)
    names = [layer.name for layer in model.layers]  # dropout between the two convolutions
    assert names.index("group0_block0_relu1") < names.index("group0_block0_dropout") < \
        names.index("group0_block0_conv1")
    # the projection reads the block's first BN-ReLU, as the authors' code does
    assert model.get_layer("group1_block0_convdim").input is \
        model.get_layer("group1_block0_relu0").output
    assert predict(model, np.zeros((2, 28, 28, 1), "float32")).shape == (2, 10)
    with pytest.raises(ValueError, match="depth - 4 must be a multiple of 6"):
        kerasnets.model_info("wrn16_4").builder(
            input_shape=(32, 32, 3), num_classes=10, include_top=True, pooling=None,
            name="wrn", depth=20, widen_factor=1)


# resnext_cifar's module docstring table: cardinality -> group width d of each stage.
GROUP_WIDTHS = {1: (16, 32, 64), 2: (10, 20, 39), 4: (6, 11, 24), 8: (3, 7, 14),
                16: (2, 3, 8), 32: (1, 2, 3)}


def resnext_params(cardinality, classes=10, in_channels=3):
    """A 3x3 stem with 64 filters, then per stage (outputs 64, 128, 256) three
    bottlenecks 1x1 -> grouped 3x3 -> 1x1 of width C x d, BN after each, a 1x1
    projection with BN where the shape changes; a dense classifier."""
    total, previous = 9 * in_channels * 64 + 2 * 64, 64
    for out, d in zip((64, 128, 256), GROUP_WIDTHS[cardinality]):
        width = cardinality * d
        for _ in range(3):
            total += previous * width + 9 * width * d + width * out + 2 * (2 * width + out)
            if previous != out:
                total += previous * out + 2 * out
            previous = out
    return total + 256 * classes + classes


def test_resnext_cifar_keeps_the_macs_of_cardinality_one():
    budget = kerasnets.count_macs(kerasnets.create_model("resnext_cifar", cardinality=1))
    for cardinality, widths in GROUP_WIDTHS.items():
        model = kerasnets.create_model("resnext_cifar", cardinality=cardinality)
        assert kerasnets.count_macs(model) == pytest.approx(budget, rel=0.05), cardinality
        assert kerasnets.count_params(model) == resnext_params(cardinality)
        grouped = [model.get_layer(f"layer{s + 1}_0_conv2") for s in range(3)]
        assert [layer.output.shape[-1] for layer in grouped] == \
            [cardinality * d for d in widths]
        # d = 1 (32 groups of one channel in stage 1) is a depthwise convolution
        assert {layer.output.shape[-1] if isinstance(layer, keras.layers.DepthwiseConv2D)
                else layer.groups for layer in grouped} == {cardinality}
    assert kerasnets.model_info("resnext_cifar").params == resnext_params(8)


def test_resnext_cifar_as_the_cardinality_experiment_builds_it():
    model = kerasnets.create_model("resnext_cifar", cardinality=32, num_classes=10,
                                   input_shape=(28, 28, 1))
    assert kerasnets.count_params(model) == resnext_params(32, in_channels=1)
    assert model.get_layer("layer3_2_out").output.shape[1:] == (7, 7, 256)
    out = predict(model, np.random.RandomState(0).rand(2, 28, 28, 1).astype("float32"))
    assert out.shape == (2, 10) and np.isfinite(out).all()


@pytest.mark.parametrize("value, message", [
    (0, "cardinality=0 must be an integer from 1 to 32"),
    (64, "cardinality=64 must be an integer from 1 to 32"),
    (4.0, "cardinality=4.0 should be a int"),
])
def test_resnext_cifar_refuses_cardinalities_it_cannot_balance(value, message):
    with pytest.raises(ValueError, match=message):
        kerasnets.create_model("resnext_cifar", cardinality=value)
