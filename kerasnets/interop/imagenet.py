"""torchvision's ImageNet weights on any backend, and ImageNet pre/post-processing.

``create_model(name, weights="imagenet")`` takes the checkpoint named in the
family's :class:`~kerasnets.registry.Weights` from where ``torch.hub`` keeps it
(``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``),
downloading it there with ``keras.utils.get_file`` only if it is missing and we
are online, and checks it against the sha256 prefix in its name as torch.hub
does. The first use reads it with torch (``weights_only=True``) and caches its
tensors as a numpy ``.npz`` under ``$KERAS_HOME/kerasnets``; later loads need
neither torch nor the network. The tensors are copied straight into the model
being built (one model, whatever its head or input size).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from kerasnets.interop.torchvision import load_torchvision_weights
from kerasnets.registry import list_models, model_info


class WeightsNotFoundError(FileNotFoundError):
    """torchvision's checkpoint is not cached and could not be downloaded."""


def published_weights(info):
    """The :class:`~kerasnets.registry.Weights` of ``info``, or a clear error."""
    if info.weights is None:
        have = [n for n in list_models() if model_info(n).weights is not None]
        raise ValueError(f"No ImageNet weights for {info.name!r}: torchvision publishes them "
                         f"for {', '.join(have)}.")
    return info.weights


def torch_hub_dir() -> Path:
    """Where ``torch.hub`` caches checkpoints, computed as torch does (no torch needed)."""
    torch_home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "torch")
    return Path(torch_home) / "hub" / "checkpoints"


def converted_dir() -> Path:
    keras_home = os.environ.get("KERAS_HOME") or os.path.expanduser("~/.keras")
    return Path(keras_home) / "kerasnets"


def _download(url, destination: Path):
    """Keras' downloader (progress bar, atomic rename) into torch.hub's cache."""
    from keras.utils import get_file

    get_file(destination.name, origin=url, cache_dir=str(destination.parent), cache_subdir="")


def file_sha256(path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def torchvision_checkpoint(info, *, download=True) -> Path:
    """The path of torchvision's checkpoint for ``info``, downloaded if allowed, and
    checked against the sha256 prefix in its name."""
    weights = published_weights(info)
    path = torch_hub_dir() / weights.filename
    if not path.exists():
        error = "download disabled"
        if download:
            try:
                _download(weights.url, path)
            except Exception as failure:  # get_file raises a bare Exception offline
                error = f"download failed: {failure}"
        if not path.exists():
            raise WeightsNotFoundError(
                f"torchvision's ImageNet checkpoint for {info.name} is not cached: looked "
                f"for {path} (torch.hub's cache; set TORCH_HOME to use another) and "
                f"{error}. Put {weights.url} there, e.g. on a machine with internet: "
                f"python -c \"import torchvision; torchvision.models.get_model("
                f"'{info.name}', weights='DEFAULT')\".")
    digest = file_sha256(path)
    if not digest.startswith(weights.sha256_prefix):
        raise ValueError(f"{path} is damaged or not torchvision's file: its sha256 {digest} "
                         f"does not start with {weights.sha256_prefix}. Delete it and "
                         f"download it again.")
    return path


def _read_state_dict(path) -> dict:
    try:
        import torch
    except ImportError:
        raise ImportError(f"Converting {path} needs PyTorch once (pip install torch); the "
                          f"converted .npz is then cached and loads without it.") from None
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {key: value.detach().cpu().numpy() for key, value in state.items()}


def imagenet_state_dict(info, *, download=True) -> dict:
    """torchvision's tensors for ``info`` as numpy arrays, from the ``.npz`` cache when
    there (written on first use, atomically)."""
    weights = published_weights(info)
    cached = converted_dir() / f"{info.name}-{weights.sha256_prefix}.npz"
    if not cached.exists():
        state = _read_state_dict(torchvision_checkpoint(info, download=download))
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.stem}.tmp.npz")
        np.savez(tmp, **state)
        os.replace(tmp, cached)
    with np.load(cached, allow_pickle=False) as arrays:
        return dict(arrays)


def load_imagenet_weights(model, info, *, download=True):
    """Load ImageNet weights into ``model`` (any input size, head or no head).

    A classifier whose shape differs (another ``num_classes``) keeps its fresh
    initialisation, as for fine-tuning; every other layer must match.
    """
    fresh = load_torchvision_weights(model, imagenet_state_dict(info, download=download),
                                     partial=True)
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

    from kerasnets.data.folders import open_image  # one clear error per bad file

    ckpt = published_weights(model_info(name))
    batch = []
    for path in paths:
        image = open_image(path, "rgb")
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
    x = (np.stack(batch) - np.asarray(ckpt.mean, np.float32)) / np.asarray(ckpt.std, np.float32)
    return np.transpose(x, (0, 3, 1, 2)) if data_format == "channels_first" else x


def decode_predictions(logits, top=5) -> list[list[tuple[str, float]]]:
    """``[(class name, probability), ...]`` per image, most likely first."""
    logits = np.asarray(logits, np.float64)
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    names = class_names()
    return [[(names[i], float(p[i])) for i in np.argsort(-p)[:top]] for p in probabilities]


def predict_imagenet(model, paths, *, top=5):
    """Top-``top`` ImageNet classes of image files, by ``model`` (built with
    ``weights="imagenet"``, e.g. ``create_model("resnet50", weights="imagenet")``)."""
    import keras

    logits = keras.ops.convert_to_numpy(model.predict(preprocess_images(paths, model.name),
                                                      verbose=0))
    return decode_predictions(logits, top=top)
