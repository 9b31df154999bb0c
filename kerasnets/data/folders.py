"""A folder of images with one sub-folder per class, and all of its split rules.

* ``root/<class>/...``: one pool, split into train and a held-out test set
  (stratified, seeded; :data:`DEFAULT_TEST_FRACTION` unless ``val_fraction`` says);
* ``root/train/`` alone: the same, on ``train/``;
* ``root/train/`` + ``val/`` (or ``validation/``) and/or ``test/``: the folders are
  the splits; with no ``test/``, ``val/`` is what we evaluate on, and
  ``val_fraction`` then carves a validation split off ``train/``.

``--data-dir`` may also be a CSV file of ``path,label`` rows
(:mod:`kerasnets.data.image_lists`). Splits are decided on the file list, before any
image is decoded; every file's header is then checked (cheap), the bad files are
skipped and named (or, ``strict``, an error), and the images are either streamed
(:class:`~kerasnets.data.streamed.FolderImages`: decoded batch by batch in the input
pipeline) or decoded here into one array (``streamed=False``, small folders). Both
decode with :func:`kerasnets.data.images.decode_image` (PIL, bilinear resize), so they
give the same pixels.
PIL is imported only when needed, so that scanning and importing this module need
neither it nor keras.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from kerasnets.data.errors import CorruptDatasetError, DatasetNotFoundError
from kerasnets.data.images import decode_image, inspect_image, open_image
from kerasnets.data.splits import carve_val, stratified_split, take

__all__ = ["DEFAULT_TEST_FRACTION", "IMAGE_EXTENSIONS", "bad_images_error",
           "common_image_size", "decode_image", "image_sizes", "load_folder", "open_image",
           "read_images", "scan_image_folder"]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp"})
SPLIT_DIRS = {"train": ("train",), "val": ("val", "validation"), "test": ("test",)}

# Held-out fraction for a folder without split folders when val_fraction is 0:
# a test split is needed, and an empty one is never what was meant.
DEFAULT_TEST_FRACTION = 0.2



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


def _scan_split(directory: Path, class_names: list[str], empty: list[Path]):
    """List ``(paths, labels)`` of one split whose sub-folders are among ``class_names``;
    class folders without an image are appended to ``empty``."""
    paths, labels = [], []
    for class_dir in _class_dirs(directory):
        if class_dir.name not in class_names:
            raise ValueError(
                f"{class_dir}: class '{class_dir.name}' is not among the training classes "
                f"{class_names}")
        images = _class_images(class_dir)
        if not images:
            empty.append(class_dir)
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
    empty = []
    splits = {s: _scan_split(d, class_names, empty) for s, d in split_dirs.items()} or {
        "all": _scan_split(root, class_names, empty)}
    looked_for = (f"looked for {', '.join(sorted(IMAGE_EXTENSIONS))}; hidden files are "
                  f"skipped")
    if not any(len(paths) for paths, _ in splits.values()):
        raise DatasetNotFoundError(
            f"{root}: no images found in the class sub-folders {class_names} ({looked_for})")
    if empty:  # a class without images is a mistake, never a class to learn
        raise CorruptDatasetError(
            f"{_listed([str(d) for d in empty], 'class folder')} "
            f"{'has' if len(empty) == 1 else 'have'} no images ({looked_for}): add images "
            f"or remove the folder{'' if len(empty) == 1 else 's'}")
    if len(class_names) == 1:
        raise CorruptDatasetError(
            f"{pool}: only one class sub-folder ({class_names[0]}/); a classifier needs at "
            f"least two, e.g. {pool}/cat/*.jpg and {pool}/dog/*.jpg")
    return class_names, splits


def _listed(items: list[str], noun: str, limit: int = 10) -> str:
    """``noun`` + the first ``limit`` items + how many more, on one line."""
    shown = ", ".join(items[:limit])
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return f"{noun}{'s' if len(items) > 1 else ''} {shown}{more}"


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


def image_sizes(paths: list[Path]) -> tuple[dict, dict]:
    """Check every file's header (:func:`inspect_image`), one pass over all of them.

    Returns:
        ``({path: (height, width)}, {path: what is wrong})``: every unreadable file and
        every decompression bomb, not only the first.
    """
    sizes, bad = {}, {}
    for path in paths:
        size, problem = inspect_image(path)
        if problem:
            bad[path] = problem
        else:
            sizes[path] = size
    return sizes, bad


def bad_images_error(bad: dict) -> CorruptDatasetError:
    """One line naming every bad image (the first 10, then how many more)."""
    items = [f"{path}: {why}" for path, why in sorted(bad.items(), key=lambda i: str(i[0]))]
    shown = "; ".join(items[:10])
    more = f"; and {len(items) - 10} more" if len(items) > 10 else ""
    count = f"{len(items)} image files are" if len(items) > 1 else "1 image file is"
    them = "them" if len(items) > 1 else "it"
    return CorruptDatasetError(f"{count} unusable (fix or remove {them}): {shown}{more}")


def skipped_note(bad: dict, limit: int = 10) -> str:
    """One line for the output: how many files were skipped, the first ``limit`` named."""
    names = sorted(str(p) for p in bad)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return (f"skipped {len(names)} unusable image file{'s' if len(names) > 1 else ''} "
            f"(all listed in config.json; --strict-images makes them an error): "
            f"{', '.join(names[:limit])}{more}")


def common_image_size(paths: list[Path]) -> tuple[int, int]:
    """The single (height, width) shared by all images, read from headers only.

    Raises:
        CorruptDatasetError: naming every file whose header cannot be read.
        ValueError: the sizes differ.
    """
    sizes, bad = image_sizes(paths)
    if bad:
        raise bad_images_error(bad)
    return _one_size(sizes)


def _one_size(sizes: dict) -> tuple[int, int]:
    distinct = {}
    for path, size in sizes.items():
        distinct.setdefault(size, path)
    if not distinct:
        raise ValueError("no readable image to take the size from")
    if len(distinct) > 1:
        examples = "; ".join(f"{p} is {h}x{w}" for (h, w), p in list(distinct.items())[:3])
        raise ValueError(
            f"the images have {len(distinct)} different sizes (height x width: {examples}); "
            f"pass image_size=(height, width) (--image-size PX) to resize them all")
    (height, width), = distinct
    return height, width


def _decode(paths: list[Path], height: int, width: int, bad: dict) -> np.ndarray:
    """Decode ``paths`` to ``(N, height, width, 3)`` uint8; failures go into ``bad``."""
    out = np.empty((len(paths), height, width, 3), np.uint8)
    for i, path in enumerate(paths):
        if path in bad:
            continue
        try:
            out[i] = decode_image(path, (height, width))
        except CorruptDatasetError as exc:
            bad[path] = str(exc).removeprefix(f"{path}: ")
    return out


def read_images(paths: list[Path], image_size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode image files to one ``uint8`` RGB array ``(N, H, W, 3)``.

    Args:
        paths: the image files.
        image_size: ``(height, width)`` to resize every image to (bilinear); ``None``
            keeps the size, which must then be the same for all images.

    Raises:
        CorruptDatasetError: files cannot be decoded (all of them are named).
        ValueError: sizes differ and ``image_size`` is None.
    """
    height, width = image_size or (common_image_size(paths) if paths else (1, 1))
    bad = {}
    out = _decode(paths, height, width, bad)
    if bad:
        raise bad_images_error(bad)
    return out


def scan(data_dir):
    """``(class_names, {split: (paths, labels)})`` of a class-per-folder tree or of a CSV
    file of ``path,label`` rows."""
    if data_dir is None:
        raise ValueError("the 'folder' data set needs data_dir (--data-dir): a directory "
                         "with one sub-folder of images per class, or a CSV file of "
                         "path,label rows")
    if Path(data_dir).suffix.lower() == ".csv":
        from kerasnets.data.image_lists import scan_csv

        return scan_csv(data_dir)
    return scan_image_folder(data_dir)


def _without_bad(splits: dict, bad: dict, class_names: list) -> dict:
    """The splits without the bad files; a training class left with none is an error."""
    kept = {}
    for split, (paths, labels) in splits.items():
        keep = np.array([p not in bad for p in paths], bool)
        kept[split] = ([p for p, k in zip(paths, keep) if k], labels[keep])
    lost = sorted(set(range(len(class_names))) - set(kept["train"][1].tolist()))
    if lost:
        raise CorruptDatasetError(
            f"class{'es' if len(lost) > 1 else ''} {', '.join(class_names[c] for c in lost)} "
            f"{'have' if len(lost) > 1 else 'has'} no usable training image (every one is "
            f"unusable: {bad_images_error(bad)})")
    return kept


def load_folder(data_dir, val_fraction: float, seed: int, image_size, *, streamed=True,
                strict=False, cache=None):
    """Read a class-per-sub-folder image tree (or a CSV of ``path,label`` rows); splits
    are decided before anything is decoded.

    Args:
        streamed: keep paths (:class:`~kerasnets.data.streamed.FolderImages`), decoded
            per batch by the input pipeline; False decodes every image here.
        strict: any unusable file is an error naming them all; else they are skipped
            and listed in the returned ``skipped`` (files found bad only when a batch
            decodes them are added there as they are met).
        cache: streamed only: ``None``, ``"memory"`` or a directory, to keep decoded
            images for later epochs (see ``FolderImages``).

    Returns:
        ``({split: (images, labels)}, class_names, source, skipped)``.
    """
    class_names, scanned = scan(data_dir)
    splits = _split_paths(scanned, val_fraction, seed)
    # Every file's header first (cheap): every bad file is found and named at once.
    all_paths = [p for paths, _ in splits.values() for p in paths]
    sizes, bad = image_sizes(all_paths)
    if bad and strict:
        raise bad_images_error(bad)
    if image_size is None:  # one size for every split, so a model fits them all
        image_size = _one_size(sizes)
    splits = _without_bad(splits, bad, class_names)
    skipped = {str(path): why for path, why in bad.items()}  # streaming adds to it
    if streamed:
        from kerasnets.data.streamed import FolderImages

        images = {s: FolderImages(paths, image_size, skipped=skipped, strict=strict,
                                  cache=cache) for s, (paths, _) in splits.items()}
        return ({s: (images[s], labels) for s, (_, labels) in splits.items()}, class_names,
                str(Path(data_dir)), skipped)
    decoded = {}
    for split, (paths, labels) in splits.items():
        met = {}
        x = _decode(paths, *image_size, met)
        if met and strict:
            raise bad_images_error(met)
        keep = np.array([p not in met for p in paths], bool)
        skipped.update((str(path), why) for path, why in met.items())
        decoded[split] = (x[keep], labels[keep])
    return decoded, class_names, str(Path(data_dir)), skipped
