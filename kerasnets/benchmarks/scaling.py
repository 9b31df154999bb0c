"""How cost grows: training images/s of one model against batch size and against image size,
on each backend and torchvision, as a PNG plot and a JSON file.

``python scripts/benchmark.py --scaling`` (``resnet18``: batch 16..256 at 64x64, image size
28..224 at batch 32). Every point is one process (:func:`kerasnets.benchmarks.runner.run_job`).
"""

from __future__ import annotations

import json
from pathlib import Path

from kerasnets.benchmarks.runner import run_job

BATCH_SIZES = (16, 32, 64, 128, 256)
IMAGE_SIZES = (28, 56, 112, 224)
PEER = ("torchvision", "channels_last")  # torchvision's faster layout on this CPU


def _series(backends):
    return [(b, dict(kind="kerasnets", backend=b)) for b in backends] + [
        (f"{PEER[0]} {PEER[1]}", dict(kind=PEER[0], memory_format=PEER[1], backend="torch"))]


def scaling(model="resnet18", backends=("tensorflow", "jax", "torch"), *, warmup=2, steps=4,
            batch_sizes=BATCH_SIZES, image_sizes=IMAGE_SIZES, output="docs/scaling",
            log=print) -> dict:
    """Measure both sweeps; write ``output``.json and ``output``.png; return the points."""
    points = {"model": model, "batch": {}, "image": {}}
    sweeps = (("batch", [dict(image_size=64, batch_size=b) for b in batch_sizes]),
              ("image", [dict(image_size=s, batch_size=32) for s in image_sizes]))
    for sweep, settings in sweeps:
        for name, job in _series(backends):
            values = []
            for setting in settings:
                result = run_job(dict(job, model=model, warmup=warmup, steps=steps, **setting))
                value = result.get("train_images_per_second")
                values.append(value)
                log(f"{sweep} {name} {setting}: {value if value else result.get('error')}")
            points[sweep][name] = values
    points["batch_sizes"], points["image_sizes"] = list(batch_sizes), list(image_sizes)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(points, indent=1))
    plot(points, output.with_suffix(".png"))
    return points


def plot(points, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, sweep, xs, xlabel in (
            (axes[0], "batch", points["batch_sizes"], "batch size (64x64x3 images)"),
            (axes[1], "image", points["image_sizes"], "image size (px, batch 32)")):
        for name, values in points[sweep].items():
            pairs = [(x, v) for x, v in zip(xs, values) if v]
            if pairs:
                ax.plot(*zip(*pairs), marker="o", label=name)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel(xlabel)
        ax.set_ylabel("training images/s")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"{points['model']}: training throughput (model.fit / PyTorch loop), fp32 CPU")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
