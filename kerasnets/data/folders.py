"""A folder of images with one sub-folder per class, and all of its split rules.

* ``root/<class>/...``: one pool, split into train and a held-out test set
  (stratified, seeded; :data:`DEFAULT_TEST_FRACTION` unless ``val_fraction`` says);
* ``root/train/`` alone: the same, on ``train/``;
* ``root/train/`` + ``val/`` (or ``validation/``) and/or ``test/``: the folders are
  the splits; with no ``test/``, ``val/`` is what we evaluate on, and
  ``val_fraction`` then carves a validation split off ``train/``.

Splits are decided on the file list, before any image is decoded. Images are
decoded by ``keras.utils.load_img`` (RGB, bilinear resize); keras and PIL are
imported only then, so that scanning and importing this module need neither.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kerasnets.data.errors import CorruptDatasetError, DatasetNotFoundError
from kerasnets.data.splits import carve_val, stratified_split, take

__all__ = ["DEFAULT_TEST_FRACTION", "IMAGE_EXTENSIONS", "common_image_size", "load_folder",
           "read_images", "scan_image_folder"]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp"})
SPLIT_DIRS = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}

# Held-out fraction for a folder without split folders when val_fraction is 0:
# a test split is needed, and an empty one is never what was meant.
DEFAULT_TEST_FRACTION = 0.2

# Errors PIL raises on a file that is not a (complete) image; UnidentifiedImageError
# is an OSError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError)


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


def _split_paths(splits: dict, val_fraction: float, seed: int) -> dict:
    """Turn the scanned folders into ``train``/``test`` (and maybe ``val``) path lists."""
    if "all" in splits:
        paths, labels = splits.pop("all")
        # Here val_fraction is the held-out *test* share: there is no other test set.
        keep, held = stratified_split(labels, val_fraction or DEFAULT_TEST_FRACTION, seed)
        return {"train": (take(paths, keep), labels[keep]),
                "test": (take(paths, held), labels[held])}
    if "test" not in splits:  # train/ + val/ only: val/ is what we evaluate on
        splits["test"] = splits.pop("val")
    return carve_val(splits, val_fraction, seed)


def common_image_size(paths: list[Path]) -> tuple[int, int]:
    """The single (height, width) shared by all images, read from headers only."""
    # PIL directly, not keras.utils.load_img: only the header is read, nothing decoded.
    from PIL import Image

    sizes = {}
    for path in paths:
        try:
            with Image.open(path) as img:
                sizes.setdefault(img.size, path)
        except _DECODE_ERRORS as exc:
            raise CorruptDatasetError(f"{path}: cannot be read as an image ({exc})") from exc
    if len(sizes) > 1:
        examples = "; ".join(f"{p} is {h}x{w}" for (w, h), p in list(sizes.items())[:3])
        raise ValueError(
            f"the images have {len(sizes)} different sizes (height x width: {examples}); "
            f"pass image_size=(height, width) (--image-size) to resize them all")
    (width, height), = sizes
    return height, width


def read_images(paths: list[Path], image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode image files to one ``uint8`` RGB array ``(N, H, W, 3)``.

    Args:
        paths: the image files.
        image_size: ``(height, width)`` to resize every image to (bilinear); ``None``
            keeps the size, which must then be the same for all images.

    Raises:
        CorruptDatasetError: a file cannot be decoded.
        ValueError: sizes differ and ``image_size`` is None.
    """
    from keras.utils import load_img  # lazy: keras loads its backend

    height, width = image_size or (common_image_size(paths) if paths else (1, 1))
    out = np.empty((len(paths), height, width, 3), np.uint8)
    for i, path in enumerate(paths):
        try:
            img = load_img(path, color_mode="rgb", target_size=(height, width),
                           interpolation="bilinear")
            img.load()  # an RGB file is decoded lazily: make a truncated one fail here
        except _DECODE_ERRORS as exc:
            raise CorruptDatasetError(f"{path}: cannot be decoded ({exc})") from exc
        out[i] = np.asarray(img)
    return out


def load_folder(data_dir, val_fraction: float, seed: int, image_size):
    """Read a class-per-sub-folder image tree; splits are decided before decoding.

    Returns:
        ``({split: (images, labels)}, class_names, source)``.
    """
    if data_dir is None:
        raise ValueError("the 'folder' data set needs data_dir (--data-dir): a directory "
                         "with one sub-folder of images per class")
    class_names, scanned = scan_image_folder(data_dir)
    splits = _split_paths(scanned, val_fraction, seed)
    # One size for every split, so a model fits them all.
    all_paths = [p for paths, _ in splits.values() for p in paths]
    size = image_size or common_image_size(all_paths)
    decoded = {s: (read_images(paths, size), labels) for s, (paths, labels) in splits.items()}
    return decoded, class_names, str(Path(data_dir))
