#!/usr/bin/env python
"""Write the folders of the offline transfer demonstration (README, "Fine-tuning"):
Fashion-MNIST classes 0-4 to pretrain on, 50 images per class of 5-9 to fine-tune on.
Thin wrapper over :func:`kerasnets.training.transfer.write_transfer_folders`."""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from kerasnets.training.transfer import write_transfer_folders  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="transfer_demo.py", description=__doc__)
    parser.add_argument("root", help="where pretrain/ and finetune/ are written")
    parser.add_argument("--data-dir", help="Fashion-MNIST's IDX files (default: the usual "
                        "places, e.g. /usr/share/datasets/fashion-mnist)")
    parser.add_argument("--per-class", type=int, default=50,
                        help="fine-tuning images per class (default: 50)")
    parser.add_argument("--val-per-class", type=int, default=10,
                        help="validation images per class, apart from those (default: 10)")
    args = parser.parse_args()
    try:
        counts = write_transfer_folders(args.root, data_dir=args.data_dir,
                                        per_class=args.per_class,
                                        val_per_class=args.val_per_class)
    except (FileExistsError, FileNotFoundError, ValueError) as error:
        print(f"transfer_demo.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    for split, count in counts.items():
        print(f"{os.path.join(args.root, split)}: {count} images")
