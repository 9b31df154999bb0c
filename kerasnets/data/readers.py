"""Readers for the on-disk formats of the data sets, and where to find them.

Everything here is plain numpy + the standard library (PIL is imported lazily,
only when images have to be decoded or resized). Deliberately no keras,
tensorflow, torch or jax at import time: with ``KERAS_BACKEND=torch`` importing
tensorflow before keras crashes the process, and reading files needs none of
them. Keras is imported only inside :func:`download`, as a last resort.

Formats:

* IDX (MNIST, Fashion-MNIST): ``.gz`` or uncompressed, plus Keras' ``mnist.npz``.
* CIFAR python pickles: an extracted ``cifar-10-batches-py`` / ``cifar-100-python``
  folder or the original ``.tar.gz`` (read straight from the archive).
* A folder of images with one sub-folder per class.

Every reader validates what it reads and raises :class:`CorruptDatasetError`
naming the file and the problem, rather than returning garbage.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "CIFAR_SPECS", "CorruptDatasetError", "DatasetNotFoundError", "Found",
    "IMAGE_EXTENSIONS", "IDX_FILES", "SYSTEM_DATA_DIRS", "common_image_size", "download",
    "keras_cache_dir", "not_found_error",
    "locate", "read_cifar", "read_idx", "read_idx_dataset", "read_images",
    "read_mnist_npz", "resize_images", "scan_image_folder",
]


class DatasetNotFoundError(FileNotFoundError):
    """The data set's files are nowhere to be found (the message says where we looked)."""


class CorruptDatasetError(ValueError):
    """A data file exists but is truncated, malformed or inconsistent."""


# --------------------------------------------------------------------------- IDX

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

    Args:
        path: the file to read.

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


def _check_labels(y: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    """Return ``y`` as int32 after checking every label is in ``[0, num_classes)``."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise CorruptDatasetError(f"{where}: labels have shape {y.shape}, expected 1-D")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise CorruptDatasetError(
            f"{where}: labels outside the class range 0..{num_classes - 1} "
            f"(found {int(y.min())}..{int(y.max())})")
    return y.astype(np.int32)


def _check_counts(x: np.ndarray, y: np.ndarray, x_where: str, y_where: str) -> None:
    if len(x) != len(y):
        raise CorruptDatasetError(
            f"{x_where} has {len(x)} images but {y_where} has {len(y)} labels")


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
        _check_counts(x, y, str(img_path), str(lbl_path))
        arrays += [x[..., None], _check_labels(y, num_classes, str(lbl_path))]
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
        _check_counts(x, y, f"{path} x_{split}", f"y_{split}")
        out += [x[..., None], _check_labels(y, num_classes, f"{path} y_{split}")]
    return tuple(out)


# --------------------------------------------------------------------------- CIFAR

@dataclass(frozen=True)
class CifarSpec:
    """Layout of one CIFAR variant inside its folder / archive."""
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


CIFAR_SPECS = {
    "cifar10": CifarSpec(
        "cifar-10-batches-py", "cifar-10-python.tar.gz",
        tuple(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta",
        "labels", "label_names", 10),
    "cifar100": CifarSpec(
        "cifar-100-python", "cifar-100-python.tar.gz",
        ("train",), "test", "meta", "fine_labels", "fine_label_names", 100),
}

_CIFAR_ROW = 3 * 32 * 32  # each row is 1024 red, then 1024 green, then 1024 blue bytes


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and nothing else.

    A pickle can run arbitrary code; data files found in a cache or a download
    folder must not be able to. The CIFAR batches need only these globals.
    """
    _reconstruct = np.zeros(1).__reduce__()[0]  # numpy's _reconstruct, whatever its module
    _ALLOWED = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        # Python 3 pickles of protocol <= 2 spell bytes as _codecs.encode(str, 'latin1').
        ("_codecs", "encode"): __import__("codecs").encode,
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


def parse_cifar_batch(data: bytes, where: str, spec: CifarSpec):
    """Parse one CIFAR batch pickle into NHWC ``uint8`` images and ``int32`` labels."""
    batch = _load_pickle(data, where)
    rows = np.asarray(_require(batch, "data", where))
    labels = np.asarray(_require(batch, spec.label_key, where))
    if rows.ndim != 2 or rows.shape[1] != _CIFAR_ROW:
        raise CorruptDatasetError(
            f"{where}: 'data' has shape {rows.shape}, expected (N, {_CIFAR_ROW})")
    if rows.dtype != np.uint8:
        raise CorruptDatasetError(f"{where}: 'data' has dtype {rows.dtype}, expected uint8")
    if len(labels) != len(rows):
        raise CorruptDatasetError(
            f"{where}: {len(rows)} images but {len(labels)} '{spec.label_key}'")
    y = _check_labels(labels, spec.num_classes, where)
    # Rows are channel-planar (CHW); the zoo wants NHWC.
    x = np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return x, y


def parse_cifar_meta(data: bytes, where: str, spec: CifarSpec) -> list[str]:
    """Return the class names from the ``batches.meta`` / ``meta`` pickle."""
    names = list(_require(_load_pickle(data, where), spec.names_key, where))
    if len(names) != spec.num_classes:
        raise CorruptDatasetError(
            f"{where}: {len(names)} '{spec.names_key}', expected {spec.num_classes}")
    return [n.decode("utf-8") if isinstance(n, bytes) else str(n) for n in names]


def _member_reader(location: Path, spec: CifarSpec):
    """Return ``read(member) -> (bytes, where)`` over a folder or a tar archive."""
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
        where = f"{location}:{spec.dirname}/{member}"
        try:
            f = tar.extractfile(f"{spec.dirname}/{member}")
            if f is None:
                raise CorruptDatasetError(f"{where}: not a regular file in the archive")
            return f.read(), where
        except KeyError:
            raise CorruptDatasetError(f"{where}: missing from the archive") from None
        except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
            raise CorruptDatasetError(f"{where}: archive is truncated or damaged ({exc})") from exc
    return read, tar.close


def read_cifar(location: Path, spec: CifarSpec):
    """Read CIFAR-10/100 from an extracted folder or the original ``.tar.gz``.

    Args:
        location: the ``cifar-10-batches-py`` style folder, or the tar archive.
        spec: one of :data:`CIFAR_SPECS`.

    Returns:
        ``(x_train, y_train, x_test, y_test, class_names)``.
    """
    read, close = _member_reader(Path(location), spec)
    try:
        class_names = parse_cifar_meta(*read(spec.meta_member), spec)
        train = [parse_cifar_batch(*read(m), spec) for m in spec.train_members]
        x_test, y_test = parse_cifar_batch(*read(spec.test_member), spec)
    finally:
        close()
    x_train = np.concatenate([x for x, _ in train])
    y_train = np.concatenate([y for _, y in train])
    return x_train, y_train, x_test, y_test, class_names


# --------------------------------------------------------------------------- image folders

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp"})
SPLIT_DIRS = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _class_images(class_dir: Path) -> list[Path]:
    """All image files under ``class_dir`` (recursively), sorted, hidden ones skipped."""
    found = []
    for root, dirs, files in os.walk(class_dir):
        dirs[:] = sorted(d for d in dirs if _visible(d))  # prune hidden dirs in place
        found += [Path(root) / f for f in files
                  if _visible(f) and Path(f).suffix.lower() in IMAGE_EXTENSIONS]
    return sorted(found)


def _class_dirs(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_dir() and _visible(p.name))


def _scan_split(directory: Path, class_names: list[str]):
    """List ``(paths, labels)`` of one split whose sub-folders are among ``class_names``."""
    paths, labels = [], []
    for class_dir in _class_dirs(directory):
        if class_dir.name not in class_names:
            raise ValueError(
                f"{class_dir}: class '{class_dir.name}' is not among the training classes "
                f"{class_names}")
        images = _class_images(class_dir)
        paths += images
        labels += [class_names.index(class_dir.name)] * len(images)
    return paths, np.asarray(labels, np.int32)


def _find_split_dirs(root: Path) -> dict[str, Path]:
    found = {}
    for split, names in SPLIT_DIRS.items():
        for name in names:
            if (root / name).is_dir():
                found[split] = root / name
                break
    return found


def scan_image_folder(root: Path):
    """List the images of a class-per-sub-folder tree without decoding them.

    If ``root`` has ``train/`` plus ``val/`` (or ``validation/``) and/or ``test/``,
    each is a split; a lone ``train/`` is treated as the whole pool; otherwise
    ``root`` itself holds the class folders.

    Returns:
        ``(class_names, {split: (paths, labels)})`` where split is ``"all"`` when the
        tree has no split folders.

    Raises:
        DatasetNotFoundError: no folder, no class sub-folders, or no images.
        ValueError: val/ or test/ without train/, or a class missing from train/.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder {root} does not exist")
    split_dirs = _find_split_dirs(root)
    if split_dirs and "train" not in split_dirs:
        raise ValueError(f"{root} has {', '.join(p.name for p in split_dirs.values())}/ "
                         f"but no train/ folder")
    if "train" in split_dirs and len(split_dirs) == 1:
        root, split_dirs = split_dirs["train"], {}
    pool = split_dirs.get("train", root)
    class_names = [d.name for d in _class_dirs(pool)]
    if not class_names:
        raise DatasetNotFoundError(
            f"{pool}: no class sub-folders; expected one sub-folder per class, e.g. "
            f"{pool}/cat/*.jpg and {pool}/dog/*.jpg")
    splits = {s: _scan_split(d, class_names) for s, d in split_dirs.items()} or {
        "all": _scan_split(root, class_names)}
    if not any(len(paths) for paths, _ in splits.values()):
        raise DatasetNotFoundError(
            f"{root}: no images found in the class sub-folders {class_names} "
            f"(looked for {', '.join(sorted(IMAGE_EXTENSIONS))}; hidden files are skipped)")
    return class_names, splits


def common_image_size(paths: list[Path]) -> tuple[int, int]:
    """The single (height, width) shared by all images, read from headers only."""
    from PIL import Image  # lazy: PIL is only needed for image folders

    sizes = {}
    for path in paths:
        with _open_image(path, Image) as img:
            sizes.setdefault(img.size, path)
    if len(sizes) > 1:
        examples = "; ".join(f"{p} is {h}x{w}" for (w, h), p in list(sizes.items())[:3])
        raise ValueError(
            f"the images have {len(sizes)} different sizes (height x width: {examples}); "
            f"pass image_size=(height, width) (--image-size) to resize them all")
    (width, height), = sizes
    return height, width


def _open_image(path: Path, image_module):
    try:
        return image_module.open(path)
    except (OSError, SyntaxError, ValueError) as exc:  # UnidentifiedImageError is an OSError
        raise CorruptDatasetError(f"{path}: cannot be read as an image ({exc})") from exc


def read_images(paths: list[Path], image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode image files to one ``uint8`` RGB array ``(N, H, W, 3)``.

    Args:
        paths: the image files.
        image_size: ``(height, width)`` to resize every image to; ``None`` keeps the
            size, which must then be the same for all images.

    Raises:
        CorruptDatasetError: a file cannot be decoded.
        ValueError: sizes differ and ``image_size`` is None.
    """
    from PIL import Image  # lazy: PIL is only needed for image folders

    height, width = image_size or (common_image_size(paths) if paths else (1, 1))
    out = np.empty((len(paths), height, width, 3), np.uint8)
    for i, path in enumerate(paths):
        with _open_image(path, Image) as img:
            try:
                rgb = img.convert("RGB")  # forces the decode: truncated files fail here
            except (OSError, SyntaxError, ValueError) as exc:
                raise CorruptDatasetError(f"{path}: cannot be decoded ({exc})") from exc
        if rgb.size != (width, height):
            rgb = rgb.resize((width, height), Image.BILINEAR)
        out[i] = np.asarray(rgb)
    return out


def resize_images(x: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Resize an NHWC ``uint8`` batch (1 or 3 channels) to ``(height, width)`` with PIL."""
    from PIL import Image  # lazy

    height, width = image_size
    if x.shape[1:3] == (height, width):
        return x
    out = np.empty((len(x), height, width, x.shape[3]), np.uint8)
    for i, img in enumerate(x):
        pil = Image.fromarray(img[..., 0] if img.shape[-1] == 1 else img)
        out[i] = np.asarray(pil.resize((width, height), Image.BILINEAR)).reshape(out.shape[1:])
    return out


# --------------------------------------------------------------------------- locating files

# Directories where distributions install the data sets (Debian: dataset-fashion-mnist).
# A module constant so that tests (and unusual systems) can point it elsewhere.
SYSTEM_DATA_DIRS = {
    "fashion_mnist": ["/usr/share/datasets/fashion-mnist"],
    "mnist": ["/usr/share/datasets/mnist"],
}

# Conventional sub-folders looked into under every base directory ("" = the base itself).
_SUBDIRS = {
    "fashion_mnist": ("", "fashion-mnist", "fashion_mnist"),
    "mnist": ("", "mnist"),
}

_KERAS_BASE = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
_MNIST_NPZ_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
_CIFAR_URLS = {  # official archives and the sha256 Keras checks them against
    "cifar10": ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),
    "cifar100": ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                 "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"),
}

_HOW_TO_GET = {
    "fashion_mnist": [
        "sudo apt-get install dataset-fashion-mnist   (Debian/Ubuntu; installs into "
        "/usr/share/datasets/fashion-mnist)",
        "or download the four *-ubyte.gz files from "
        "https://github.com/zalandoresearch/fashion-mnist (data/fashion/) "
        "into DIR and pass --data-dir DIR",
    ],
    "mnist": [
        f"download {_KERAS_BASE}mnist.npz (or the four MNIST *-ubyte.gz IDX files) "
        "into DIR and pass --data-dir DIR",
    ],
    "cifar10": [
        "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
        "into DIR and pass --data-dir DIR",
    ],
    "cifar100": [
        "download cifar-100-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html "
        "into DIR and pass --data-dir DIR",
    ],
}


@dataclass(frozen=True)
class Found:
    """Where a data set was found: ``kind`` is idx | npz | cifar_dir | cifar_tar."""
    kind: str
    path: Path


def keras_cache_dir() -> Path:
    """Keras' download cache: ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets"


def _search_bases(name: str, data_dir) -> list[tuple[str, Path | None]]:
    """The base directories in search order, as ``(label, path or None if unset)``."""
    bases = [("data_dir argument", Path(data_dir).expanduser() if data_dir else None)]
    env = os.environ.get("KERASNETS_DATA")
    env_dirs = [Path(p).expanduser() for p in env.split(os.pathsep) if p] if env else []
    bases += [("$KERASNETS_DATA", p) for p in env_dirs] or [("$KERASNETS_DATA", None)]
    bases.append(("Keras cache", keras_cache_dir()))
    bases += [("system data set package", Path(p)) for p in SYSTEM_DATA_DIRS.get(name, ())]
    return bases


def _probe_idx(name: str, base: Path, notes: list[str]) -> Found | None:
    for sub in _SUBDIRS[name]:
        directory = base / sub if sub else base
        paths, missing = idx_paths(directory)
        if not missing:
            return Found("idx", directory)
        if name == "mnist" and (directory / "mnist.npz").is_file():
            return Found("npz", directory / "mnist.npz")
        if paths:  # a half-copied data set deserves a hint, not silence
            notes.append(f"{directory} has only {len(paths)} of the 4 files, missing "
                         f"{', '.join(missing)}")
    return None


def _cifar_candidates(spec: CifarSpec, base: Path) -> tuple[list[Path], list[Path]]:
    # Keras 3 extracts to <cache>/<dir>-target/<dir> and keeps <dir>-target_archive.
    folders = [base, base / spec.dirname, base / f"{spec.dirname}-target" / spec.dirname]
    tars = [base / spec.tarball, base / f"{spec.dirname}-target_archive"]
    return folders, tars


def _probe_cifar(name: str, base: Path, notes: list[str]) -> Found | None:
    spec = CIFAR_SPECS[name]
    folders, tars = _cifar_candidates(spec, base)
    for folder in folders:
        present = [m for m in spec.members() if (folder / m).is_file()]
        if len(present) == len(spec.members()):
            return Found("cifar_dir", folder)
        if present:
            missing = sorted(set(spec.members()) - set(present))
            notes.append(f"{folder} is incomplete, missing {', '.join(missing)}")
    return next((Found("cifar_tar", t) for t in tars if t.is_file()), None)


def _probe_file(name: str, path: Path) -> Found | None:
    """``--data-dir`` may also name the archive / npz file itself."""
    if name in CIFAR_SPECS and tarfile.is_tarfile(path):
        return Found("cifar_tar", path)
    if name == "mnist" and path.suffix == ".npz":
        return Found("npz", path)
    return None


def _probe(name: str, base: Path, notes: list[str]) -> Found | None:
    if base.is_file():
        return _probe_file(name, base)
    if not base.is_dir():
        return None
    probe = _probe_cifar if name in CIFAR_SPECS else _probe_idx
    return probe(name, base, notes)


def _looked_in(name: str, base: Path) -> str:
    if name in CIFAR_SPECS:
        spec = CIFAR_SPECS[name]
        return f"{base}  (and {spec.dirname}/, {spec.tarball})"
    subs = [s for s in _SUBDIRS[name] if s]
    extra = ", ".join(f"{s}/" for s in subs) + (", mnist.npz" if name == "mnist" else "")
    return f"{base}  (and {extra})"


def _state(base: Path) -> str:
    if base.is_dir():
        return ""
    return "  [not a usable file]" if base.exists() else "  [does not exist]"


def locate(name: str, data_dir=None) -> tuple[Found | None, list[str]]:
    """Search the places of the search order for ``name``'s files (no download).

    Order: ``data_dir``, ``$KERASNETS_DATA`` (``os.pathsep``-separated), the Keras
    cache, then :data:`SYSTEM_DATA_DIRS`.

    Returns:
        ``(found or None, one report line per place looked)``.
    """
    looked, notes = [], []
    for label, base in _search_bases(name, data_dir):
        if base is None:
            looked.append(f"{label}: not set")
            continue
        found = _probe(name, base, notes)
        if found:
            return found, looked
        looked.append(f"{label}: {_looked_in(name, base)}{_state(base)}")
    return None, looked + [f"note: {n}" for n in notes]


def not_found_error(name: str, looked: list[str], download_note: str) -> DatasetNotFoundError:
    """Build the one readable error listing every place looked and how to get the data."""
    lines = [f"Could not find the {name} data set. Looked in:"]
    lines += [f"  {i}. {line}" for i, line in enumerate(looked, 1)]
    lines.append(f"  {len(looked) + 1}. download: {download_note}")
    lines.append("To get it:")
    lines += [f"  {how}" for how in _HOW_TO_GET[name]]
    return DatasetNotFoundError("\n".join(lines))


def download(name: str) -> Found:
    """Fetch ``name`` into the Keras cache with ``keras.utils.get_file``.

    Raises whatever ``get_file`` raises (no network, bad hash, ...).
    """
    # Lazy import: keras pulls in its backend, which readers must never do eagerly.
    from keras.utils import get_file

    if name == "fashion_mnist":
        paths = [get_file(f"{f}.gz", origin=f"{_KERAS_BASE}{f}.gz",
                          cache_subdir=os.path.join("datasets", "fashion-mnist"))
                 for f in IDX_FILES.values()]
        return Found("idx", Path(paths[0]).parent)
    if name == "mnist":
        path = get_file("mnist.npz", origin=f"{_KERAS_BASE}mnist.npz",
                        file_hash=_MNIST_NPZ_SHA256)
        return Found("npz", Path(path))
    url, sha256 = _CIFAR_URLS[name]
    path = get_file(CIFAR_SPECS[name].tarball, origin=url, file_hash=sha256)
    return Found("cifar_tar", Path(path))
