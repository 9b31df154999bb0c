"""IDX files (MNIST, Fashion-MNIST), ``.gz`` or uncompressed, and Keras' ``mnist.npz``.

Plain numpy and the standard library (see :mod:`kerasnets.data.datasets` for why).
"""

from __future__ import annotations

import gzip
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerasnets.data.errors import (CorruptDatasetError, DatasetNotFoundError, check_counts,
                                   check_labels)

__all__ = ["IDX_FILES", "IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC", "IdxFormat", "idx_paths",
           "parse_idx", "read_file_bytes", "read_idx", "read_idx_dataset", "read_mnist_npz"]

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (N, rows, cols)
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (N,)
_IDX_UBYTE = 0x08

# Role -> original file name (without ``.gz``), identical for MNIST and Fashion-MNIST.
IDX_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_file_bytes(path: Path) -> bytes:
    """Return the content of ``path``, gunzipped when its name ends in ``.gz``.

    Raises:
        CorruptDatasetError: the gzip stream is truncated or damaged.
    """
    path = Path(path)
    raw = path.read_bytes()
    if path.suffix != ".gz":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:  # truncated / not gzip / bad CRC
        raise CorruptDatasetError(f"{path}: gzip data cannot be decompressed ({exc})") from exc


def parse_idx(data: bytes, where: str, *, expected_magic: int) -> np.ndarray:
    """Parse an IDX buffer of unsigned bytes into an array of the header's shape.

    Args:
        data: the (decompressed) file content.
        where: the file name, for error messages.
        expected_magic: ``IDX_IMAGES_MAGIC`` or ``IDX_LABELS_MAGIC``.

    Raises:
        CorruptDatasetError: bad magic number, dtype code, or length.
    """
    kind = "images" if expected_magic == IDX_IMAGES_MAGIC else "labels"
    if len(data) < 4:
        raise CorruptDatasetError(f"{where}: only {len(data)} bytes, too short for an IDX header")
    magic = int.from_bytes(data[:4], "big")
    zeros, dtype_code, ndim = int.from_bytes(data[:2], "big"), data[2], data[3]
    expected_ndim = expected_magic & 0xFF
    if zeros == 0 and ndim == expected_ndim and dtype_code != _IDX_UBYTE:
        raise CorruptDatasetError(
            f"{where}: unsupported IDX dtype code 0x{dtype_code:02X} "
            f"(expected 0x{_IDX_UBYTE:02X} = unsigned byte)")
    if magic != expected_magic:
        raise CorruptDatasetError(
            f"{where}: bad IDX magic number {magic} (expected {expected_magic} for {kind})")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise CorruptDatasetError(f"{where}: file ends inside the IDX header")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected_len = header_len + int(np.prod(shape, dtype=np.int64))
    if len(data) != expected_len:
        problem = "truncated" if len(data) < expected_len else "has trailing data"
        raise CorruptDatasetError(
            f"{where}: {problem}: header says shape {shape} = {expected_len} bytes, "
            f"file has {len(data)}")
    # frombuffer is a zero-copy view of the bytes; copy() makes it writable and
    # lets the decompressed buffer be freed.
    return np.frombuffer(data, np.uint8, offset=header_len).reshape(shape).copy()


def read_idx(path: Path, *, expected_magic: int) -> np.ndarray:
    """Read one IDX file (``.gz`` or uncompressed). See :func:`parse_idx`."""
    return parse_idx(read_file_bytes(path), str(path), expected_magic=expected_magic)


def idx_paths(directory: Path) -> tuple[dict[str, Path], list[str]]:
    """Find the four IDX files in ``directory`` (``.gz`` preferred over uncompressed).

    Returns:
        ``(paths by role, names of the missing files)``.
    """
    found, missing = {}, []
    for role, name in IDX_FILES.items():
        for candidate in (directory / f"{name}.gz", directory / name):
            if candidate.is_file():
                found[role] = candidate
                break
        else:
            missing.append(f"{name}[.gz]")
    return found, missing


def read_idx_dataset(directory: Path, num_classes: int = 10):
    """Read the four IDX files of MNIST / Fashion-MNIST from ``directory``.

    Returns:
        ``(x_train, y_train, x_test, y_test)``; images ``uint8`` ``(N, H, W, 1)``,
        labels ``int32``.
    """
    paths, missing = idx_paths(Path(directory))
    if missing:
        raise DatasetNotFoundError(f"{directory}: missing {', '.join(missing)}")
    arrays = []
    for split in ("train", "test"):
        img_path, lbl_path = paths[f"{split}_images"], paths[f"{split}_labels"]
        x = read_idx(img_path, expected_magic=IDX_IMAGES_MAGIC)
        y = read_idx(lbl_path, expected_magic=IDX_LABELS_MAGIC)
        check_counts(x, y, str(img_path), str(lbl_path))
        arrays += [x[..., None], check_labels(y, num_classes, str(lbl_path))]
    return tuple(arrays)


def read_mnist_npz(path: Path, num_classes: int = 10):
    """Read Keras' ``mnist.npz`` (keys ``x_train, y_train, x_test, y_test``).

    Returns:
        Same as :func:`read_idx_dataset`.
    """
    try:
        # allow_pickle=False: an .npz from the cache must not be able to run code.
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except KeyError as exc:
        raise CorruptDatasetError(f"{path}: missing array {exc}") from exc
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise CorruptDatasetError(f"{path}: not a readable .npz file ({exc})") from exc
    out = []
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 3:
            raise CorruptDatasetError(
                f"{path}: x_{split} is {x.dtype} {x.shape}, expected uint8 (N, H, W)")
        check_counts(x, y, f"{path} x_{split}", f"y_{split}")
        out += [x[..., None], check_labels(y, num_classes, f"{path} y_{split}")]
    return tuple(out)


@dataclass(frozen=True)
class IdxFormat:
    """The four IDX files in a folder; ``npz`` names the single-file variant also
    accepted (Keras' ``mnist.npz``), None when there is none.

    Implements the file-format interface :mod:`kerasnets.data.locate` and
    :func:`kerasnets.data.datasets.load_dataset` use: ``find_in``, ``find_file``,
    ``looked_in``, ``read``.
    """
    npz: str | None = None

    def find_in(self, spec, base: Path, notes: list[str]) -> Path | None:
        """The folder (or npz file) under ``base`` holding the data set."""
        for sub in spec.subdirs:
            directory = base / sub if sub else base
            paths, missing = idx_paths(directory)
            if not missing:
                return directory
            if self.npz and (directory / self.npz).is_file():
                return directory / self.npz
            if paths:  # a half-copied data set deserves a hint, not silence
                notes.append(f"{directory} has only {len(paths)} of the 4 files, missing "
                             f"{', '.join(missing)}")
        return None

    def find_file(self, spec, path: Path) -> Path | None:
        """``--data-dir`` may name the npz file itself."""
        return path if self.npz and path.suffix == ".npz" else None

    def looked_in(self, spec) -> str:
        """What :meth:`find_in` looks for under a base folder, for the not-found message."""
        places = [f"{s}/" for s in spec.subdirs if s] + ([self.npz] if self.npz else [])
        return ", ".join(places)

    def read(self, spec, path: Path):
        """``(x_train, y_train, x_test, y_test, class_names)`` from what was found."""
        read = read_mnist_npz if path.suffix == ".npz" else read_idx_dataset
        return (*read(path, len(spec.class_names)), list(spec.class_names))
