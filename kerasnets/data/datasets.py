"""``load_dataset``: one entry point for every data set the zoo trains on.

>>> from kerasnets.data.datasets import load_dataset
>>> ds = load_dataset("fashion_mnist", val_fraction=0.1)
>>> ds.x_train.shape, ds.input_shape, ds.num_classes
((54000, 28, 28, 1), (28, 28, 1), 10)

The facts about each data set are in :mod:`kerasnets.data.specs`; the readers are
one module per format (:mod:`~kerasnets.data.idx`, :mod:`~kerasnets.data.cifar`,
:mod:`~kerasnets.data.folders`, :mod:`~kerasnets.data.synthetic`) and
:mod:`~kerasnets.data.locate` finds the files.

Plain numpy, deliberately no keras, tensorflow, torch or jax at import time (nor in
any module above): with ``KERAS_BACKEND=torch`` importing tensorflow before keras
crashes the process, and reading files needs none of them. Keras (and PIL) are
imported lazily, only to decode image folders, resize or download. Nothing is
cached on disk; only a download, when one is needed and allowed, writes into the
Keras cache.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kerasnets.data import folders, locate, synthetic
from kerasnets.data.errors import CorruptDatasetError, DatasetNotFoundError
from kerasnets.data.specs import DATASETS, DatasetSpec, spec_for
from kerasnets.data.splits import carve_val, stratified_split

__all__ = ["DATASETS", "CorruptDatasetError", "Dataset", "DatasetNotFoundError",
           "load_dataset", "resize_images", "stratified_split"]


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A loaded data set: ``uint8`` NHWC images and ``int32`` labels per split.

    ``x_val``/``y_val`` are None when there is no validation split.
    ``source`` is the path the data was read from, or ``"synthetic"``.
    An image folder's ``x_*`` are :class:`~kerasnets.data.streamed.FolderImages`
    (paths, decoded per batch by the pipelines) unless loaded with ``streamed=False``;
    ``skipped_images`` is ``{path: what is wrong}`` of the files left out, growing
    while a streamed folder finds more.
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
    skipped_images: dict = field(default_factory=dict)

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
                 download: bool = True, streamed: bool = True, strict_images: bool = False,
                 image_cache=None) -> Dataset:
    """Load a data set by name (see :data:`DATASETS`).

    Args:
        name: one of :data:`DATASETS` (``-`` is accepted for ``_``).
        data_dir: the directory (or archive) holding the files; when given it is the
            only place looked (a missing or incomplete one raises
            ``DatasetNotFoundError`` naming what is missing); required for ``folder``.
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
        streamed: ``folder`` only: keep file paths and decode per batch in the input
            pipeline (memory bounded); False decodes every image now (small folders).
        strict_images: ``folder`` only: an unusable image file is an error (all of them
            named); by default such files are skipped and listed in ``skipped_images``.
        image_cache: ``folder`` only, streamed: ``"memory"`` or a directory (a
            memory-mapped file) to keep decoded images for later epochs.

    Raises:
        DatasetNotFoundError: the files are nowhere (the message lists where we looked).
        CorruptDatasetError: a file is truncated or malformed.
        ValueError: bad arguments, or folder images of different sizes without image_size.
    """
    spec = spec_for(name)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    size = _as_image_size(image_size)
    skipped = {}

    if spec.format is folders.load_folder:  # splits come from the folders themselves
        splits, class_names, source, skipped = folders.load_folder(
            data_dir, val_fraction, seed, size, streamed=streamed, strict=strict_images,
            cache=image_cache)
    else:
        if spec.format is synthetic.make_synthetic:
            splits, class_names = synthetic.make_synthetic(synthetic_shape, synthetic_classes,
                                                           synthetic_size, seed)
            source = "synthetic"
        else:
            splits, class_names, source = _load_files(spec, data_dir, download)
        if size is not None:
            splits = {s: (resize_images(x, size), y) for s, (x, y) in splits.items()}
        splits = carve_val(splits, val_fraction, seed)

    x_val, y_val = splits.get("val", (None, None))
    return Dataset(spec.name, *splits["train"], x_val, y_val, *splits["test"],
                   class_names=list(class_names), source=source, skipped_images=skipped)


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


def _load_files(spec: DatasetSpec, data_dir, download: bool):
    """Locate (or download) and read one of the file-based data sets.

    Returns:
        ``({"train": (x, y), "test": (x, y)}, class_names, source path)``.
    """
    found, looked = locate.locate(spec, data_dir)
    if found is None and data_dir:  # an explicit folder is the only place looked
        notes = [line[len("note: "):] for line in looked if line.startswith("note: ")]
        raise locate.explicit_dir_error(spec, data_dir, notes)
    if found is None:
        if not download:
            raise locate.not_found_error(spec, looked, "disabled (download=False)")
        try:
            found = locate.download(spec)
        except Exception as exc:  # no network, HTTP error, bad hash, no keras...
            raise locate.not_found_error(
                spec, looked, f"failed: {type(exc).__name__}: {exc}") from exc
    x_train, y_train, x_test, y_test, class_names = spec.format.read(spec, found)
    return {"train": (x_train, y_train), "test": (x_test, y_test)}, class_names, str(found)


def resize_images(x: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Resize an NHWC ``uint8`` batch (1 or 3 channels) to ``(height, width)``, bilinear.

    PIL, as ``keras.utils.load_img`` uses for image folders, so that every data set is
    resized the same way (and without loading a Keras backend).
    """
    from PIL import Image  # lazy: only needed when resizing

    height, width = image_size
    if x.shape[1:3] == (height, width):
        return x
    out = np.empty((len(x), height, width, x.shape[3]), np.uint8)
    for i, img in enumerate(x):
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        out[i] = np.asarray(pil.resize((width, height), Image.BILINEAR)).reshape(out.shape[1:])
    return out
