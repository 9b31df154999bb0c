"""Write a labelled array set as an image folder: the ``folder`` data set's layout.

>>> write_image_folder(x, y, "out/fmnist", class_names=names, size_range=(224, 500))

gives ``out/fmnist/<class>/<index>.jpg`` (and ``labels.csv`` of ``path,label`` rows),
each image resized (bilinear) to a width and height drawn, seeded, from
``size_range``: a realistic folder made from a small data set, for users, tests and
``kerasnets.benchmarks.folders``. ``scripts/make_image_folder.py`` is its command line.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

__all__ = ["main", "write_image_folder"]

FORMATS = {"jpeg": ".jpg", "png": ".png"}


def write_image_folder(x, y, root, *, class_names=None, fmt="jpeg", size_range=None,
                       seed=0, quality=90, csv_name="labels.csv") -> Path:
    """Write ``uint8`` NHWC images ``x`` with labels ``y`` under ``root/<class>/``.

    Args:
        class_names: folder name of each label (default: the label as text).
        fmt: ``"jpeg"`` or ``"png"``.
        size_range: ``(low, high)``: each image's width and height are drawn in
            ``[low, high]`` (seeded); None keeps the arrays' size.
        quality: JPEG quality.
        csv_name: also write this CSV of ``path,label`` rows in ``root`` (None: don't).

    Returns:
        ``root``.
    """
    from PIL import Image

    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {tuple(FORMATS)}, not {fmt!r}")
    if size_range is not None and not 0 < size_range[0] <= size_range[1]:
        raise ValueError(f"size_range must be (low, high) with 0 < low <= high, "
                         f"got {size_range}")
    root = Path(root)
    names = [_folder_name(n) for n in class_names] if class_names is not None else \
        [str(c) for c in range(int(np.max(y)) + 1)]
    rng = np.random.default_rng(seed)
    rows = []
    for name in sorted(set(names[int(label)] for label in y)):
        (root / name).mkdir(parents=True, exist_ok=True)
    for i, (image, label) in enumerate(zip(x, y)):
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        if size_range is not None:
            width, height = rng.integers(size_range[0], size_range[1] + 1, 2)
            pil = pil.resize((int(width), int(height)), Image.BILINEAR)
        relative = f"{names[int(label)]}/{i:06d}{FORMATS[fmt]}"
        options = {"quality": quality} if fmt == "jpeg" else {}
        pil.save(root / relative, fmt.upper(), **options)
        rows.append((relative, names[int(label)]))
    if csv_name:
        with open(root / csv_name, "w", newline="") as f:
            csv.writer(f).writerows([("path", "label"), *rows])
    return root


def _folder_name(class_name) -> str:
    """A class name usable as one folder name ("T-shirt/top" -> "T-shirt_top")."""
    return str(class_name).replace("/", "_").replace("\\", "_")


def main(argv=None, prog="make_image_folder.py"):
    """Write (part of) a data set's training split as an image folder."""
    from kerasnets.data.datasets import load_dataset

    parser = argparse.ArgumentParser(prog=prog, description=main.__doc__)
    parser.add_argument("output", help="the folder to write (class sub-folders)")
    parser.add_argument("--dataset", default="fashion_mnist")
    parser.add_argument("--data-dir", metavar="DIR")
    parser.add_argument("--count", type=int, default=10000, help="images, from the start")
    parser.add_argument("--format", choices=tuple(FORMATS), default="jpeg")
    parser.add_argument("--min-size", type=int, help="with --max-size: random width and "
                        "height in this range (default: the data set's own size)")
    parser.add_argument("--max-size", type=int)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if (args.min_size is None) != (args.max_size is None):
        parser.error("give both --min-size and --max-size, or neither")
    data = load_dataset(args.dataset, data_dir=args.data_dir)
    size_range = None if args.min_size is None else (args.min_size, args.max_size)
    root = write_image_folder(data.x_train[:args.count], data.y_train[:args.count],
                              args.output, class_names=data.class_names, fmt=args.format,
                              size_range=size_range, seed=args.seed)
    print(f"wrote {min(args.count, len(data.x_train))} images of {data.num_classes} classes "
          f"to {root}")
    return 0
