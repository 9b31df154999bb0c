"""CIFAR-10/100 python pickles, from an extracted folder or the original ``.tar.gz``.

The pickles are read with an unpickler that can build numpy arrays and nothing
else: a pickle can run arbitrary code, and files found in a cache or a download
folder must not be able to.
"""

from __future__ import annotations

import codecs
import io
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kerasnets.data.errors import CorruptDatasetError, check_labels

__all__ = ["CIFAR10", "CIFAR100", "CifarFormat", "parse_cifar_batch", "parse_cifar_meta",
           "read_cifar"]

_CIFAR_ROW = 3 * 32 * 32  # each row is 1024 red, then 1024 green, then 1024 blue bytes


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else."""
    _reconstruct = np.zeros(1).__reduce__()[0]  # numpy's _reconstruct, whatever its module
    _ALLOWED = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        # Python 3 pickles of protocol <= 2 spell bytes as _codecs.encode(str, 'latin1').
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def _load_pickle(data: bytes, where: str) -> dict:
    """Unpickle a CIFAR dict; keys are returned as ``str`` (the originals are bytes)."""
    try:
        # encoding="bytes": the originals are Python 2 pickles whose str are raw bytes.
        obj = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # pickle raises many types on garbage input
        raise CorruptDatasetError(f"{where}: not a readable CIFAR pickle ({exc!r})") from exc
    if not isinstance(obj, dict):
        raise CorruptDatasetError(f"{where}: expected a dict, found {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _require(d: dict, key: str, where: str):
    if key not in d:
        raise CorruptDatasetError(
            f"{where}: missing key '{key}' (has: {', '.join(sorted(map(str, d)))})")
    return d[key]


@dataclass(frozen=True)
class CifarFormat:
    """Layout of one CIFAR variant inside its folder / archive.

    Implements the file-format interface (``find_in``, ``find_file``, ``looked_in``,
    ``read``) described in :class:`kerasnets.data.idx.IdxFormat`.
    """
    dirname: str              # folder inside the archive
    tarball: str              # original archive name
    train_members: tuple      # pickles concatenated into the training set
    test_member: str
    meta_member: str
    label_key: str            # key of the labels in each batch
    names_key: str            # key of the class names in the meta pickle
    num_classes: int

    def members(self) -> tuple:
        return (*self.train_members, self.test_member, self.meta_member)

    def find_in(self, spec, base: Path, notes: list[str]) -> Path | None:
        """The extracted folder or the archive under ``base``."""
        # Keras 3 extracts to <cache>/<dir>-target/<dir> and keeps <dir>-target_archive.
        folders = [base, base / self.dirname, base / f"{self.dirname}-target" / self.dirname]
        tars = [base / self.tarball, base / f"{self.dirname}-target_archive"]
        for folder in folders:
            present = [m for m in self.members() if (folder / m).is_file()]
            if len(present) == len(self.members()):
                return folder
            if present:
                missing = sorted(set(self.members()) - set(present))
                notes.append(f"{folder} is incomplete, missing {', '.join(missing)}")
        return next((t for t in tars if t.is_file()), None)

    def find_file(self, spec, path: Path) -> Path | None:
        """``--data-dir`` may name the archive itself."""
        return path if tarfile.is_tarfile(path) else None

    def looked_in(self, spec) -> str:
        return f"{self.dirname}/, {self.tarball}"

    def read(self, spec, path: Path):
        return read_cifar(path, self)


CIFAR10 = CifarFormat(
    "cifar-10-batches-py", "cifar-10-python.tar.gz",
    tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta",
    "labels", "label_names", 10)
CIFAR100 = CifarFormat(
    "cifar-100-python", "cifar-100-python.tar.gz",
    ("train",), "test", "meta", "fine_labels", "fine_label_names", 100)


def parse_cifar_batch(data: bytes, where: str, layout: CifarFormat):
    """Parse one CIFAR batch pickle into NHWC ``uint8`` images and ``int32`` labels."""
    batch = _load_pickle(data, where)
    rows = np.asarray(_require(batch, "data", where))
    labels = np.asarray(_require(batch, layout.label_key, where))
    if rows.ndim != 2 or rows.shape[1] != _CIFAR_ROW:
        raise CorruptDatasetError(
            f"{where}: 'data' has shape {rows.shape}, expected (N, {_CIFAR_ROW})")
    if rows.dtype != np.uint8:
        raise CorruptDatasetError(f"{where}: 'data' has dtype {rows.dtype}, expected uint8")
    if len(labels) != len(rows):
        raise CorruptDatasetError(
            f"{where}: {len(rows)} images but {len(labels)} '{layout.label_key}'")
    y = check_labels(labels, layout.num_classes, where)
    # Rows are channel-planar (CHW); the zoo wants NHWC.
    x = np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return x, y


def parse_cifar_meta(data: bytes, where: str, layout: CifarFormat) -> list[str]:
    """Return the class names from the ``batches.meta`` / ``meta`` pickle."""
    names = list(_require(_load_pickle(data, where), layout.names_key, where))
    if len(names) != layout.num_classes:
        raise CorruptDatasetError(
            f"{where}: {len(names)} '{layout.names_key}', expected {layout.num_classes}")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def _member_reader(location: Path, layout: CifarFormat):
    """Return ``(read(member) -> (bytes, where), close)`` over a folder or a tar archive."""
    if location.is_dir():
        def read(member):
            path = location / member
            return path.read_bytes(), str(path)
        return read, lambda: None

    try:
        tar = tarfile.open(location, "r:*")
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise CorruptDatasetError(f"{location}: not a readable tar archive ({exc})") from exc

    def read(member):
        where = f"{location}:{layout.dirname}/{member}"
        try:
            f = tar.extractfile(f"{layout.dirname}/{member}")
            if f is None:
                raise CorruptDatasetError(f"{where}: not a regular file in the archive")
            return f.read(), where
        except KeyError:
            raise CorruptDatasetError(f"{where}: missing from the archive") from None
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise CorruptDatasetError(f"{where}: archive is truncated or damaged ({exc})") from exc
    return read, tar.close


def read_cifar(location: Path, layout: CifarFormat):
    """Read CIFAR-10/100 from an extracted folder or the original ``.tar.gz``.

    Args:
        location: the ``cifar-10-batches-py`` style folder, or the tar archive.
        layout: :data:`CIFAR10` or :data:`CIFAR100`.

    Returns:
        ``(x_train, y_train, x_test, y_test, class_names)``.
    """
    read, close = _member_reader(Path(location), layout)
    try:
        class_names = parse_cifar_meta(*read(layout.meta_member), layout)
        train = [parse_cifar_batch(*read(m), layout) for m in layout.train_members]
        x_test, y_test = parse_cifar_batch(*read(layout.test_member), layout)
    finally:
        close()
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return x_train, y_train, x_test, y_test, class_names
