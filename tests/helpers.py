"""Test utilities; running models on each backend is kerasnets.backends.execution's job."""

import os

import keras
import numpy as np

from kerasnets.backends.execution import forward as predict  # noqa: F401 (used by tests)
from kerasnets.backends.execution import gradients as _gradients
from kerasnets.interop.parity import scaled_diff  # noqa: F401 (used by tests)


def to_numpy(x):
    return keras.ops.convert_to_numpy(x)


def _probe_loss(outputs):
    """A loss linear in the logits: unlike cross-entropy it never saturates (random-init
    DenseNets output logits in the thousands), so a zero gradient means a broken wire."""
    outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    total = 0.0
    for out in outputs:
        weights = keras.ops.convert_to_tensor(
            np.random.RandomState(7).randn(*out.shape).astype("float32"))
        total = total + keras.ops.mean(out * weights)
    return total


def gradients(model, x, training=False):
    """Gradients of a probe loss w.r.t. every trainable weight.

    Inference mode by default: in training mode a BN beta followed only by linear
    maps and another BN (a 1x1 feature map, as small test inputs give) has an
    analytically zero gradient, which says nothing about the wiring.
    """
    return _gradients(model, x, _probe_loss, training=training)


def count_direct_layer_calls(monkeypatch):
    """Count the layer calls kerasnets' torch shortcut takes ("direct") and leaves to
    Keras' ``Layer.__call__`` ("keras")."""
    from kerasnets.backends import keras_patches

    calls = {"direct": 0, "keras": 0}
    original = keras_patches._direct_call

    def counted(*args):
        outputs = original(*args)
        calls["keras" if outputs is NotImplemented else "direct"] += 1
        return outputs
    monkeypatch.setattr(keras_patches, "_direct_call", counted)
    return calls


def record(check, name, value):
    """Append a measured difference to $KERASNETS_PARITY_LOG (when set), so that the
    worst figure of each check can be reported from a test run."""
    path = os.environ.get("KERASNETS_PARITY_LOG")
    if path:
        with open(path, "a") as log:
            log.write(f"{keras.backend.backend()} {check} {name} {value:.3e}\n")


def publish_fake_resnet18_weights(tmp_path, monkeypatch, state_dict):
    """Make ``state_dict`` resnet18's published ImageNet weights without a network: saved
    in a private torch.hub cache (TORCH_HOME and KERAS_HOME under ``tmp_path``) named, as
    torchvision names its files, after its own sha256 prefix, and registered as
    resnet18's weights URL; downloading raises OSError. Returns the checkpoint's path."""
    import dataclasses
    import hashlib

    import torch

    import kerasnets
    from kerasnets import registry
    from kerasnets.interop import imagenet

    def offline(url, destination):
        raise OSError("network unreachable (test)")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(imagenet, "_download", offline)
    saved = tmp_path / "resnet18.pth"
    torch.save(state_dict, saved)
    prefix = hashlib.sha256(saved.read_bytes()).hexdigest()[:8]
    info = kerasnets.model_info("resnet18")
    weights = dataclasses.replace(info.weights, url=f"https://example.org/resnet18-{prefix}.pth")
    monkeypatch.setitem(registry._REGISTRY, "resnet18", dataclasses.replace(info, weights=weights))
    target = imagenet.torch_hub_dir() / weights.filename
    target.parent.mkdir(parents=True)
    saved.rename(target)
    return target
