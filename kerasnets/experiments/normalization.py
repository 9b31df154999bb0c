"""``normalization``: ResNet-20 with batch, group, layer, instance and no normalisation,
at batch sizes 128 and 8 (Wu & He 2018, "Group Normalization", Figure 1: BN's error
grows as the batch shrinks, GN's does not), with the time per epoch of each on each
backend.
"""

import math

from kerasnets.experiments.common import (Arm, diverged, error_curves, error_text, final,
                                          percent, table)

NAME = "normalization"
TITLE = "Normalization layers at batch 128 and 8: ResNet-20 on Fashion-MNIST"
NORMS = ("batch", "group", "layer", "instance", "none")
BATCH_SIZES = (128, 8)
# The full run, in one place: 10 arms x 6 epochs x 5,000 images plus 2,000 test images
# per epoch trained in 33 minutes alone on the 2-core CPU (2026-11-24, TensorFlow; 2.5-3.5
# min per arm at batch 128, 4-4.5 at batch 8), then the timings on three backends.
SETTINGS = dict(
    dataset="fashion_mnist", recipe="modern", model="resnet20", epochs=6,
    train_subset=5_000, test_subset=2_000, val_fraction=0.0,
    lr=0.1, lr_scaling="linear",  # lr 0.1 at batch 128, 0.00625 at 8 (as the GN paper)
    weight_decay=1e-4, warmup_epochs=1, label_smoothing=0.0, crop_padding=0, flip=False,
)
# Per arm and backend, random batches: steps at batch 128; a smaller batch is timed over
# as many images (160 steps after 48 at batch 8: 10 steps of 50 ms were too few to time).
TIMING = dict(steps=10, warmup=3)
QUICK_TIMING = dict(steps=1, warmup=1)
TIMING_BATCH = 128


def timing_steps(steps: dict, batch_size: int) -> dict:
    """``steps`` (at TIMING_BATCH) for ``batch_size``: the same number of images."""
    scale = max(1, TIMING_BATCH // batch_size)
    return {k: v * scale for k, v in steps.items()}


def arms():
    return [Arm(f"{norm}-b{batch}", f"{'no' if norm == 'none' else norm} norm, batch {batch}",
                {"model_options": {"norm": norm}, "batch_size": batch})
            for batch in BATCH_SIZES for norm in NORMS]


def timing_specs(arms, settings, quick):
    from kerasnets.experiments.timing import spec

    steps = QUICK_TIMING if quick else TIMING
    return [spec(a.name, settings[a.name]["model"], options=a.settings["model_options"],
                 batch_size=settings[a.name]["batch_size"],
                 **(steps if quick else timing_steps(steps, settings[a.name]["batch_size"])))
            for a in arms]


def report(data):
    arms_ = data["arms"]
    backends = sorted(data.get("timings", {}))
    images = data["settings"].get("train_subset")
    rows = []
    for a in arms_:
        seconds = [r["epoch_seconds"] for r in a["history"]]
        row = [a["label"], error_text(a, "train"), error_text(a, "test"),
               "diverged" if diverged(a) else f"{1 - final(a, 'test'):.4f}",
               f"{sum(seconds) / len(seconds):.1f}"]
        for backend in backends:
            ips = data["timings"][backend].get(a["name"], {}).get("train_images_per_second")
            row.append("n/a" if not ips else
                       f"{ips:.0f} img/s" + (f", {images / ips:.0f} s" if images else ""))
        rows.append(row)
    header = ["arm", "final training error", "final test error", "final test accuracy",
              f"s/epoch ({data['backend']}, this run)",
              *[f"{b}: training speed, s/epoch" for b in backends]]
    body = [
        "The Group Normalization paper's Figure 1: with ResNet-50 on ImageNet, BN's error "
        "rises sharply as the batch per worker shrinks from 32 to 2, GN's stays where it "
        "was (its Table 2, top-1 error at batch 32/16/8/4/2 per worker: BN 23.6, 23.7, "
        "24.8, 27.3, 34.7; GN 24.1, 24.2, 24.0, 24.2, 24.1: at batch 8 BN has lost only "
        "1.2 points). Here: ResNet-20 (every BN replaced by the named layer; `none` drops it) on "
        "a reduced Fashion-MNIST run, the learning rate scaled linearly with the batch.",
        "", "## Settings", "", _settings(data), "",
        "Per-backend speed: training images/s of `model.fit` on random batches of the "
        "arm's size, each backend in its own process"
        + _timing_text(data)
        + "; s/epoch is the training subset divided by it (validation not included).",
        "", "## Results", "", table(header, rows), "",
        "## Did the paper's finding hold?", "", *[f"- {x}" for x in findings(arms_)]]
    panels = [(f"test error, batch {b}", "error", [
        (a["label"], c["epoch"], c["test"], "-") for a in arms_ if a["name"].endswith(f"b{b}")
        for c in [error_curves(a)]]) for b in BATCH_SIZES]
    return "\n".join(body), panels


def findings(arms_) -> list[str]:
    """BN's and GN's change in final test error from batch 128 to batch 8."""
    by_name = {a["name"]: a for a in arms_}
    lines = [f"{a['label']} diverged ({diverged(a)}, at learning rate "
             f"{a['settings']['lr']:g}): without its normalization layers the network "
             f"does not train at the rate the others train at" if a["name"].startswith("none")
             else f"{a['label']} diverged ({diverged(a)})" for a in arms_ if diverged(a)]
    change = {}
    for norm in ("batch", "group"):
        big, small = by_name.get(f"{norm}-b128"), by_name.get(f"{norm}-b8")
        if big and small and not (diverged(big) or diverged(small)):
            change[norm] = (final(big, "test"), final(small, "test"))
    if len(change) < 2:
        lines.append("BN and GN were not both trained to the end at both batch sizes: "
                     "nothing to compare")
    else:
        (bn128, bn8), (gn128, gn8) = change["batch"], change["group"]
        lines.append(f"BN's final test error goes from {percent(bn128)} at batch 128 to "
                     f"{percent(bn8)} at batch 8 ({100 * (bn8 - bn128):+.2f} points); GN's "
                     f"from {percent(gn128)} to {percent(gn8)} "
                     f"({100 * (gn8 - gn128):+.2f} points)")
        worse = (bn8 - bn128) > (gn8 - gn128)
        lines.append("BN loses more than GN at the small batch, as the paper found" if worse
                     else "BN does not lose more than GN at the small batch here, unlike "
                          "the paper's finding")
    pairs = [(by_name.get(f"{n}-b128"), by_name.get(f"{n}-b8")) for n in NORMS]
    pairs = [(big, small) for big, small in pairs
             if big and small and not (diverged(big) or diverged(small))]
    if pairs:
        better = [small["label"].split(",")[0] for big, small in pairs
                  if final(small, "test") < final(big, "test")]
        s128, s8 = (_optimizer_steps(p) for p in pairs[0])
        lines.append(f"in the same epochs, batch 8 makes {s8 / s128:.0f}x the optimizer "
                     f"steps of batch 128 ({s8:,} vs {s128:,}); with that, batch 8 ended "
                     f"with the lower test error for {len(better)} of {len(pairs)} layers "
                     f"({', '.join(better) or 'none'}): at so short a schedule the number "
                     f"of updates weighs more than the noise of small-batch statistics")
    trained = [a for a in arms_ if not diverged(a)]
    if trained:
        best = min(trained, key=lambda a: final(a, "test"))
        lines.append(f"lowest final test error: {best['label']} "
                     f"({percent(final(best, 'test'))})")
    return lines


def _timing_text(data) -> str:
    """How many steps each arm was timed over, as the timing results record it (older
    results lack ``steps``: then the data's ``timing_steps``, the same for every arm)."""
    per_batch = {}
    for results in data.get("timings", {}).values():
        for a in data["arms"]:
            r = results.get(a["name"], {})
            if "steps" in r:
                per_batch[a["settings"]["batch_size"]] = (r["steps"], r["warmup"])
    if per_batch:
        return " (" + "; ".join(f"batch {b}: {s} timed steps after {w} warm-up steps"
                                for b, (s, w) in sorted(per_batch.items(), reverse=True)) + ")"
    if "timing_steps" in data:
        return (f" ({data['timing_steps']['steps']} timed steps after "
                f"{data['timing_steps']['warmup']} warm-up steps, at every batch size)")
    return ""


def _optimizer_steps(arm) -> int:
    """Optimizer steps the arm took: its epochs x the batches in its training subset."""
    settings = arm["settings"]
    per_epoch = settings.get("steps_per_epoch") or math.ceil(
        settings["train_subset"] / settings["batch_size"])
    return per_epoch * len(arm["history"])


def _settings(data):
    from kerasnets.experiments.common import describe_settings

    return describe_settings(data["settings"])
