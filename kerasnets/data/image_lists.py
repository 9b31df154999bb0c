"""Image folders described by CSV files of ``path,label`` rows (the competition layout).

``--data-dir labels.csv``: one CSV file whose header row names a ``path`` and a
``label`` column (others are ignored; the header is required, so that no first image
is ever taken for a header or the other way round). Paths are relative to the CSV's
folder, or absolute; labels are class names, sorted (numerically when every one is an
integer). A file named ``train.csv`` takes ``val.csv`` (or ``validation.csv``) and
``test.csv`` beside it as its other splits, with the rules of split folders
(:mod:`kerasnets.data.folders`); any other name is one pool, split by the seed.

Every row is checked before anything is decoded: a missing file, an empty path or
label, a row with too few fields, a label the training CSV does not have, each is named
with its line number, all of them in one error.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from kerasnets.data.errors import CorruptDatasetError, DatasetNotFoundError

__all__ = ["scan_csv"]

SPLIT_FILES = {"val": ("val.csv", "validation.csv"), "test": ("test.csv",)}
_LIMIT = 10  # problems named in one error


def _read_rows(csv_path: Path, problems: list) -> list[tuple[int, str, str]]:
    """``(line number, path, label)`` of every good row; bad rows go into ``problems``."""
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise CorruptDatasetError(f"{csv_path} is empty: expected a header row 'path,label' "
                                  f"and one row per image")
    header = [h.strip().lower() for h in rows[0]]
    if "path" not in header or "label" not in header:
        raise CorruptDatasetError(
            f"{csv_path}, line 1: the header row must name the columns 'path' and 'label' "
            f"(got {','.join(rows[0])!r}); add the header 'path,label'")
    at_path, at_label = header.index("path"), header.index("label")
    good = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue  # blank lines are allowed
        if len(row) <= max(at_path, at_label):
            problems.append(f"line {line}: {len(row)} field(s), expected {len(header)}")
            continue
        path, label = row[at_path].strip(), row[at_label].strip()
        if not path or not label:
            problems.append(f"line {line}: empty {'path' if not path else 'label'}")
            continue
        good.append((line, path, label))
    return good


def _class_order(labels) -> list[str]:
    names = sorted(set(labels))
    if all(n.lstrip("-").isdigit() for n in names):
        names.sort(key=int)  # "2" before "10"
    return names


def _split(csv_path: Path, class_names=None):
    """``(class names, paths, label indices)`` of one CSV; every problem in one error."""
    problems = []
    rows = _read_rows(csv_path, problems)
    names = class_names or _class_order(label for _, _, label in rows)
    index = {name: i for i, name in enumerate(names)}
    paths, labels, missing = [], [], []
    for line, path, label in rows:
        full = (csv_path.parent / path) if not Path(path).is_absolute() else Path(path)
        if label not in index:
            problems.append(f"line {line}: label {label!r} is not a training class")
        elif not full.is_file():
            missing.append(f"line {line}: {full}")
        else:
            paths.append(full)
            labels.append(index[label])
    if missing:
        problems.append(f"{len(missing)} listed file(s) do not exist ({'; '.join(missing[:_LIMIT])}"
                        f"{'; ...' if len(missing) > _LIMIT else ''})")
    if problems:
        more = f"; and {len(problems) - _LIMIT} more" if len(problems) > _LIMIT else ""
        raise CorruptDatasetError(f"{csv_path}: {'; '.join(problems[:_LIMIT])}{more}: fix "
                                  f"or remove these rows")
    if not paths:
        raise DatasetNotFoundError(f"{csv_path} lists no images (expected rows path,label "
                                   f"after the header)")
    return names, paths, np.asarray(labels, np.int32)


def scan_csv(csv_path):
    """List the images of a CSV layout without decoding them.

    Returns:
        ``(class_names, {split: (paths, labels)})`` as
        :func:`kerasnets.data.folders.scan_image_folder` does (split ``"all"`` for one
        pool).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetNotFoundError(f"CSV file {csv_path} does not exist")
    names, paths, labels = _split(csv_path)
    if len(names) < 2:
        raise CorruptDatasetError(f"{csv_path}: only one class ({names[0]!r}); a classifier "
                                  f"needs at least two labels")
    splits = {"train": (paths, labels)}
    if csv_path.name.lower() == "train.csv":
        for split, candidates in SPLIT_FILES.items():
            found = [csv_path.parent / c for c in candidates if (csv_path.parent / c).is_file()]
            if found:
                splits[split] = _split(found[0], names)[1:]
    if len(splits) == 1:
        splits = {"all": splits["train"]}
    return names, splits
