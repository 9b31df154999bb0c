"""The layers behind the zoo, against PyTorch's definitions."""

import keras
import numpy as np
import pytest

from kerasnets.layers import AdaptiveAveragePooling2D, DepthwiseConv2D, GroupConv2D
from kerasnets.layers.blocks import _ceil_mode_extra
from tests.helpers import to_numpy


def torch_adaptive_avg_pool(x, out):
    """Reference: torch's AdaptiveAvgPool2d on NHWC numpy, straight from its definition."""
    n, h, w, c = x.shape
    y = np.zeros((n, out, out, c), np.float64)
    for i in range(out):
        for j in range(out):
            h0, h1 = (i * h) // out, -(-((i + 1) * h) // out)
            w0, w1 = (j * w) // out, -(-((j + 1) * w) // out)
            y[:, i, j] = x[:, h0:h1, w0:w1].mean(axis=(1, 2))
    return y


@pytest.mark.parametrize("size,out", [(7, 7), (13, 6), (1, 6), (2, 4), (5, 3), (9, 7)])
def test_adaptive_average_pooling_is_torchs(size, out):
    x = np.random.rand(2, size, size, 3).astype("float32")
    y = to_numpy(AdaptiveAveragePooling2D(out)(x))
    np.testing.assert_allclose(y, torch_adaptive_avg_pool(x, out), rtol=1e-5, atol=1e-6)
    first = AdaptiveAveragePooling2D(out, data_format="channels_first")
    yt = to_numpy(first(np.transpose(x, (0, 3, 1, 2))))
    np.testing.assert_allclose(np.transpose(yt, (0, 2, 3, 1)), y, rtol=1e-5, atol=1e-6)


def test_group_and_depthwise_convs_equal_keras_layers():
    x = np.random.rand(2, 9, 9, 8).astype("float32")
    ours = GroupConv2D(12, 3, groups=4, padding="same")
    reference = keras.layers.Conv2D(12, 3, groups=4, padding="same")
    ours.build(x.shape), reference.build(x.shape)
    reference.set_weights(ours.get_weights())
    np.testing.assert_allclose(to_numpy(ours(x)), to_numpy(reference(x)), rtol=1e-5, atol=1e-5)
    dw, dw_ref = DepthwiseConv2D(3, strides=2), keras.layers.DepthwiseConv2D(3, strides=2)
    dw.build(x.shape), dw_ref.build(x.shape)
    dw_ref.set_weights(dw.get_weights())
    np.testing.assert_allclose(to_numpy(dw(x)), to_numpy(dw_ref(x)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size,k,s,p", [(112, 3, 2, 0), (28, 3, 2, 0), (14, 2, 2, 0),
                                        (7, 3, 2, 0), (5, 3, 2, 1), (6, 3, 2, 1), (4, 3, 1, 1)])
def test_ceil_mode_padding_gives_torchs_output_size(size, k, s, p):
    out = -(-(size + 2 * p - k) // s) + 1
    if (out - 1) * s >= size + p:
        out -= 1
    extra = _ceil_mode_extra(size, k, s, p)
    assert (size + 2 * p + extra - k) // s + 1 == out


@pytest.mark.parametrize("cpu", [True, False])
def test_kernel_rewrites_are_chosen_by_device(monkeypatch, cpu):
    """CPU rewrites (per-group split on TF/JAX, shifted multiply-adds for JAX's depthwise)
    run only on the CPU; on a (faked) GPU the native grouped/depthwise op runs. Both give
    the Keras layers' results."""
    from keras import ops

    from kerasnets.backends import devices, kernels

    monkeypatch.setattr(devices, "on_cpu", lambda: cpu)
    convs = []
    real_conv = ops.conv
    monkeypatch.setattr(kernels.ops, "conv", lambda *a, **k: convs.append(a[1].shape)
                        or real_conv(*a, **k))
    x = np.random.rand(2, 9, 9, 8).astype("float32")
    ours, reference = GroupConv2D(12, 3, groups=4), keras.layers.Conv2D(12, 3, groups=4)
    ours.build(x.shape), reference.build(x.shape)
    reference.set_weights(ours.get_weights())
    np.testing.assert_allclose(to_numpy(ours(x)), to_numpy(reference(x)), rtol=1e-5, atol=1e-5)
    split = cpu and keras.backend.backend() != "torch"
    assert len(convs) == (4 if split else 1)  # one convolution per group, or one in all
