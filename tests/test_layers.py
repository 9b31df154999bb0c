"""The layers behind the zoo, against PyTorch's definitions."""

import contextlib

import keras
import numpy as np
import pytest

from kerasnets.layers import AdaptiveAveragePooling2D, DepthwiseConv2D, GroupConv2D
from kerasnets.layers.blocks import _ceil_mode_extra
from tests.helpers import count_direct_layer_calls, to_numpy


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


@pytest.mark.parametrize("cpu,onednn", [(True, True), (True, False), (False, True)])
def test_kernel_rewrites_are_chosen_by_device(monkeypatch, cpu, onednn):
    """CPU rewrites run only on the CPU: a grouped convolution is one convolution per
    group on JAX's CPU and on TF's CPU without oneDNN, TensorFlow's own grouped kernel on
    TF's CPU with oneDNN, torch's own kernel without Keras' copies on torch's CPU, and
    Keras' op on a (faked) GPU. Every form gives the Keras layer's results."""
    from keras import ops

    from kerasnets.backends import devices, kernels

    monkeypatch.setattr(devices, "on_cpu", lambda: cpu)
    monkeypatch.setattr(devices, "tf_onednn", lambda: onednn)
    expected = {"jax": "split", "torch": "torch",
                "tensorflow": "tensorflow" if onednn else "split"}[keras.backend.backend()]
    assert kernels.grouped_conv_form() == (expected if cpu else "keras")
    # TensorFlow has no CPU gradient kernel for float16 and float64 groups: split there
    assert kernels.grouped_conv_form("float64") == (
        "keras" if not cpu else "torch" if expected == "torch" else "split")
    convs = []
    real_conv = ops.conv
    monkeypatch.setattr(kernels.ops, "conv", lambda *a, **k: convs.append(a[1].shape)
                        or real_conv(*a, **k))
    x = np.random.rand(2, 9, 9, 8).astype("float32")
    ours, reference = GroupConv2D(12, 3, groups=4), keras.layers.Conv2D(12, 3, groups=4)
    ours.build(x.shape), reference.build(x.shape)
    reference.set_weights(ours.get_weights())
    np.testing.assert_allclose(to_numpy(ours(x)), to_numpy(reference(x)), rtol=1e-5, atol=1e-5)
    # one Keras convolution per group (on JAX's CPU these groups of 2 channels are one
    # block-diagonal convolution), TensorFlow's or torch's own op, or one Keras op in all
    split = 1 if keras.backend.backend() == "jax" else 4
    assert len(convs) == {"split": split, "tensorflow": 0, "torch": 0,
                          "keras": 1}[kernels.grouped_conv_form()]


def test_conv_share_times_each_distinct_convolution_once(monkeypatch):
    """``python -m kerasnets.benchmarks.conv_share`` (how much of a step is convolution):
    every convolution of a model found, nested ones too; one configuration on one input
    shape timed once and counted; the model's first convolution takes no input gradient,
    as in training; each kind of convolution runs on this backend."""
    import keras

    from kerasnets.benchmarks import conv_share
    from kerasnets.layers import Conv2D, DepthwiseConv2D, GroupConv2D

    inner_in = keras.Input((8, 8, 8))
    inner = keras.Model(inner_in, GroupConv2D(8, 3, padding="same", groups=4)(inner_in))
    x = inputs = keras.Input((16, 16, 3))
    x = Conv2D(8, 3, strides=2, zero_padding=1, use_bias=False)(x)
    x = Conv2D(8, 3, padding="same")(x)
    x = Conv2D(8, 3, padding="same")(x)  # the same configuration and input: counted
    x = inner(x)
    x = DepthwiseConv2D(3, padding="same")(x)
    x = Conv2D(4, 1)(x)
    model = keras.Model(inputs, x)

    found = conv_share.conv_layers(model)
    assert [type(layer).__name__ for layer, _, _ in found] == [
        "Conv2D", "Conv2D", "Conv2D", "GroupConv2D", "DepthwiseConv2D", "Conv2D"]
    assert [first for _, _, first in found] == [True] + [False] * 5
    assert found[0][1] == (16, 16, 3) and found[1][1] == (8, 8, 8)

    wrt_input = []
    step = conv_share._step
    monkeypatch.setattr(conv_share, "_step",
                        lambda layer, grad_x: wrt_input.append(grad_x) or step(layer, grad_x))
    rows = conv_share.convolution_times(model, batch=2, repeats=1)
    assert [(r["kind"], r["count"]) for r in rows] == [
        ("strided kxk", 1), ("kxk", 2), ("grouped", 1), ("depthwise", 1), ("1x1", 1)]
    assert wrt_input == [False, True, True, True, True]
    assert all(r["ms"] >= 0 for r in rows)


def test_grouped_conv_benchmark_compares_the_two_forms(capsys):
    """``python -m kerasnets.benchmarks.grouped_conv`` (the measurement behind
    ``kernels.grouped_conv``'s choice) times the native form and the split on every
    backend, and on torch also Keras' op (``--keras-op``; XLA-compiled and slow on TF), on
    JAX also the groups computed in blocks."""
    import keras

    from kerasnets.benchmarks import grouped_conv

    torch = keras.backend.backend() == "torch"
    grouped_conv.main(["--shapes", "1", "--repeats", "1"] + (["--keras-op"] if torch else []))
    out = capsys.readouterr().out
    assert "kerasnets' form here: " in out
    row = [line for line in out.splitlines() if line.startswith("| 128 channels on 16x16")]
    assert len(row) == 1 and len(row[0].split("|")) == (
        7 if torch or keras.backend.backend() == "jax" else 6)
    assert "fails" not in row[0]


CONVS = [(2, 3, 1, "same"), (3, 3, 1, "same"), (4, 3, 2, "same"), (5, 3, 2, "valid"),
         (8, 1, 1, "valid"), (8, 1, 2, "valid"), (9, 3, 1, "same")]
POOLS = [(9, 3, 2, "valid"), (8, 2, 2, "valid"), (7, 3, 2, "same"), (4, 1, 2, "valid")]


def _outputs_and_gradients(layer, x):
    from tests.helpers import gradients

    inputs = keras.Input(x.shape[1:])
    model = keras.Model(inputs, keras.layers.Flatten()(layer(inputs)))
    return to_numpy(model(x)), gradients(model, x)


@pytest.mark.parametrize("size,k,stride,padding", CONVS)
def test_conv_rewrites_equal_keras_conv(size, k, stride, padding):
    """kerasnets' Conv2D (1x1 and tiny outputs as matmuls on JAX's CPU) gives Keras'
    Conv2D outputs and kernel gradients."""
    from kerasnets.layers import Conv2D

    x = np.random.rand(2, size, size, 6).astype("float32")
    ours = Conv2D(5, k, strides=stride, padding=padding)
    reference = keras.layers.Conv2D(5, k, strides=stride, padding=padding)
    ours.build(x.shape), reference.build(x.shape)
    reference.set_weights(ours.get_weights())
    (y, g), (y_ref, g_ref) = _outputs_and_gradients(ours, x), _outputs_and_gradients(reference, x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(g, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size,k,stride,padding", POOLS)
def test_max_pool_rewrite_equals_keras_max_pool(size, k, stride, padding):
    """kerasnets' MaxPooling2D (strided slices on JAX's CPU) gives Keras' outputs and input
    gradients (checked through a convolution in front of it)."""
    from kerasnets.layers import MaxPooling2D

    x = np.random.rand(2, size, size, 3).astype("float32")
    results = []
    for pool in (MaxPooling2D(k, stride, padding=padding),
                 keras.layers.MaxPooling2D(k, stride, padding=padding)):
        conv = keras.layers.Conv2D(4, 1, kernel_initializer="ones")
        results.append(_outputs_and_gradients(lambda t: pool(conv(t)), x))
    (y, g), (y_ref, g_ref) = results
    np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)
    for a, b in zip(g, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


ZERO_PADDINGS = [(9, 2, 1), (8, 2, 1), (8, 1, ((0, 1), (2, 1))), (7, 3, 3)]


def _with_zero_padding(kind, stride, zero_padding):
    """kerasnets' ``kind`` with ``zero_padding``, and the Keras layer it extends, "valid"."""
    from kerasnets.layers import Conv2D

    ours, theirs, kwargs = {
        "Conv2D": (Conv2D, keras.layers.Conv2D, dict(filters=6, kernel_size=3)),
        "GroupConv2D": (GroupConv2D, keras.layers.Conv2D,
                        dict(filters=6, kernel_size=3, groups=2)),
        "DepthwiseConv2D": (DepthwiseConv2D, keras.layers.DepthwiseConv2D,
                            dict(kernel_size=3)),
    }[kind]
    return (ours(strides=stride, zero_padding=zero_padding, **kwargs),
            theirs(strides=stride, **kwargs))


@pytest.mark.parametrize("kind", ["Conv2D", "GroupConv2D", "DepthwiseConv2D"])
@pytest.mark.parametrize("size,stride,zero_padding", ZERO_PADDINGS)
def test_zero_padding_equals_a_zero_padding_layer_in_front(kind, size, stride, zero_padding):
    """A convolution told ``zero_padding`` (torch's ``padding``; on torch's CPU padded
    inside torch's kernel) gives the outputs and gradients of a ZeroPadding2D followed
    by Keras' "valid" convolution, input gradients included (through a convolution in
    front), symmetric or not, for every stride the zoo uses."""
    x = np.random.rand(2, size, size, 4).astype("float32")
    ours, reference = _with_zero_padding(kind, stride, zero_padding)
    ours.build((None, size, size, 4)), reference.build((None, None, None, 4))
    reference.set_weights(ours.get_weights())

    def behind_a_conv(layer):
        front = keras.layers.Conv2D(4, 1, kernel_initializer="ones")
        return _outputs_and_gradients(lambda t: layer(front(t)), x)

    y, g = behind_a_conv(ours)
    y_ref, g_ref = behind_a_conv(lambda t: reference(keras.layers.ZeroPadding2D(zero_padding)(t)))
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(g, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cpu", [True, False])
@pytest.mark.parametrize("stride", [1, 2])
def test_zero_padding_is_torchs_kernel_padding_on_torchs_cpu_only(monkeypatch, cpu, stride):
    """On torch's CPU the zeros go to torch's convolution (no padded copy), and so do a
    strided ``Conv2D``'s on JAX's CPU (XLA's, in ``jax_cpu.strided_conv``); on a (faked)
    GPU and elsewhere on TF and JAX they are added first, as ZeroPadding2D adds them."""
    from kerasnets.backends import devices, kernels
    from kerasnets.layers import Conv2D

    monkeypatch.setattr(devices, "on_cpu", lambda: cpu)
    pads, real_pad = [], kernels.ops.pad
    monkeypatch.setattr(kernels.ops, "pad", lambda *a, **k: pads.append(1) or real_pad(*a, **k))
    x = np.random.rand(1, 8, 8, 4).astype("float32")
    for layer in (Conv2D(4, 3, strides=stride, zero_padding=1),
                  GroupConv2D(4, 3, strides=stride, groups=2, zero_padding=1),
                  DepthwiseConv2D(3, strides=stride, zero_padding=1)):
        assert tuple(layer(x).shape) == (1, 8 // stride, 8 // stride, 4)
    inside = cpu and keras.backend.backend() == "torch"
    strided_conv_inside = cpu and keras.backend.backend() == "jax" and stride == 2
    assert len(pads) == (0 if inside else 2 if strided_conv_inside else 3)


def test_zero_padding_is_saved_and_checked(tmp_path):
    """``zero_padding`` survives ``.keras`` saving; a convolution without it keeps Keras'
    config; a bad value or one combined with "same" is refused with what to do."""
    from kerasnets.layers import Conv2D

    inputs = keras.Input((9, 9, 3))
    outputs = DepthwiseConv2D(3, strides=2, zero_padding=((1, 2), (0, 1)))(
        Conv2D(4, 3, strides=2, zero_padding=1)(inputs))
    model = keras.Model(inputs, outputs)
    assert model.output_shape == (None, 3, 2, 4)  # 9 -> 5 -> (5 + 3, 5 + 1) -> (3, 2)
    x = np.random.rand(2, 9, 9, 3).astype("float32")
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.layers[1].zero_padding == ((1, 1), (1, 1))
    assert loaded.layers[2].zero_padding == ((1, 2), (0, 1))
    np.testing.assert_array_equal(to_numpy(loaded(x)), to_numpy(model(x)))
    assert "zero_padding" not in Conv2D(4, 3).get_config()
    assert Conv2D(4, 3, zero_padding=0).zero_padding is None
    with pytest.raises(ValueError, match="needs padding=\"valid\""):
        Conv2D(4, 3, padding="same", zero_padding=1)
    for bad in (-1, ((1, 1),), "1", ((1, -1), (0, 0))):
        with pytest.raises(ValueError, match="zero_padding must be a non-negative int"):
            Conv2D(4, 3, zero_padding=bad)


def test_padding_benchmark_times_both_forms_on_this_backend(capsys):
    """``python -m kerasnets.benchmarks.padding`` (the figures behind ``zero_padding`` on
    torch's CPU) runs with this backend's own convolution and prints one row per shape."""
    from kerasnets.benchmarks import padding

    padding.main(["--quick"])
    out = capsys.readouterr().out
    assert out.startswith(f"{keras.backend.backend()}: forward + backward")
    rows = [line for line in out.splitlines() if line.startswith("| ") and "x8, batch 2" in line]
    assert len(rows) == len(padding.QUICK)
    for row in rows:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 4 and float(cells[3]) > 0


@pytest.mark.parametrize("cpu", [True, False])
def test_cpu_conv_forms_run_on_the_cpu_only(monkeypatch, cpu):
    """On JAX's CPU a 1x1 convolution and a 3x3 one with a 2x2 output are matmuls, and on
    torch's CPU both are torch's own convolution without Keras' copies; on a (faked) GPU,
    and on TF, they are Keras' convolution."""
    from keras import ops

    from kerasnets.backends import devices, kernels
    from kerasnets.layers import Conv2D

    monkeypatch.setattr(devices, "on_cpu", lambda: cpu)
    calls = []
    real_conv = ops.conv
    monkeypatch.setattr(kernels.ops, "conv", lambda *a, **k: calls.append(1)
                        or real_conv(*a, **k))
    for k, size in [(1, 8), (3, 2)]:
        Conv2D(4, k, padding="same")(np.random.rand(1, size, size, 3).astype("float32"))
    rewritten = cpu and keras.backend.backend() in ("jax", "torch")
    assert len(calls) == (0 if rewritten else 2)


@pytest.mark.one_backend("torch")
def test_strided_1x1_conv_kernel_gradient_is_right_every_time():
    """PyTorch 2.14.1's channels_last strided 1x1 convolution returned a wrong kernel
    gradient in 47 of 3,000 calls on an AVX2 EPYC; kerasnets' Conv2D (a strided slice
    and a stride-1 convolution on torch's CPU) must be right in every one of 300."""
    from kerasnets.layers import Conv2D

    layer = Conv2D(5, 1, strides=2, use_bias=False)
    rng = np.random.RandomState(0)
    layer.build((2, 8, 8, 6))
    kernel = to_numpy(layer.kernel).astype("float64")[0, 0]
    worst = 0.0
    for _ in range(300):
        x = rng.rand(2, 8, 8, 6).astype("float32")
        w = rng.randn(2, 4, 4, 5).astype("float32")
        expected = np.einsum("nijc,nijo->co", x[:, ::2, ::2].astype("float64"), w) / w.size
        got = _kernel_gradient(layer, x, w)
        worst = max(worst, float(np.abs(got - expected).max()))
    assert worst < 1e-6
    assert np.allclose(to_numpy(layer(x)), np.einsum("nijc,co->nijo", x[:, ::2, ::2], kernel),
                       atol=1e-5)


@pytest.mark.one_backend("torch")
def test_torch_kernel_layout_is_a_transpose_with_the_transposed_gradient():
    """torch_cpu hands torch a Keras kernel (kh, kw, in, out) as (out, in, kh, kw) in
    channels_last memory (what oneDNN reads without a copy), and its gradient back in
    Keras' layout: exactly ``permute``, and float64 gradcheck passes."""
    import torch

    from kerasnets.backends.torch_cpu import _KerasKernel

    kernel = torch.randn(3, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    torch_kernel = _KerasKernel.apply(kernel)
    assert torch.equal(torch_kernel, kernel.permute(3, 2, 0, 1))
    assert torch_kernel.is_contiguous(memory_format=torch.channels_last)
    assert torch.autograd.gradcheck(_KerasKernel.apply, (kernel,))


def _two_conv_model(conv, grouped):
    inputs = keras.Input((8, 8, 4))
    x = conv(6, 3, padding="same", name="conv")(inputs)
    x = grouped(6, 3, groups=2, strides=2, name="grouped")(x)
    outputs = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(x))
    return keras.Model(inputs, outputs)


def _torch_layout(variable) -> bool:
    import torch

    return variable.value.permute(3, 2, 0, 1).is_contiguous(memory_format=torch.channels_last)


@pytest.mark.one_backend("torch")
def test_torch_conv_kernels_are_stored_in_torch_layout_and_train_as_keras(tmp_path):
    """On torch's CPU kerasnets' Conv2D and GroupConv2D keep their kernel in torch's
    memory order (Keras' shape and values): the convolution needs no transpose. Training
    keeps that order, SGD's momentum takes it, and the weights after three steps are
    those of Keras' own Conv2D; saving, loading and set_weights keep values and order."""
    import torch

    from kerasnets.layers import Conv2D

    ours = _two_conv_model(Conv2D, GroupConv2D)
    reference = _two_conv_model(keras.layers.Conv2D, keras.layers.Conv2D)
    reference.set_weights(ours.get_weights())
    kernels = [ours.get_layer(name).kernel for name in ("conv", "grouped")]
    assert all(_torch_layout(k) and not k.value.is_contiguous() for k in kernels)
    assert all(k.value.is_contiguous() for k in reference.trainable_weights)

    rng = np.random.RandomState(0)
    x, y = rng.rand(12, 8, 8, 4).astype("float32"), rng.randint(0, 3, 12)
    for model in (ours, reference):
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    for a, b in zip(ours.get_weights(), reference.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert all(_torch_layout(k) for k in kernels)
    momentums = [ours.optimizer.momentums[ours.optimizer._get_variable_index(k)]
                 for k in kernels]
    assert [m.value.stride() for m in momentums] == [k.value.stride() for k in kernels]
    assert isinstance(kernels[0].value, torch.nn.Parameter)

    ours.save(tmp_path / "ours.keras")
    loaded = keras.saving.load_model(tmp_path / "ours.keras")
    for a, b in zip(ours.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert all(_torch_layout(loaded.get_layer(n).kernel) for n in ("conv", "grouped"))
    np.testing.assert_allclose(to_numpy(loaded(x)), to_numpy(reference(x)), atol=1e-5)
    loaded.set_weights(reference.get_weights())
    assert all(_torch_layout(loaded.get_layer(n).kernel) for n in ("conv", "grouped"))


@pytest.mark.one_backend("torch")
@pytest.mark.parametrize("cpu,version,relaid", [(True, "3.15.1", True),
                                                 (False, "3.15.1", False),
                                                 (True, "3.16.0", False)])
def test_torch_kernel_storage_is_chosen_by_device_and_keras_version(monkeypatch, cpu,
                                                                    version, relaid):
    """Only on torch's CPU, and only on the Keras versions whose variables it knows, is a
    kernel re-laid; elsewhere it stays as Keras made it, and the results are the same."""
    from kerasnets.backends import devices
    from kerasnets.layers import Conv2D

    monkeypatch.setattr(devices, "on_cpu", lambda: cpu)
    monkeypatch.setattr(keras, "__version__", version)
    x = np.random.rand(2, 6, 6, 3).astype("float32")
    layer, reference = Conv2D(4, 3), keras.layers.Conv2D(4, 3)
    layer.build(x.shape), reference.build(x.shape)
    reference.set_weights(layer.get_weights())
    assert _torch_layout(layer.kernel) == relaid
    assert layer.kernel.value.is_contiguous() != relaid
    np.testing.assert_allclose(to_numpy(layer(x)), to_numpy(reference(x)), atol=1e-5)


def _kernel_gradient(layer, x, w):
    import torch

    layer.kernel.value.grad = None
    out = layer(torch.tensor(x))
    (out * torch.tensor(w)).mean().backward()
    return layer.kernel.value.grad.numpy()[0, 0].astype("float64")


def _assert_same_outputs_and_gradients(ours, reference, x):
    """``ours`` and the Keras layer ``reference``, with the same weights, give the same
    outputs and gradients on ``x``."""
    ours.build(x.shape), reference.build(x.shape)
    reference.set_weights(ours.get_weights())
    (y, g), (y_ref, g_ref) = (_outputs_and_gradients(ours, x),
                              _outputs_and_gradients(reference, x))
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
    for a, b in zip(g, g_ref):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size,stride,padding", [(9, 1, "same"), (8, 2, "same"),
                                                 (9, 2, "valid")])
def test_group_and_depthwise_rewrites_equal_keras_gradients(size, stride, padding):
    """The grouped and depthwise forms (per-group split on JAX, TensorFlow's own grouped
    kernel on TF with oneDNN, shifted multiply-adds on JAX) give Keras' outputs and
    gradients, the odd "same" pixel included."""
    x = np.random.rand(2, size, size, 8).astype("float32")
    pairs = [(GroupConv2D(12, 3, strides=stride, groups=4, padding=padding),
              keras.layers.Conv2D(12, 3, strides=stride, groups=4, padding=padding)),
             (DepthwiseConv2D(3, strides=stride, depth_multiplier=2, padding=padding),
              keras.layers.DepthwiseConv2D(3, strides=stride, depth_multiplier=2,
                                           padding=padding))]
    for ours, reference in pairs:
        _assert_same_outputs_and_gradients(ours, reference, x)


@pytest.mark.parametrize("shape,axis", [((4, 5, 5, 6), -1), ((4, 6, 5, 5), 1), ((8, 6), -1)])
def test_batch_norm_equals_keras_outputs_statistics_and_gradients(shape, axis):
    """kerasnets' BatchNormalization (one fused kernel on torch's and TF's CPU) gives
    Keras' outputs in both modes, the same moving statistics after training-mode calls, and
    the same gradients."""
    from kerasnets.layers import BatchNormalization
    from tests.helpers import gradients

    x = (np.random.rand(*shape) * 3 + 1).astype("float32")
    models = []
    for layer in (BatchNormalization, keras.layers.BatchNormalization):
        inputs = keras.Input(shape[1:])
        out = layer(axis=axis, momentum=0.9, epsilon=1e-5)(inputs)
        models.append(keras.Model(inputs, keras.layers.Flatten()(out)))
    ours, reference = models
    reference.set_weights(ours.get_weights())
    for training in (True, True, False):
        np.testing.assert_allclose(to_numpy(ours(x, training=training)),
                                   to_numpy(reference(x, training=training)),
                                   rtol=1e-5, atol=2e-5)
    for a, b in zip(ours.weights, reference.weights):  # moving mean and variance
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), rtol=1e-5, atol=1e-6)
    for training in (True, False):
        for a, b in zip(gradients(ours, x, training=training),
                        gradients(reference, x, training=training)):
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_batch_norm_with_one_value_per_channel_trains_as_keras():
    """torch's fused kernel refuses one value per channel in training (a batch of one
    1x1 map) and TF's divides by zero for its unbiased variance; Keras normalises it to
    beta and keeps finite moving statistics, and so must kerasnets' layer."""
    from kerasnets.layers import BatchNormalization

    x = np.random.rand(1, 1, 1, 6).astype("float32")
    ours, reference = BatchNormalization(), keras.layers.BatchNormalization()
    np.testing.assert_allclose(to_numpy(ours(x, training=True)),
                               to_numpy(reference(x, training=True)), atol=1e-6)
    for a, b in zip(ours.weights, reference.weights):
        np.testing.assert_allclose(to_numpy(a), to_numpy(b), atol=1e-6)


@pytest.mark.parametrize("cpu", [True, False])
def test_fused_batch_norm_runs_on_the_cpu_of_torch_and_tf_only(monkeypatch, cpu):
    from kerasnets.backends import devices, kernels
    from kerasnets.layers import BatchNormalization

    monkeypatch.setattr(devices, "on_cpu", lambda: cpu)
    layer = BatchNormalization()
    x = np.random.rand(2, 3, 3, 4).astype("float32")
    layer.build(x.shape)
    fused = kernels.batch_norm(layer, keras.ops.convert_to_tensor(x), training=True)
    assert (fused is not None) == (cpu and keras.backend.backend() in ("torch", "tensorflow"))


@keras.saving.register_keras_serializable(package="kerasnets_tests")
class _DoublesByDefault(keras.layers.Layer):
    """A layer whose ``training`` defaults to True, and one that fails on request."""

    fail = False

    def call(self, x, training=True):
        if self.fail:
            raise ValueError("asked to fail")
        return x * 2.0 if training else x


def _branchy_model():
    from kerasnets.layers import BatchNormalization, Conv2D, DepthwiseConv2D

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.ReLU()(BatchNormalization(momentum=0.5)(Conv2D(6, 3, padding="same")(inputs)))
    y = BatchNormalization(momentum=0.5)(DepthwiseConv2D(3, padding="same")(x))
    x = _DoublesByDefault(name="doubles")(keras.layers.Add()([x, y]))
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4)(x))


@pytest.mark.one_backend("torch")
def test_torch_direct_layer_calls_equal_keras_calls(monkeypatch):
    """On torch a Functional model's layers are called without Keras' ``Layer.__call__``
    where it would do nothing more (keras_patches.torch_direct_layer_calls): outputs in
    training, inference and each layer's own default mode, moving statistics and
    gradients are bit for bit those of Keras' path, every layer of a zoo model takes the
    shortcut, and a failing layer still raises Keras' message naming it and its arguments."""
    import kerasnets
    from kerasnets.backends import keras_patches
    from tests.helpers import gradients

    calls = count_direct_layer_calls(monkeypatch)
    model = _branchy_model()
    x = np.random.RandomState(0).rand(4, 8, 8, 3).astype("float32")
    start = model.get_weights()
    results = []
    for through_keras in (False, True):
        model.set_weights(start)
        scope = keras_patches.layer_calls_through_keras() if through_keras \
            else contextlib.nullcontext()
        with scope:
            outputs = [to_numpy(model(x, training=training)) for training in (True, None, False)]
            results.append((outputs, [w.copy() for w in model.get_weights()],
                            gradients(model, x, training=True)))
    (direct, direct_weights, direct_grads), (kept, kept_weights, kept_grads) = results
    # every layer, in 3 calls and the gradients' one; through_keras never asks
    assert calls == {"direct": 4 * (len(model.layers) - 1), "keras": 0}
    for a, b in zip(direct + direct_weights + direct_grads, kept + kept_weights + kept_grads):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(direct[1], direct[2])  # training=None: "doubles" doubles
    assert any(not np.array_equal(a, b) for a, b in zip(direct_weights, start))  # BN moved

    dropout = keras.Sequential([keras.Input((64,)), keras.layers.Dropout(0.5)])
    functional = keras.Model(dropout.inputs[0], dropout.layers[-1].output)
    ones = np.ones((2, 64), "float32")
    assert set(np.unique(to_numpy(functional(ones, training=True)))) == {0.0, 2.0}
    np.testing.assert_array_equal(to_numpy(functional(ones)), ones)

    calls.update(direct=0, keras=0)
    zoo = kerasnets.create_model("mobilenet_v3_small", num_classes=3, input_shape=(32, 32, 3))
    zoo(np.random.rand(2, 32, 32, 3).astype("float32"), training=True)
    assert calls == {"direct": len(zoo.layers) - 1, "keras": 0}

    model.get_layer("doubles").fail = True
    with pytest.raises(ValueError, match=r"(?s)calling _DoublesByDefault\.call.*asked to fail"):
        model(x)


@pytest.mark.one_backend("torch")
def test_torch_direct_layer_calls_leave_masks_and_mixed_precision_to_keras(monkeypatch):
    """A layer given a masked input, computing in another dtype than its variables, or
    given an input of another dtype, goes through Keras' ``Layer.__call__``; a mask a layer makes from unmasked inputs
    (``Embedding(mask_zero=True)``) is still made, and the results are Keras'."""
    from kerasnets.backends import keras_patches

    calls = count_direct_layer_calls(monkeypatch)
    tokens = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(7, 4, mask_zero=True)(tokens)
    x = keras.layers.GlobalAveragePooling1D()(x)
    masked = keras.Model(tokens, keras.layers.Dense(2)(x))
    ids = np.array([[1, 2, 0, 0, 0], [3, 4, 5, 6, 0]], "int32")
    direct = to_numpy(masked(ids))
    with keras_patches.layer_calls_through_keras():
        np.testing.assert_array_equal(direct, to_numpy(masked(ids)))
    assert calls == {"direct": 2, "keras": 1}  # the pooling layer sees the mask
    assert masked.get_layer(index=1).compute_mask(ids, None) is not None

    calls.update(direct=0, keras=0)
    inputs = keras.Input((6,))
    half = keras.layers.Dense(3, dtype="mixed_bfloat16")(inputs)
    mixed = keras.Model(inputs, keras.layers.Dense(2)(half))
    out = mixed(np.ones((2, 6), "float32"))
    # the first computes in bfloat16, the second must cast its bfloat16 input
    assert calls == {"direct": 0, "keras": 2} and str(out.dtype) == "torch.float32"


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's XLA:CPU")
def test_jax_stored_is_the_identity_in_value_and_gradient():
    """``jax_cpu.stored`` returns its input bit for bit, NaN, infinities, signed zeros and
    every float width included, and passes the gradient through unchanged."""
    import jax
    import jax.numpy as jnp

    from kerasnets.backends.jax_cpu import stored

    special = [np.nan, -np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, 3.5]
    for dtype in ("float16", "bfloat16", "float32"):
        for first in special:  # the first element decides XLA's branch: any value passes
            x = jnp.asarray([first, 1.0, -2.0, np.nan], dtype)
            got = jax.jit(stored)(x)
            np.testing.assert_array_equal(np.asarray(got).view(np.uint8),
                                          np.asarray(x).view(np.uint8))
    x = jnp.asarray(np.random.rand(2, 3, 3, 4).astype("float32"))
    weights = jnp.asarray(np.random.rand(2, 3, 3, 4).astype("float32"))
    grad = jax.jit(jax.grad(lambda v: jnp.sum(stored(v * 2.0) * weights)))(x)
    np.testing.assert_array_equal(np.asarray(grad), np.asarray(weights * 2.0))
    assert stored(jnp.zeros((0, 3))).shape == (0, 3)


def _compiled_conv_gradient(layer_type, kernel_size):
    """XLA's optimised program for the gradient of BN -> ReLU -> conv -> BN on JAX."""
    import jax

    inputs = keras.Input((8, 8, 4))
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(inputs))
    x = keras.layers.BatchNormalization()(layer_type(4, kernel_size, padding="same")(x))
    model = keras.Model(inputs, x)
    trainable = [v.value for v in model.trainable_variables]
    frozen = [v.value for v in model.non_trainable_variables]

    def loss(trainable, images):
        out, _ = model.stateless_call(trainable, frozen, images, training=True)
        return jax.numpy.mean(out ** 2)

    images = np.random.rand(2, 8, 8, 4).astype("float32")
    return jax.jit(jax.grad(loss)).lower(trainable, images).compile().as_text()


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's XLA:CPU")
@pytest.mark.parametrize("cpu", [True, False])
def test_jax_cpu_convolutions_hold_their_operands_in_memory(monkeypatch, cpu):
    """On JAX's CPU a convolution XLA computes with its own kernel keeps its input and
    output (forward) and their gradients (backward) in buffers XLA cannot fuse across:
    the optimised program still has the four branches. Not for a 1x1 convolution (a
    matmul), not on a (faked) GPU, not inside ``operands_fused_by_xla``."""
    from kerasnets.backends import devices, jax_cpu
    from kerasnets.layers import Conv2D, GroupConv2D

    monkeypatch.setattr(devices, "on_cpu", lambda: cpu)
    # the first BN's weights need the input's gradient: four branches, four per
    # convolution (two groups of 2 channels: one block-diagonal convolution, or one each)
    assert _compiled_conv_gradient(Conv2D, 3).count(" conditional(") == (4 if cpu else 0)
    assert _compiled_conv_gradient(lambda *a, **k: GroupConv2D(*a, groups=2, **k), 3
                                   ).count(" conditional(") == (4 if cpu else 0)
    with jax_cpu.groups_one_by_one():
        assert _compiled_conv_gradient(lambda *a, **k: GroupConv2D(*a, groups=2, **k), 3
                                       ).count(" conditional(") == (8 if cpu else 0)
    assert " conditional(" not in _compiled_conv_gradient(Conv2D, 1)
    with jax_cpu.operands_fused_by_xla():
        assert " conditional(" not in _compiled_conv_gradient(Conv2D, 3)
    assert jax_cpu.STORE_CONVOLUTION_OPERANDS


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's CPU convolutions")
def test_benchmark_workload_can_leave_jax_convolution_operands_to_xla(monkeypatch):
    """``"jax_operands_fused_by_xla": true`` in ``python -m kerasnets.benchmarks.workloads``
    traces the model without ``jax_cpu.stored`` around its convolutions; without it,
    LeNet-5's convolutions use it (on the CPU this suite runs on)."""
    from kerasnets.backends import jax_cpu
    from kerasnets.benchmarks.workloads import run_keras

    calls = []
    real = jax_cpu.stored
    monkeypatch.setattr(jax_cpu, "stored", lambda x: calls.append(1) or real(x))
    spec = {"kind": "kerasnets", "model": "lenet5", "image_size": 28, "channels": 1,
            "num_classes": 10, "batch_size": 4, "warmup": 1, "steps": 1}
    for fused in (True, False):
        calls.clear()
        assert run_keras({**spec, "jax_operands_fused_by_xla": fused})[
            "train_images_per_second"] > 0
        assert bool(calls) == (not fused)
    assert jax_cpu.STORE_CONVOLUTION_OPERANDS


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's CPU depthwise form")
@pytest.mark.parametrize("kernel,dilation", [(3, 1), (5, 1), (3, 2)])
def test_jax_depthwise_per_tap_gradient_is_bit_for_bit_the_shifted_form(kernel, dilation):
    """``jax_cpu.depthwise_per_tap_gradient`` gives the values, input gradient and kernel
    gradient of ``shifted_multiply_adds`` bit for bit (jitted, after a ReLU as in a
    MobileNet), at stride 1 and at stride 2."""
    import jax
    import jax.numpy as jnp

    from kerasnets.backends import jax_cpu

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 11, 11, 6), dtype=np.float32))
    weights = jnp.asarray(rng.standard_normal((kernel, kernel, 6), dtype=np.float32))
    for stride in (1, 2):
        span = 11 - (kernel - 1) * dilation
        out_hw = ((span - 1) // stride + 1,) * 2
        target = jnp.asarray(rng.standard_normal((2, *out_hw, 6), dtype=np.float32))
        results = []
        for form in (jax_cpu.shifted_multiply_adds, jax_cpu.depthwise_per_tap_gradient):
            def loss(x, weights, form=form):
                out = form(jax.nn.relu(x), weights, (stride,) * 2, (dilation,) * 2, out_hw)
                return jnp.sum(out * target), out
            (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1),
                                                         has_aux=True))(x, weights)
            results.append([np.asarray(out), *map(np.asarray, grads)])
        assert results[0][0].shape == (2, *out_hw, 6)
        for ours, xla in zip(results[1], results[0]):
            np.testing.assert_array_equal(ours, xla)


def _assert_workload_option_turns_the_form_off(model, option, calls, cpu):
    """``python -m kerasnets.benchmarks.workloads`` traces ``model`` (32x32, batch 2)
    without the form whose calls land in ``calls`` when ``option`` is true, and with it on
    JAX's CPU otherwise."""
    from kerasnets.benchmarks.workloads import run_keras

    spec = {"kind": "kerasnets", "model": model, "image_size": 32, "num_classes": 10,
            "batch_size": 2, "warmup": 1, "steps": 1}
    for off in (True, False):
        calls.clear()
        assert run_keras({**spec, option: off})["train_images_per_second"] > 0
        assert bool(calls) == (cpu and not off)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's CPU depthwise form")
@pytest.mark.parametrize("cpu", [True, False])
def test_jax_depthwise_dispatch_by_device(monkeypatch, cpu):
    """On JAX's CPU a ``DepthwiseConv2D`` (depth multiplier 1) computes its kernel gradient
    per tap, at stride 1 and 2; a (faked) GPU gets XLA's own depthwise convolution; ``depthwise_gradient_by_xla`` and the benchmark
    option ``"jax_depthwise_gradient_by_xla": true`` turn the per-tap form off. The layer's
    outputs and kernel gradient equal Keras' own layer."""
    import jax

    from kerasnets.backends import devices, jax_cpu

    monkeypatch.setattr(devices, "on_cpu", lambda: cpu)
    calls = []
    real = jax_cpu.depthwise_per_tap_gradient
    monkeypatch.setattr(jax_cpu, "depthwise_per_tap_gradient",
                        lambda *a: calls.append(a[2]) or real(*a))
    x = np.random.rand(2, 9, 9, 4).astype("float32")
    for stride in (1, 2):
        ours = DepthwiseConv2D(3, strides=stride, padding="same")
        reference = keras.layers.DepthwiseConv2D(3, strides=stride, padding="same")
        _assert_same_outputs_and_gradients(ours, reference, x)
    assert set(calls) == ({(1, 1), (2, 2)} if cpu else set())
    calls.clear()
    layer = DepthwiseConv2D(3, padding="same")
    layer.build(x.shape)
    with jax_cpu.depthwise_gradient_by_xla():
        jax.grad(lambda v: jax.numpy.sum(layer(v)))(jax.numpy.asarray(x))
    assert calls == [] and jax_cpu.DEPTHWISE_KERNEL_GRADIENT_PER_TAP
    _assert_workload_option_turns_the_form_off("mobilenet_v3_small",
                                                "jax_depthwise_gradient_by_xla", calls, cpu)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's CPU depthwise form")
def test_jax_depthwise_benchmark_quick():
    """The figures behind the per-tap depthwise kernel gradient: one row per layer."""
    from kerasnets.benchmarks import jax_depthwise

    layers = [(6, 4, 3, 1, 2), (6, 4, 5, 2, 2)]
    table = jax_depthwise.compare(layers, repeats=1).splitlines()
    assert len(table) == 2 + len(layers)
    assert table[2].startswith("| 3x3/1, 4 channels on 6x6, batch 2 |")
    assert all(float(c) > 0 for row in table[2:] for c in row.strip("|").split("|")[1:])


def test_alternating_benchmark_compares_with_and_without_a_jax_form(monkeypatch):
    """``python -m kerasnets.benchmarks.alternating``: one copy of the model traced without
    the form, both timed; on another backend, or for an unknown form, a clear error."""
    from kerasnets.benchmarks import alternating

    if keras.backend.backend() != "jax":
        with pytest.raises(SystemExit, match="run with KERAS_BACKEND=jax"):
            alternating.compare("lenet5", "depthwise_per_tap")
        return
    from kerasnets.backends import jax_cpu

    with pytest.raises(SystemExit, match="choose one of depthwise_per_tap, max_pool_gradient, stored_operands, strided_phases, group_blocks"):
        alternating.compare("lenet5", "nothing")
    traced = []
    real = jax_cpu.depthwise_per_tap_gradient
    monkeypatch.setattr(jax_cpu, "depthwise_per_tap_gradient",
                        lambda *a: traced.append(1) or real(*a))
    result = alternating.compare("mobilenet_v3_small", "depthwise_per_tap", rounds=1,
                                 batches=1, image_size=32, batch_size=2)
    assert result["with"] > 0 and result["without"] > 0 and result["batch_size"] == 2
    without_it = len(traced)  # building both copies, and the training step of one
    assert without_it > 0 and jax_cpu.DEPTHWISE_KERNEL_GRADIENT_PER_TAP
    traced.clear()
    alternating.compare("mobilenet_v3_small", "stored_operands", rounds=1, batches=1,
                        image_size=32, batch_size=2)
    assert len(traced) > without_it  # both training steps use the depthwise form now


def _jax_input_gradient(layer, x):
    """The gradient of ``sum(sin(layer(x)))`` with respect to ``x``, jitted on JAX."""
    import jax

    return np.asarray(jax.jit(jax.grad(lambda v: jax.numpy.sum(jax.numpy.sin(layer(v)))))(
        jax.numpy.asarray(x)))


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's CPU grouped form")
@pytest.mark.parametrize("cpu", [True, False])
def test_jax_groups_of_few_channels_in_blocks(monkeypatch, cpu):
    """On JAX's CPU, groups of at most 4 input channels are computed several to a
    convolution of 16 channels (block-diagonal kernels; as many groups as divide the
    count), wider groups one by one, everything inside ``groups_one_by_one`` one by one;
    Keras' outputs, kernel gradients and input gradients either way. A (faked) GPU gets
    Keras' grouped op."""
    from kerasnets.backends import devices, jax_cpu, kernels

    monkeypatch.setattr(devices, "on_cpu", lambda: cpu)
    convs = []
    real = kernels.conv
    monkeypatch.setattr(kernels, "conv",
                        lambda x, k, **kw: convs.append(k.shape) or real(x, k, **kw))
    # (channels in, groups, filters, stride), the kernel of each convolution on the CPU
    cases = [((16, 4, 8, 1), (3, 3, 16, 8)),   # 4 a group: all four in one
             ((24, 12, 24, 2), (3, 3, 12, 12)),  # 2 a group: 8 would not divide 12, so 6
             ((8, 8, 16, 1), (3, 3, 8, 16)),   # 1 a group
             ((16, 2, 4, 1), (3, 3, 8, 2))]    # 8 a group: one by one
    for (channels, groups, filters, stride), shape in cases:
        x = np.random.rand(2, 7, 7, channels).astype("float32")
        ours = GroupConv2D(filters, 3, strides=stride, groups=groups, padding="same")
        reference = keras.layers.Conv2D(filters, 3, strides=stride, groups=groups,
                                        padding="same")
        convs.clear()
        _assert_same_outputs_and_gradients(ours, reference, x)
        np.testing.assert_allclose(_jax_input_gradient(ours, x),
                                   _jax_input_gradient(reference, x), rtol=1e-5, atol=1e-6)
        assert set(convs) == ({shape} if cpu else set())
        convs.clear()
        with jax_cpu.groups_one_by_one():
            _jax_input_gradient(ours, x)
        assert len(convs) == (groups if cpu else 0)
    assert jax_cpu.GROUPS_IN_BLOCKS


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's CPU strided form")
@pytest.mark.parametrize("size,kernel,strides,pads", [
    (8, 3, (2, 2), ((1, 1), (1, 1))),   # ResNet's 3x3/2, even input
    (7, 3, (2, 2), ((1, 1), (1, 1))),   # odd input: the last row of a phase is cut
    (9, 3, (2, 2), ((0, 1), (0, 1))),   # Keras' "same" at stride 2
    (11, 7, (2, 2), ((3, 3), (3, 3))),  # the ImageNet stem
    (10, 5, (3, 3), ((2, 1), (1, 2))),  # stride 3, uneven pads
    (9, 1, (2, 2), ((0, 0), (0, 0))),   # phases no tap reaches: zeros
    (8, 2, (2, 2), ((0, 0), (0, 0))),   # one tap per phase
    (9, 3, (1, 2), ((1, 1), (0, 0))),   # strided along one axis only
    (11, 11, (4, 4), ((2, 2), (2, 2))),  # AlexNet's stem
])
def test_jax_strided_conv_input_gradient_by_phases_equals_xla(size, kernel, strides, pads):
    """``jax_cpu.strided_conv``: XLA's outputs and kernel gradient, and the input
    gradient of XLA's convolution computed by phases (the same sums, regrouped: equal to
    rounding), jitted, after a ReLU as in a ResNet."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    from kerasnets.backends import jax_cpu

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, size, size + 1, 3), dtype=np.float32))
    w = jnp.asarray(rng.standard_normal((kernel, kernel, 3, 5), dtype=np.float32))

    def xla(v, k):
        return lax.conv_general_dilated(v, k, strides, pads,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))
    target = jnp.asarray(rng.standard_normal(xla(x, w).shape, dtype=np.float32))
    results = []
    for form in (xla, lambda v, k: jax_cpu.strided_conv(v, k, strides, pads)):
        def loss(v, k, form=form):
            out = form(jax.nn.relu(v), k)
            return jnp.vdot(out, target), out
        (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1),
                                                     has_aux=True))(x, w)
        results.append([np.asarray(out), *map(np.asarray, grads)])
    (out, dx, dw), (out_ref, dx_ref, dw_ref) = results[1], results[0]
    np.testing.assert_array_equal(out, out_ref)
    np.testing.assert_array_equal(dw, dw_ref)
    assert dx.shape == x.shape and np.abs(dx_ref).max() > 0
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5 * np.abs(dx_ref).max())


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's CPU strided form")
@pytest.mark.parametrize("cpu", [True, False])
def test_jax_strided_conv_dispatch_by_device(monkeypatch, cpu):
    """A strided ``Conv2D`` on JAX's CPU goes through ``jax_cpu.strided_conv`` ("same",
    "valid" and torch's explicit zeros); stride 1, a 1x1 kernel (a matmul) and a (faked)
    GPU do not; ``strided_input_gradient_by_xla`` and the benchmark option
    ``"jax_strided_input_gradient_by_xla": true`` turn it off. Keras' own layer's outputs
    and gradients either way."""
    from kerasnets.backends import devices, jax_cpu
    from kerasnets.layers import Conv2D

    monkeypatch.setattr(devices, "on_cpu", lambda: cpu)
    calls = []
    real = jax_cpu.strided_conv
    monkeypatch.setattr(jax_cpu, "strided_conv",
                        lambda *a: calls.append(a[2:]) or real(*a))
    x = np.random.rand(2, 10, 10, 4).astype("float32")  # "same" at stride 2: (0, 1)
    for padding in ("same", "valid"):
        ours = Conv2D(6, 3, strides=2, padding=padding)
        reference = keras.layers.Conv2D(6, 3, strides=2, padding=padding)
        _assert_same_outputs_and_gradients(ours, reference, x)
        np.testing.assert_allclose(_jax_input_gradient(ours, x),
                                   _jax_input_gradient(reference, x), rtol=1e-5, atol=1e-6)
    explicit = Conv2D(6, 3, strides=2, zero_padding=1)
    y, _ = _outputs_and_gradients(explicit, x)
    assert y.shape == (2, 5 * 5 * 6)
    ours = _jax_input_gradient(explicit, x)
    for layer in (Conv2D(6, 3, padding="same"), Conv2D(6, 1, strides=2)):
        _outputs_and_gradients(layer, x)
    assert set(calls) == ({((2, 2), ((0, 1), (0, 1))), ((2, 2), ((0, 0), (0, 0))),
                           ((2, 2), ((1, 1), (1, 1)))} if cpu else set())
    calls.clear()
    with jax_cpu.strided_input_gradient_by_xla():  # zeros added, then XLA's convolution
        np.testing.assert_allclose(ours, _jax_input_gradient(explicit, x), rtol=1e-5, atol=1e-6)
    assert calls == [] and jax_cpu.STRIDED_INPUT_GRADIENT_BY_PHASES
    _assert_workload_option_turns_the_form_off("resnet18", "jax_strided_input_gradient_by_xla",
                                                calls, cpu)


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's CPU max-pooling form")
def test_jax_max_pool_gradient_goes_to_the_first_maximum_as_torch():
    """``jax_cpu.max_pool``: the maximum of the windows, whose gradient goes to the first
    maximum of each window, as torch's kernel sends it, ties included (JAX's own gradient of
    the chain of maxima splits it); without ties, that chain's gradient to rounding."""
    import jax
    import jax.numpy as jnp
    import torch

    from kerasnets.backends import jax_cpu

    rng = np.random.default_rng(0)
    for pool, stride in (((3, 3), (2, 2)), ((2, 2), (2, 2)), ((3, 2), (1, 2))):
        for ties in (True, False):
            x = (rng.integers(0, 3, (2, 9, 9, 3)) if ties
                 else rng.standard_normal((2, 9, 9, 3))).astype("float32")
            xt = torch.tensor(x).permute(0, 3, 1, 2).requires_grad_()
            expected = torch.nn.functional.max_pool2d(xt, pool, stride)
            target = rng.standard_normal(expected.shape).astype("float32")
            (expected * torch.tensor(target)).sum().backward()
            target = jnp.asarray(target.transpose(0, 2, 3, 1))
            for form in (jax_cpu.max_pool, jax_cpu.maximum_of_windows):
                out, grad = jax.jit(jax.value_and_grad(
                    lambda v, form=form: jnp.vdot(form(v, pool, stride), target)))(x)
                np.testing.assert_allclose(
                    np.asarray(jax.jit(form, static_argnums=(1, 2))(x, pool, stride)),
                    expected.detach().permute(0, 2, 3, 1).numpy())
                if form is jax_cpu.max_pool or not ties:
                    np.testing.assert_allclose(np.asarray(grad),
                                               xt.grad.permute(0, 2, 3, 1).numpy(),
                                               rtol=1e-6, atol=1e-6)
                else:  # the chain's own gradient splits between ties: not torch's
                    assert not np.allclose(np.asarray(grad),
                                           xt.grad.permute(0, 2, 3, 1).numpy())


@pytest.mark.skipif(keras.backend.backend() != "jax", reason="JAX's CPU max-pooling form")
@pytest.mark.parametrize("cpu", [True, False])
def test_jax_max_pool_dispatch_by_device(monkeypatch, cpu):
    """``MaxPooling2D`` on JAX's CPU uses ``jax_cpu.max_pool`` (not inside
    ``max_pool_gradient_by_xla``); a (faked) GPU gets XLA's ``reduce_window``. Keras' outputs
    and gradients either way (no ties in random floats)."""
    from kerasnets.backends import devices, jax_cpu
    from kerasnets.layers import MaxPooling2D

    monkeypatch.setattr(devices, "on_cpu", lambda: cpu)
    calls = []
    real = jax_cpu.max_pool
    monkeypatch.setattr(jax_cpu, "max_pool", lambda *a: calls.append(a[1:]) or real(*a))
    x = np.random.rand(2, 9, 9, 4).astype("float32")
    for padding in ("valid", "same"):
        (y, g), (y_ref, g_ref) = (
            _outputs_and_gradients(MaxPooling2D(3, 2, padding=padding), x),
            _outputs_and_gradients(keras.layers.MaxPooling2D(3, 2, padding=padding), x))
        np.testing.assert_array_equal(y, y_ref)
        for a, b in zip(g, g_ref):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)
    assert set(calls) == ({((3, 3), (2, 2))} if cpu else set())
    calls.clear()
    with jax_cpu.max_pool_gradient_by_xla():
        _outputs_and_gradients(MaxPooling2D(3, 2), x)
    assert calls == [] and jax_cpu.MAX_POOL_GRADIENT_TO_FIRST_MAXIMUM

