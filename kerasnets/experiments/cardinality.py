"""``cardinality``: a CIFAR ResNeXt at the same FLOPs with 1, 2, 4, 8, 16 and 32 groups
(Xie et al. 2017, "Aggregated Residual Transformations", Table 3: more groups at equal
FLOPs lowered the error up to 32), with the parameters and the training images/s of
each on each backend: grouped convolutions cost very differently on TensorFlow, JAX and
PyTorch, so "free" cardinality is not free everywhere.
"""

import math

from kerasnets.experiments.common import Arm, diverged, error_curves, error_text, final, table

NAME = "cardinality"
TITLE = "Cardinality at equal FLOPs: CIFAR ResNeXt on Fashion-MNIST"
CARDINALITIES = (1, 2, 4, 8, 16, 32)
# The full run, in one place. resnext_cifar (from the norm branch) could not be timed
# when this was written: the sizes copy the normalization experiment's (6 arms x 6
# epochs x 5,000 images); time one arm (--quick --arms c32) first, and train on the
# backend whose grouped convolutions are fastest. The recorded run used torch (then
# ResNeXt-50 trained on TF at 0.84x and on JAX at 0.76x its speed); since TF runs its own
# oneDNN grouped kernel (2026-11-25, docs/benchmarks.md), TF is fastest on the AVX-512
# EPYC: ResNeXt-50 on the trainer's workload TF 24.0, torch 15.7, JAX 12.1 images/s.
SETTINGS = dict(
    dataset="fashion_mnist", recipe="modern", model="resnext_cifar", epochs=6,
    batch_size=128, train_subset=5_000, test_subset=2_000, val_fraction=0.0,
    lr=0.1, weight_decay=5e-4,  # the ResNeXt paper's CIFAR weight decay
    warmup_epochs=1, label_smoothing=0.0, crop_padding=0,
    flip=False,
)
TEST_IMAGES = 10_000  # Fashion-MNIST's test split, when no test_subset is set
TIMING = dict(steps=10, warmup=3)
QUICK_TIMING = dict(steps=1, warmup=1)


def arms():
    return [Arm(f"c{c}", f"cardinality {c}", {"model_options": {"cardinality": c}})
            for c in CARDINALITIES]


def timing_specs(arms, settings, quick):
    from kerasnets.experiments.timing import spec

    steps = QUICK_TIMING if quick else TIMING
    return [spec(a.name, settings[a.name]["model"], options=a.settings["model_options"],
                 batch_size=settings[a.name]["batch_size"], **steps) for a in arms]


def speeds(data, name):
    """``{backend: training images/s}`` of arm ``name`` (None where it failed)."""
    return {b: t.get(name, {}).get("train_images_per_second")
            for b, t in data.get("timings", {}).items()}


def report(data):
    arms_ = data["arms"]
    backends = sorted(data.get("timings", {}))
    rows = [[a["label"], f"{a['metrics']['trainable_params']:,}",
             error_text(a, "train"),
             "diverged" if diverged(a) else f"{1 - final(a, 'test'):.4f}",
             *[f"{v:.0f}" if v else "n/a" for v in
               (speeds(data, a["name"])[b] for b in backends)]] for a in arms_]
    body = [
        "ResNeXt's Table 3 (ImageNet): at the FLOPs of ResNet-50, splitting the 3x3 "
        "convolution into 32 groups of 4 channels lowered the top-1 error from 23.9% to "
        "22.2%. Here: `resnext_cifar` at the same FLOPs for every cardinality, on a "
        "reduced Fashion-MNIST run, and what each cardinality costs in training speed on "
        "each Keras backend.", "", "## Settings", "", _settings(data), "",
        "Training speed: images/s of `model.fit` on random batches of the run's size, "
        "each backend in its own process.", "", "## Results", "",
        table(["cardinality", "parameters", "final training error", "final test accuracy",
               *[f"{b} images/s" for b in backends]], rows),
        "", "## What it shows", "", *[f"- {x}" for x in findings(data)]]
    panels = [(f"{split} error", "error", [
        (a["label"], c["epoch"], c[split], "-") for a in arms_ for c in [error_curves(a)]])
        for split in ("train", "test")]
    return "\n".join(body), panels


def findings(data) -> list[str]:
    lines = [f"{a['label']} diverged ({diverged(a)})" for a in data["arms"] if diverged(a)]
    arms_ = [a for a in data["arms"] if not diverged(a)]
    if len(arms_) >= 2:
        first, last = arms_[0], arms_[-1]
        a, b = 1 - final(first, "test"), 1 - final(last, "test")
        trend = "higher than" if b > a else "lower than" if b < a else "the same as"
        lines.append(f"{last['label']} ends with a test accuracy {trend} "
                     f"{first['label']}'s ({b:.4f} vs {a:.4f}); the paper found more groups "
                     f"better at equal FLOPs")
        best = max(arms_, key=lambda x: 1 - final(x, "test"))
        lines.append(f"best final test accuracy: {best['label']} "
                     f"({1 - final(best, 'test'):.4f})")
        lines.append(noise(data, arms_))
        for backend in sorted(data.get("timings", {})):
            s1, s2 = (speeds(data, x["name"])[backend] for x in (first, last))
            if s1 and s2:
                lines.append(f"{backend}: {last['label']} trains at {s2:.0f} images/s, "
                             f"{s2 / s1:.2f}x the speed of {first['label']} ({s1:.0f})")
    return lines or ["fewer than two cardinalities were run: nothing to compare"]


def noise(data, arms_) -> str:
    """Whether the accuracies differ by more than one run per arm can tell apart: the
    binomial standard error of a difference of two test accuracies on ``n`` images."""
    accuracies = [1 - final(a, "test") for a in arms_]
    n = data["settings"].get("test_subset") or TEST_IMAGES
    mean = sum(accuracies) / len(accuracies)
    se = math.sqrt(2 * mean * (1 - mean) / n)
    spread = max(accuracies) - min(accuracies)
    verdict = ("within that noise: this run cannot rank the cardinalities" if spread < 2 * se
               else "wider than that noise")
    return (f"the test accuracies span {100 * spread:.2f} points; with one run per arm "
            f"on {n:,} test images, a difference of two accuracies has a standard error "
            f"of about {100 * se:.2f} points (binomial), so the spread is {verdict}")


def _settings(data):
    from kerasnets.experiments.common import describe_settings

    return describe_settings(data["settings"])
