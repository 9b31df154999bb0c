"""Regenerate tests/data/fashion_mnist_sample/ from the full Fashion-MNIST.

Keeps the first N training and M test examples, in the ORIGINAL format (IDX,
gzip-compressed, original file names), so the tests exercise the real reader
on real data. Output is byte-for-byte reproducible (gzip mtime fixed to 0).

    python tests/data/make_sample.py                      # Debian's copy, 2000 / 500
    python tests/data/make_sample.py --source DIR --train 2000 --test 500

Needs only the standard library (no kerasnets import, so no keras either).
"""

import argparse
import gzip
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = {  # file name -> split
    "train-images-idx3-ubyte.gz": "train",
    "train-labels-idx1-ubyte.gz": "train",
    "t10k-images-idx3-ubyte.gz": "test",
    "t10k-labels-idx1-ubyte.gz": "test",
}


def head_of_idx(data: bytes, count: int) -> bytes:
    """Return an IDX buffer holding only the first ``count`` items of ``data``."""
    ndim = data[3]
    dims = list(struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim]))
    if count > dims[0]:
        raise SystemExit(f"asked for {count} items, the file has {dims[0]}")
    item_bytes = 1
    for d in dims[1:]:
        item_bytes *= d
    header_len = 4 + 4 * ndim
    header = data[:4] + struct.pack(f">{ndim}I", count, *dims[1:])
    return header + data[header_len:header_len + count * item_bytes]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--out", type=Path, default=HERE / "fashion_mnist_sample")
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--test", type=int, default=250)
    args = parser.parse_args(argv)

    args.out.mkdir(parents=True, exist_ok=True)
    counts = {"train": args.train, "test": args.test}
    for name, split in FILES.items():
        data = gzip.decompress((args.source / name).read_bytes())
        sample = head_of_idx(data, counts[split])
        (args.out / name).write_bytes(gzip.compress(sample, compresslevel=9, mtime=0))
        print(f"{args.out / name}: {counts[split]} items")


if __name__ == "__main__":
    main()
