"""The folder pipeline, measured: streamed from disk against the in-memory reader.

``python -m kerasnets.benchmarks.folders FOLDER`` (a folder written by
``scripts/make_image_folder.py``) runs each measurement in a fresh process, so that
each peak RSS (``ru_maxrss``: native memory included, which tracemalloc misses) is its
own, and prints a markdown table:

* ``memory``: today's reader, every image decoded and resized before training
  (``load_dataset(streamed=False)``), then tf.data over the array;
* ``tfdata`` / ``pydataset``: streamed, decoded per batch (tf.data: parallel
  ``tf.numpy_function`` map calls; PyDataset: ``__getitem__`` on ``--workers``
  threads, as its workers call it);
* ``tfdata-cached``: the second pass over the same images with ``image_cache="memory"``;
* ``tf-native``: ``tf.io.decode_jpeg`` + ``tf.image.resize`` in tf.data instead of PIL
  (not used by the pipelines: its pixels differ from PIL's; measured to see if it pays).

Time to the first training step: from the process' start of loading to the end of the
first ``train_on_batch`` of ``--model`` (model built in between, the same for all).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import time

import numpy as np

MODES = ("memory", "tfdata", "pydataset", "tfdata-cached", "tf-native")


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _pipeline(kind, data, batch_size, size, **extra):
    from kerasnets.data import Preprocessing, Preprocessor, make_pipeline

    pre = Preprocessor(Preprocessing(channels=3), size)
    return make_pipeline(kind, data.x_train, data.y_train, num_classes=data.num_classes,
                         batch_size=batch_size, preprocessor=pre, training=True, seed=0,
                         **extra)


def _rate(batches, count) -> tuple[float, object, float]:
    """Images/s over ``count`` batches of the iterator ``batches`` after a first one
    (which warms the pipeline up), that first batch, and when it came."""
    first = next(batches)
    start, images = time.perf_counter(), 0
    came = start
    for _ in range(count):
        images += len(next(batches)[0])
    return images / (time.perf_counter() - start), first, came


def _first_step(model_name, batch, num_classes):
    import kerasnets

    model = kerasnets.create_model(model_name, input_shape=tuple(batch[0].shape[1:]),
                                   num_classes=num_classes)
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    model.train_on_batch(batch[0], batch[1])


def measure(mode, folder, image_size, batch_size, batches, workers, model):
    """One measurement, in this process: a dict of figures."""
    from kerasnets.data import load_dataset

    size = (image_size, image_size)
    start = time.perf_counter()
    if mode == "tf-native":
        return _tf_native(folder, size, batch_size, batches)
    data = load_dataset("folder", data_dir=folder, image_size=image_size,
                        streamed=mode != "memory",
                        image_cache="memory" if mode == "tfdata-cached" else None)
    loaded = time.perf_counter() - start
    if mode == "pydataset":
        from concurrent.futures import ThreadPoolExecutor

        pipe = _pipeline("pydataset", data, batch_size, size)
        with ThreadPoolExecutor(workers) as pool:
            rate, first, came = _rate(iter(pool.map(pipe.__getitem__, range(len(pipe)))),
                                      batches)
    else:
        if mode == "tfdata-cached":  # one epoch = the images timed, so that the second
            keep = np.arange(min(len(data.x_train), (batches + 1) * batch_size))  # comes
            data = dataclasses.replace(data, x_train=data.x_train.subset(keep),  # cached
                                       y_train=data.y_train[keep])
        pipe = iter(_pipeline("tfdata", data, batch_size, size))
        rate, first, came = _rate(pipe, batches)
        if mode == "tfdata-cached":  # the same images again: all from the cache
            rate, _, _ = _rate(pipe, batches)
    first = tuple(a.numpy() if hasattr(a, "numpy") else a for a in first)
    stepped = time.perf_counter()
    _first_step(model, first, data.num_classes)  # the time to it, not the rate's
    first_step = came - start + time.perf_counter() - stepped
    return {"mode": mode, "images": len(data.x_train), "load_s": loaded,
            "images_per_s": rate, "first_step_s": first_step, "peak_rss_mib": _peak_rss_mib()}


def _tf_native(folder, size, batch_size, batches):
    import tensorflow as tf

    from kerasnets.data.folders import scan

    _, splits = scan(folder)
    paths = [str(p) for paths, _ in splits.values() for p in paths]

    def decode(path):
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        return tf.cast(tf.image.resize(image, size, antialias=True), tf.uint8)

    pipe = iter(tf.data.Dataset.from_tensor_slices(paths).repeat()
                .map(decode, num_parallel_calls=tf.data.AUTOTUNE)
                .batch(batch_size).prefetch(tf.data.AUTOTUNE))
    rate, _, _ = _rate(pipe, batches)
    return {"mode": "tf-native", "images": len(paths), "load_s": None,
            "images_per_s": rate, "first_step_s": None, "peak_rss_mib": _peak_rss_mib()}


def run_all(folder, modes=MODES, **options) -> list[dict]:
    """Each mode in its own process (``KERAS_BACKEND`` as set); their figures."""
    results = []
    for mode in modes:
        argv = [sys.executable, "-m", "kerasnets.benchmarks.folders", folder, "--one", mode,
                *(f"--{k.replace('_', '-')}={v}" for k, v in options.items())]
        out = subprocess.run(argv, capture_output=True, text=True, check=False)
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        if out.returncode or not lines:
            raise RuntimeError(f"{mode} failed: {out.stderr.strip()[-2000:]}")
        results.append(json.loads(lines[-1]))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return results


def markdown(results) -> str:
    def fmt(value, digits=1):
        return "" if value is None else f"{value:,.{digits}f}"

    rows = ["| reader | images | load before training (s) | images/s delivered | "
            "time to first training step (s) | peak RSS (MiB) |", "|---|---:|---:|---:|---:|---:|"]
    rows += [f"| {r['mode']} | {r['images']:,} | {fmt(r['load_s'])} | "
             f"{fmt(r['images_per_s'], 0)} | {fmt(r['first_step_s'])} | "
             f"{fmt(r['peak_rss_mib'], 0)} |" for r in results]
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--one", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=40, help="timed batches")
    parser.add_argument("--workers", type=int, default=2, help="PyDataset threads")
    parser.add_argument("--model", default="resnet18")
    args = parser.parse_args(argv)
    options = dict(image_size=args.image_size, batch_size=args.batch_size,
                   batches=args.batches, workers=args.workers, model=args.model)
    if args.one:
        print(json.dumps(measure(args.one, args.folder, **options)))
        return 0
    print(markdown(run_all(args.folder, args.modes, **options)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
