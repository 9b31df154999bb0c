"""torchvision's ImageNet weights on any backend, and ImageNet pre/post-processing.

``create_model(name, weights="imagenet")`` looks for torchvision's published
checkpoint where ``torch.hub`` keeps it (``$TORCH_HOME/hub/checkpoints``,
default ``~/.cache/torch/hub/checkpoints``), downloads it there only if it is
missing and we are online, converts it once (this step needs ``torch`` to read
the ``.pth`` file) and caches the result as ``.weights.h5`` under
``$KERAS_HOME/kerasnets`` (default ``~/.keras/kerasnets``). Later loads need
neither torch nor the network.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Checkpoint:
    """torchvision's DEFAULT weights of a model and their evaluation transform."""

    url: str
    resize_size: int
    crop_size: int
    top1: float  # torchvision's published ImageNet-1K top-1, %

    @property
    def filename(self):
        return self.url.rsplit("/", 1)[-1]


_BASE = "https://download.pytorch.org/models/"
CHECKPOINTS = {
    "alexnet": Checkpoint(_BASE + "alexnet-owt-7be5be79.pth", 256, 224, 56.522),
    "vgg11": Checkpoint(_BASE + "vgg11-8a719046.pth", 256, 224, 69.02),
    "vgg13": Checkpoint(_BASE + "vgg13-19584684.pth", 256, 224, 69.928),
    "vgg16": Checkpoint(_BASE + "vgg16-397923af.pth", 256, 224, 71.592),
    "vgg19": Checkpoint(_BASE + "vgg19-dcbb9e9d.pth", 256, 224, 72.376),
    "vgg11_bn": Checkpoint(_BASE + "vgg11_bn-6002323d.pth", 256, 224, 70.37),
    "vgg13_bn": Checkpoint(_BASE + "vgg13_bn-abd245e5.pth", 256, 224, 71.586),
    "vgg16_bn": Checkpoint(_BASE + "vgg16_bn-6c64b313.pth", 256, 224, 73.36),
    "vgg19_bn": Checkpoint(_BASE + "vgg19_bn-c79401a0.pth", 256, 224, 74.218),
    "googlenet": Checkpoint(_BASE + "googlenet-1378be20.pth", 256, 224, 69.778),
    "resnet18": Checkpoint(_BASE + "resnet18-f37072fd.pth", 256, 224, 69.758),
    "resnet34": Checkpoint(_BASE + "resnet34-b627a593.pth", 256, 224, 73.314),
    "resnet50": Checkpoint(_BASE + "resnet50-11ad3fa6.pth", 232, 224, 80.858),
    "resnet101": Checkpoint(_BASE + "resnet101-cd907fc2.pth", 232, 224, 81.886),
    "resnet152": Checkpoint(_BASE + "resnet152-f82ba261.pth", 232, 224, 82.284),
    "resnext50_32x4d": Checkpoint(_BASE + "resnext50_32x4d-1a0047aa.pth", 232, 224, 81.198),
    "resnext101_32x8d": Checkpoint(_BASE + "resnext101_32x8d-110c445d.pth", 232, 224, 82.834),
    "densenet121": Checkpoint(_BASE + "densenet121-a639ec97.pth", 256, 224, 74.434),
    "densenet169": Checkpoint(_BASE + "densenet169-b2777c0a.pth", 256, 224, 75.6),
    "densenet201": Checkpoint(_BASE + "densenet201-c1103571.pth", 256, 224, 76.896),
    "mobilenet_v2": Checkpoint(_BASE + "mobilenet_v2-7ebf99e0.pth", 232, 224, 72.154),
    "mobilenet_v3_small": Checkpoint(_BASE + "mobilenet_v3_small-047dcff4.pth", 256, 224, 67.668),
    "mobilenet_v3_large": Checkpoint(_BASE + "mobilenet_v3_large-5c1a4163.pth", 232, 224, 75.274),
}

# Options torchvision's pretrained builders set, which the weights need.
PRETRAINED_OPTIONS = {"googlenet": {"transform_input": True}}


class WeightsNotFoundError(FileNotFoundError):
    """torchvision's checkpoint is not cached and could not be downloaded."""


def checkpoint(name) -> Checkpoint:
    if name not in CHECKPOINTS:
        raise ValueError(f"No ImageNet weights for {name!r}: torchvision publishes them for "
                         f"{', '.join(CHECKPOINTS)}.")
    return CHECKPOINTS[name]


def torch_hub_dir() -> Path:
    """Where ``torch.hub`` caches checkpoints, computed as torch does (no torch needed)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
    return Path(torch_home) / "hub" / "checkpoints"


def converted_dir() -> Path:
    keras_home = os.environ.get("KERAS_HOME") or os.path.expanduser("~/.keras")
    return Path(keras_home) / "kerasnets"


def _download(url, destination: Path):
    import urllib.request

    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_suffix(".part")
    try:
        urllib.request.urlretrieve(url, tmp)
        os.replace(tmp, destination)
    finally:
        if tmp.exists():
            tmp.unlink()


def torchvision_checkpoint(name, *, download=True) -> Path:
    """The path of torchvision's checkpoint for ``name``, downloading it if allowed."""
    ckpt = checkpoint(name)
    path = torch_hub_dir() / ckpt.filename
    if path.exists():
        return path
    error = "download disabled"
    if download:
        try:
            _download(ckpt.url, path)
            return path
        except OSError as failure:  # offline: URLError is an OSError
            error = f"download failed: {failure}"
    raise WeightsNotFoundError(
        f"torchvision's ImageNet checkpoint for {name} is not cached: looked for {path} "
        f"(torch.hub's cache; set TORCH_HOME to use another) and {error}. Put "
        f"{ckpt.url} there, e.g. on a machine with internet: python -c \"import torchvision; "
        f"torchvision.models.get_model('{name}', weights='DEFAULT')\".")


def _read_state_dict(path):
    try:
        import torch
    except ImportError:
        raise ImportError(f"Converting {path} needs PyTorch once (pip install torch); the "
                          f"converted .weights.h5 is then cached and loads without it.") from None
    return torch.load(path, map_location="cpu", weights_only=True)


def imagenet_weights_file(name, *, download=True) -> Path:
    """The converted ``.weights.h5`` of ``name``, converting torchvision's checkpoint once."""
    import kerasnets
    from kerasnets.interop.torchvision import load_torchvision_weights

    source = torchvision_checkpoint(name, download=download)
    tag = hashlib.sha256(source.name.encode()).hexdigest()[:8]
    target = converted_dir() / f"{name}-imagenet-{tag}.weights.h5"
    if target.exists():
        return target
    model = kerasnets.create_model(name, **PRETRAINED_OPTIONS.get(name, {}))
    load_torchvision_weights(model, _read_state_dict(source))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.tmp.weights.h5")
    model.save_weights(tmp)
    os.replace(tmp, target)
    return target


def load_imagenet_weights(model, name, *, download=True):
    """Load ImageNet weights into ``model`` (any input size, head or no head).

    Layers are matched by name. A classifier whose shape differs (another
    ``num_classes``) keeps its fresh initialisation, as for fine-tuning; every
    other layer must match.
    """
    import kerasnets

    path = imagenet_weights_file(name, download=download)
    reference = kerasnets.create_model(name, **PRETRAINED_OPTIONS.get(name, {}))
    reference.load_weights(path)
    source = {layer.name: layer for layer in reference.layers if layer.weights}
    fresh = []
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in source:
            raise ValueError(f"Layer {layer.name!r} of {model.name} has no ImageNet weights.")
        shapes = [tuple(w.shape) for w in layer.weights]
        if shapes != [tuple(w.shape) for w in source[layer.name].weights]:
            fresh.append(layer.name)
            continue
        layer.set_weights(source[layer.name].get_weights())
    if fresh:
        print(f"kerasnets: {', '.join(fresh)} of {model.name} keep their fresh initialisation "
              f"(shape differs from the ImageNet head).")
    return model


# --- images in, labels out ------------------------------------------------------------


def class_names() -> list[str]:
    path = Path(__file__).with_name("imagenet_classes.txt")
    return path.read_text().splitlines()


def preprocess_images(paths, name, data_format="channels_last") -> np.ndarray:
    """torchvision's evaluation transform of ``name``'s weights, on image files:
    resize the short side (bilinear, PIL), centre crop, scale to [0, 1], normalise."""
    from PIL import Image

    ckpt = checkpoint(name)
    batch = []
    for path in paths:
        with Image.open(path) as image:
            image = image.convert("RGB")
            width, height = image.size
            short, long = (width, height) if width <= height else (height, width)
            new_short, new_long = ckpt.resize_size, int(ckpt.resize_size * long / short)
            size = (new_short, new_long) if width <= height else (new_long, new_short)
            image = image.resize(size, Image.BILINEAR)
            width, height = image.size
            top = int(round((height - ckpt.crop_size) / 2.0))
            left = int(round((width - ckpt.crop_size) / 2.0))
            image = image.crop((left, top, left + ckpt.crop_size, top + ckpt.crop_size))
            batch.append(np.asarray(image, np.float32) / 255.0)
    x = (np.stack(batch) - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD,
                                                                                np.float32)
    return np.transpose(x, (0, 3, 1, 2)) if data_format == "channels_first" else x


def decode_predictions(logits, top=5) -> list[list[tuple[str, float]]]:
    """``[(class name, probability), ...]`` per image, most likely first."""
    logits = np.asarray(logits, np.float64)
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    names = class_names()
    return [[(names[i], float(p[i])) for i in np.argsort(-p)[:top]] for p in probabilities]


def predict_imagenet(name, paths, *, top=5):
    """Top-``top`` ImageNet classes of image files with ``name``'s ImageNet weights."""
    import keras

    import kerasnets

    model = kerasnets.create_model(name, weights="imagenet")
    logits = keras.ops.convert_to_numpy(model.predict(preprocess_images(paths, name),
                                                      verbose=0))
    return decode_predictions(logits, top=top)
