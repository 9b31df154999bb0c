"""The offline transfer demonstration of issue 13, on real images: Fashion-MNIST
classes 0-4 to pretrain on, and a small folder of classes 5-9 to fine-tune on.

ImageNet weights cannot be downloaded here, so transfer is shown with a source we can
make: :func:`write_transfer_folders` writes

* ``ROOT/pretrain/{train,test}/<class>/`` every image of the source classes (PNG), and
* ``ROOT/finetune/train/<class>/`` ``per_class`` training images of each target class,
  ``ROOT/finetune/val/<class>/`` ``val_per_class`` others (the per-epoch validation: a
  few, so that 10 epochs do not evaluate 5,000 images ten times on a CPU), and
  ``ROOT/finetune/test/<class>/`` all their test images (JPEG, as a user's folder).

Both are ``--dataset folder`` data sets of ``train.py``; the README's results section
gives the commands (pretrain, fine-tune with ``--weights RUN_DIR``, and from scratch on
the same 250 images) and what they gave.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kerasnets.data import load_dataset

SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)


def _folder_name(name: str) -> str:
    return name.replace("/", "-").replace(" ", "_")  # "T-shirt/top" is no folder name


def _write(root: Path, x, y, class_names, classes, suffix, limit=None, seed=0, skip=0):
    """Every image of ``classes``, or ``limit`` of each picked at random (after the
    first ``skip`` picks: disjoint subsets with the same seed)."""
    from PIL import Image

    written = 0
    for label in classes:
        index = np.flatnonzero(y == label)
        if limit is not None:
            order = np.random.default_rng(seed + label).permutation(index)
            index = np.sort(order[skip:skip + limit])
        folder = root / _folder_name(class_names[label])
        folder.mkdir(parents=True, exist_ok=True)
        for i in index:
            image = x[i][..., 0] if x.shape[-1] == 1 else x[i]
            Image.fromarray(image).save(folder / f"{i:05d}{suffix}", quality=95)
        written += len(index)
    return written


def write_transfer_folders(root, *, data_dir=None, per_class=50, val_per_class=10,
                           seed=0) -> dict:
    """Write the two folder data sets under ``root`` (which must not hold them yet);
    returns how many images each split got."""
    root = Path(root)
    for part in ("pretrain", "finetune"):
        if (root / part).exists():
            raise FileExistsError(f"{root / part} exists already; give another ROOT or "
                                  f"remove it.")
    data = load_dataset("fashion_mnist", data_dir=data_dir, download=False)
    names = data.class_names
    counts = {
        "pretrain/train": _write(root / "pretrain" / "train", data.x_train, data.y_train, names,
                                 SOURCE_CLASSES, ".png"),
        "pretrain/test": _write(root / "pretrain" / "test", data.x_test, data.y_test, names,
                                SOURCE_CLASSES, ".png"),
        "finetune/train": _write(root / "finetune" / "train", data.x_train, data.y_train, names,
                                 TARGET_CLASSES, ".jpg", limit=per_class, seed=seed),
        "finetune/val": _write(root / "finetune" / "val", data.x_train, data.y_train, names,
                               TARGET_CLASSES, ".jpg", limit=val_per_class, seed=seed,
                               skip=per_class),
        "finetune/test": _write(root / "finetune" / "test", data.x_test, data.y_test, names,
                                TARGET_CLASSES, ".jpg"),
    }
    return counts
