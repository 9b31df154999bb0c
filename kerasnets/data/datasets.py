"""``load_dataset``: one entry point for every data set the zoo trains on.

>>> from kerasnets.data.datasets import load_dataset
>>> ds = load_dataset("fashion_mnist", val_fraction=0.1)
>>> ds.x_train.shape, ds.input_shape, ds.num_classes
((54000, 28, 28, 1), (28, 28, 1), 10)

Pure numpy (see :mod:`kerasnets.data.readers` for why no deep-learning framework
is imported here). Nothing is cached on disk; only a download, when one is
needed and allowed, writes into the Keras cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerasnets.data import readers
from kerasnets.data.readers import CorruptDatasetError, DatasetNotFoundError

__all__ = ["DATASETS", "CorruptDatasetError", "Dataset", "DatasetNotFoundError",
           "load_dataset", "make_synthetic", "stratified_split"]

DATASETS = {
    "fashion_mnist": "Fashion-MNIST: 60k+10k 28x28 grayscale clothing images, 10 classes "
                     "(original IDX .gz files)",
    "mnist": "MNIST: 60k+10k 28x28 grayscale handwritten digits, 10 classes "
             "(IDX files or Keras' mnist.npz)",
    "cifar10": "CIFAR-10: 50k+10k 32x32 colour images, 10 classes (python pickle batches)",
    "cifar100": "CIFAR-100: 50k+10k 32x32 colour images, 100 fine classes "
                "(python pickle batches)",
    "folder": "your own images: --data-dir with one sub-folder per class, optionally "
              "inside train/ and val/ or test/",
    "synthetic": "random but learnable images for smoke tests (no files needed)",
}

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
MNIST_CLASSES = [str(i) for i in range(10)]

# Held-out fraction for a ``folder`` without split folders when val_fraction is 0:
# a test split is needed, and an empty one is never what was meant.
DEFAULT_FOLDER_TEST_FRACTION = 0.2


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A loaded data set: ``uint8`` NHWC images and ``int32`` labels per split.

    ``x_val``/``y_val`` are None when there is no validation split.
    ``source`` is the path the data was read from, or ``"synthetic"``.
    """
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray | None
    y_val: np.ndarray | None
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list
    source: str

    def __post_init__(self):
        # The trainer relies on these invariants; check them once, here.
        for split in ("train", "val", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if split == "val" and x is None and y is None:
                continue
            if x is None or y is None:
                raise ValueError(f"x_{split} and y_{split} must both be set or both None")
            if x.dtype != np.uint8 or x.ndim != 4:
                raise ValueError(f"x_{split} must be uint8 NHWC, got {x.dtype} {x.shape}")
            if y.dtype != np.int32 or y.shape != (len(x),):
                raise ValueError(f"y_{split} must be int32 of shape ({len(x)},), "
                                 f"got {y.dtype} {y.shape}")
            if x.shape[1:] != self.x_train.shape[1:]:
                raise ValueError(f"x_{split} images are {x.shape[1:]}, "
                                 f"x_train's are {self.x_train.shape[1:]}")

    @property
    def input_shape(self) -> tuple:
        """``(height, width, channels)`` of every image."""
        return tuple(int(d) for d in self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __repr__(self):
        val = 0 if self.x_val is None else len(self.x_val)
        return (f"Dataset({self.name!r}, train={len(self.x_train)}, val={val}, "
                f"test={len(self.x_test)}, input_shape={self.input_shape}, "
                f"num_classes={self.num_classes}, source={self.source!r})")


def load_dataset(name: str = "fashion_mnist", *, data_dir=None, val_fraction: float = 0.0,
                 seed: int = 0, image_size=None, synthetic_shape=(32, 32, 3),
                 synthetic_classes: int = 10, synthetic_size=(512, 128),
                 download: bool = True) -> Dataset:
    """Load a data set by name (see :data:`DATASETS`).

    Args:
        name: one of :data:`DATASETS` (``-`` is accepted for ``_``).
        data_dir: directory to look in first; required for ``folder``.
        val_fraction: fraction of the training set carved off, stratified and
            seeded, as the validation split. For a ``folder`` without split
            sub-folders it is instead the held-out *test* fraction (0 means 0.2).
        seed: seed of every random split and of ``synthetic``.
        image_size: ``(height, width)`` or an int; resize every image to it.
            Needed for folders whose images differ in size.
        synthetic_shape: ``(height, width, channels)`` of ``synthetic`` images.
        synthetic_classes: number of ``synthetic`` classes.
        synthetic_size: ``(n_train, n_test)`` of ``synthetic``.
        download: fetch through ``keras.utils.get_file`` when found nowhere.

    Raises:
        DatasetNotFoundError: the files are nowhere (the message lists where we looked).
        CorruptDatasetError: a file is truncated or malformed.
        ValueError: bad arguments, or folder images of different sizes without image_size.
    """
    key = name.strip().lower().replace("-", "_")
    if key not in DATASETS:
        known = "\n".join(f"  {k}: {v}" for k, v in DATASETS.items())
        raise ValueError(f"unknown data set {name!r}; available:\n{known}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    size = _as_image_size(image_size)

    if key == "folder":
        splits, class_names, source = _load_folder(data_dir, val_fraction, seed, size)
    else:
        if key == "synthetic":
            splits, class_names = make_synthetic(synthetic_shape, synthetic_classes,
                                                 synthetic_size, seed)
            source = "synthetic"
        else:
            splits, class_names, source = _load_files(key, data_dir, download)
        if size is not None:
            splits = {s: (readers.resize_images(x, size), y) for s, (x, y) in splits.items()}
        splits = _carve_val(splits, val_fraction, seed)

    x_val, y_val = splits.get("val", (None, None))
    return Dataset(key, *splits["train"], x_val, y_val, *splits["test"],
                   class_names=list(class_names), source=source)


def _as_image_size(image_size):
    """Normalise ``image_size`` to ``(height, width)`` or None."""
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)):
        image_size = (image_size, image_size)
    size = tuple(image_size)
    if len(size) != 2 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in size):
        raise ValueError(f"image_size must be an int or (height, width), got {image_size!r}")
    return int(size[0]), int(size[1])


# --------------------------------------------------------------------------- splitting

def _held_count(n: int, fraction: float) -> int:
    """How many of a class's ``n`` samples to hold out."""
    if fraction <= 0 or n < 2:
        return 0
    # Every class with >= 2 samples gets at least one held out and keeps one.
    return min(max(int(round(n * fraction)), 1), n - 1)


def stratified_split(labels: np.ndarray, fraction: float, seed: int):
    """Split indices per class, seeded: about ``fraction`` of each class is held out.

    Args:
        labels: 1-D class labels.
        fraction: share of each class to hold out.
        seed: the same seed gives the same split.

    Returns:
        ``(kept_indices, held_indices)``, each sorted (original order preserved).
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = [rng.permutation(np.flatnonzero(labels == c))[:_held_count(int(n), fraction)]
            for c, n in zip(*np.unique(labels, return_counts=True))]
    held = np.sort(np.concatenate(held)) if held else np.empty(0, np.int64)
    keep = np.ones(len(labels), bool)
    keep[held] = False
    return np.flatnonzero(keep), held


def _take(seq, idx):
    """Index an array or a list (of paths) with an index array."""
    return seq[idx] if isinstance(seq, np.ndarray) else [seq[i] for i in idx]


def _carve_val(splits: dict, fraction: float, seed: int) -> dict:
    """Move a stratified ``fraction`` of the training split into ``"val"``."""
    if fraction <= 0:
        return splits
    if "val" in splits:
        raise ValueError("the data already has a validation split (a val/ folder); "
                         "val_fraction must be 0")
    x, y = splits["train"]
    keep, held = stratified_split(y, fraction, seed)
    return {**splits, "train": (_take(x, keep), y[keep]), "val": (_take(x, held), y[held])}


# --------------------------------------------------------------------------- sources

def _load_files(name: str, data_dir, download: bool):
    """Locate (or download) and read one of the file-based data sets."""
    found, looked = readers.locate(name, data_dir)
    if found is None:
        if not download:
            raise readers.not_found_error(name, looked, "disabled (download=False)")
        try:
            found = readers.download(name)
        except Exception as exc:  # no network, HTTP error, bad hash, no keras...
            raise readers.not_found_error(
                name, looked, f"failed: {type(exc).__name__}: {exc}") from exc
    return (*_read_found(name, found), str(found.path))


def _read_found(name: str, found: readers.Found):
    """Read what :func:`readers.locate` found into ``(splits, class_names)``."""
    if found.kind in ("cifar_dir", "cifar_tar"):
        x_tr, y_tr, x_te, y_te, names = readers.read_cifar(found.path, readers.CIFAR_SPECS[name])
    else:
        read = readers.read_mnist_npz if found.kind == "npz" else readers.read_idx_dataset
        x_tr, y_tr, x_te, y_te = read(found.path)
        names = FASHION_MNIST_CLASSES if name == "fashion_mnist" else MNIST_CLASSES
    return {"train": (x_tr, y_tr), "test": (x_te, y_te)}, names


def _load_folder(data_dir, val_fraction: float, seed: int, image_size):
    """Read a class-per-sub-folder image tree; splits are decided before decoding."""
    if data_dir is None:
        raise ValueError("the 'folder' data set needs data_dir (--data-dir): a directory "
                         "with one sub-folder of images per class")
    class_names, splits = readers.scan_image_folder(data_dir)
    if "all" in splits:
        paths, labels = splits.pop("all")
        keep, held = stratified_split(labels, val_fraction or DEFAULT_FOLDER_TEST_FRACTION,
                                      seed)
        splits = {"train": (_take(paths, keep), labels[keep]),
                  "test": (_take(paths, held), labels[held])}
    else:
        if "test" not in splits:  # train/ + val/ only: val/ is what we evaluate on
            splits["test"] = splits.pop("val")
        splits = _carve_val(splits, val_fraction, seed)
    # One size for every split, so a model fits them all.
    all_paths = [p for paths, _ in splits.values() for p in paths]
    size = image_size or readers.common_image_size(all_paths)
    decoded = {s: (readers.read_images(paths, size), labels)
               for s, (paths, labels) in splits.items()}
    return decoded, class_names, str(Path(data_dir))


def make_synthetic(shape=(32, 32, 3), num_classes: int = 10, sizes=(512, 128), seed: int = 0):
    """Random images whose class is learnable: a per-class pattern plus noise.

    Each class gets its own coarse 4x4 brightness pattern (per channel), upsampled
    to the image size; samples add Gaussian noise. Convolutions plus pooling pick
    this up within a few steps, so a smoke run shows the loss going down.

    Args:
        shape: ``(height, width, channels)``.
        num_classes: number of classes (>= 2).
        sizes: ``(n_train, n_test)``.
        seed: the same seed gives the same data.

    Returns:
        ``({"train": (x, y), "test": (x, y)}, class_names)``.
    """
    shape, sizes = tuple(shape), tuple(sizes)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"synthetic_shape must be (height, width, channels), got {shape}")
    if num_classes < 2:
        raise ValueError(f"synthetic_classes must be >= 2, got {num_classes}")
    if len(sizes) != 2 or sizes[0] < 1 or sizes[1] < 0:
        raise ValueError(f"synthetic_size must be (n_train >= 1, n_test >= 0), got {sizes}")
    height, width, channels = shape
    rng = np.random.default_rng(seed)
    grid = rng.uniform(30, 225, (num_classes, 4, 4, channels)).astype(np.float32)
    rows, cols = np.arange(height) * 4 // height, np.arange(width) * 4 // width
    patterns = grid[:, rows][:, :, cols]  # (classes, height, width, channels)

    def draw(n):
        y = rng.permutation(np.arange(n) % num_classes).astype(np.int32)  # balanced
        noise = rng.standard_normal((n, *shape), dtype=np.float32) * 40
        return np.clip(patterns[y] + noise, 0, 255).round().astype(np.uint8), y

    splits = {"train": draw(sizes[0]), "test": draw(sizes[1])}
    return splits, [f"class_{i}" for i in range(num_classes)]
