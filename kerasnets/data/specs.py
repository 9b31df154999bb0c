"""One declarative spec per data set: every fact about it that the rest of kerasnets uses.

The file format (``format``) is the object that reads the files, so nothing
dispatches on a name: :mod:`kerasnets.data.locate` asks it what a folder must hold,
:func:`kerasnets.data.datasets.load_dataset` asks it to read what was found.
Adding a data set in an existing format is one entry in :data:`DATASETS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kerasnets.data import cifar, folders, idx, synthetic

__all__ = ["DATASETS", "DataFile", "DatasetSpec", "native_size", "spec_for"]

_KERAS_BASE = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
# Fashion-MNIST from its authors, whose files the published sha256 below are of (Keras'
# mirror serves copies with no published hash).
_ZALANDO_BASE = ("https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/"
                 "data/fashion/")
_TORONTO_BASE = "https://www.cs.toronto.edu/~kriz/"

# The size a ``folder`` model is built for when no image_size is given.
DEFAULT_FOLDER_SIZE = 224


@dataclass(frozen=True)
class DataFile:
    """One file to download: its name, where from, and the sha256 it must have."""
    name: str
    url: str
    sha256: str


@dataclass(frozen=True)
class DatasetSpec:
    """Everything known about one data set.

    ``format`` reads the files: an :class:`~kerasnets.data.idx.IdxFormat` or a
    :class:`~kerasnets.data.cifar.CifarFormat` (each has ``find_in``, ``find_file``,
    ``looked_in`` and ``read``), or, for the two data sets that are not files to be
    found, :func:`kerasnets.data.folders.load_folder` or
    :func:`kerasnets.data.synthetic.make_synthetic`.
    """
    name: str
    description: str                  # one line, the CLI's help text
    format: Any
    files: tuple[DataFile, ...] = ()  # what download() fetches, each hash-checked
    class_names: tuple[str, ...] | None = None  # None: read from the files / folders
    native_size: int | None = None    # pixels (square); None: whatever the images are
    channels: int = 3
    how_to_get: tuple[str, ...] = ()  # lines of the not-found error
    system_dirs: tuple[str, ...] = ()  # where distributions install it
    subdirs: tuple[str, ...] = ("",)  # looked into under every base ("" = the base)
    cache_subdir: str = "datasets"    # where download() puts files, under KERAS_HOME
    flip_preserves_class: bool = True  # False: a mirrored image is another class

    def __str__(self):  # what a CLI help line listing the data sets shows
        return self.description


# sha256 of the files as published by Zalando (26,421,880 bytes for train images; the
# same files as their README's MD5 table). Debian's dataset-fashion-mnist package strips
# the name and date from each gzip header, so its copies hash differently although they
# decompress to the same bytes: local files are validated by parsing, not by hash.
_FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
_MNIST_NPZ = DataFile(
    "mnist.npz", f"{_KERAS_BASE}mnist.npz",
    "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1")


def _cifar(name: str, description: str, layout: cifar.CifarFormat, sha256: str):
    """A CIFAR spec: the official archive (``sha256`` as Keras checks it), 32x32 RGB."""
    return DatasetSpec(
        name=name, description=description, format=layout,
        files=(DataFile(layout.tarball, f"{_TORONTO_BASE}{layout.tarball}", sha256),),
        native_size=32,
        how_to_get=(f"download {layout.tarball} from {_TORONTO_BASE}cifar.html "
                    "into DIR and pass --data-dir DIR",))


_SPECS = (
    DatasetSpec(
        name="fashion_mnist",
        description="Fashion-MNIST: 60k+10k 28x28 grayscale clothing images, 10 classes "
                    "(original IDX .gz files)",
        format=idx.IdxFormat(),
        files=tuple(DataFile(name, f"{_ZALANDO_BASE}{name}", sha256)
                    for name, sha256 in _FASHION_MNIST_SHA256.items()),
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        native_size=28, channels=1,
        how_to_get=(
            "sudo apt-get install dataset-fashion-mnist   (Debian/Ubuntu; installs into "
            "/usr/share/datasets/fashion-mnist)",
            "or download the four *-ubyte.gz files from "
            "https://github.com/zalandoresearch/fashion-mnist (data/fashion/) "
            "into DIR and pass --data-dir DIR"),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        subdirs=("", "fashion-mnist", "fashion_mnist"),
        cache_subdir="datasets/fashion-mnist"),
    DatasetSpec(
        name="mnist",
        description="MNIST: 60k+10k 28x28 grayscale handwritten digits, 10 classes "
                    "(IDX files or Keras' mnist.npz)",
        format=idx.IdxFormat(npz=_MNIST_NPZ.name),
        files=(_MNIST_NPZ,),
        class_names=tuple(str(i) for i in range(10)),
        native_size=28, channels=1,
        how_to_get=(f"download {_MNIST_NPZ.url} (or the four MNIST *-ubyte.gz IDX files) "
                    "into DIR and pass --data-dir DIR",),
        system_dirs=("/usr/share/datasets/mnist",),
        subdirs=("", "mnist"),
        flip_preserves_class=False),  # a mirrored digit is another digit
    _cifar("cifar10", "CIFAR-10: 50k+10k 32x32 colour images, 10 classes "
                      "(python pickle batches)", cifar.CIFAR10,
           "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
    _cifar("cifar100", "CIFAR-100: 50k+10k 32x32 colour images, 100 fine classes "
                       "(python pickle batches)", cifar.CIFAR100,
           "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"),
    DatasetSpec(
        name="folder",
        description="your own images, streamed from disk: --data-dir with one sub-folder "
                    "per class, or a CSV file of path,label rows; optionally "
                    "inside train/ and val/ or test/",
        format=folders.load_folder),
    DatasetSpec(
        name="synthetic",
        description="random but learnable images for smoke tests (no files needed)",
        format=synthetic.make_synthetic,
        native_size=32),  # the default synthetic_shape
)

DATASETS: dict[str, DatasetSpec] = {spec.name: spec for spec in _SPECS}


def spec_for(name: str) -> DatasetSpec:
    """The spec of data set ``name`` (``-`` is accepted for ``_``, case is ignored).

    Raises:
        ValueError: unknown name; the message lists the data sets.
    """
    key = name.strip().lower().replace("-", "_")
    if key not in DATASETS:
        known = "\n".join(f"  {k}: {v.description}" for k, v in DATASETS.items())
        raise ValueError(f"unknown data set {name!r}; available:\n{known}")
    return DATASETS[key]


def native_size(name: str, image_size=None) -> int:
    """The square size, in pixels, that data set ``name`` is trained at by default.

    The spec's native size; for ``folder`` (whose images can be any size) the
    explicit ``image_size`` (an int, or ``(height, width)``: the larger side) or 224.
    """
    size = spec_for(name).native_size
    if size is not None:
        return size
    if not image_size:
        return DEFAULT_FOLDER_SIZE
    return int(image_size if isinstance(image_size, int) else max(image_size))
