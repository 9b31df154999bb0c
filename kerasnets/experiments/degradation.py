"""``degradation``: plain-20/56 against ResNet-20/56 on Fashion-MNIST, training and test
error per epoch (He et al. 2015, Figures 1 and 6).

The paper's finding: the deeper *plain* net ends with the *higher* training error
(degradation: an optimisation problem, not overfitting), the deeper *residual* net
with the *lower*. The report compares the last epoch's numbers to say whether that
held here.
"""

from kerasnets.experiments.common import (Arm, diverged, error_curves, error_text, final,
                                          percent, table)

NAME = "degradation"
TITLE = "Degradation: plain vs residual nets, 20 and 56 layers, on Fashion-MNIST"
# The full run, in one place: 4 arms x 10 epochs x 10,000 images plus 2,000 test images
# per epoch took 59 minutes alone on the 2-core CPU (2026-11-24, TensorFlow: the 20-layer
# nets train at 257 images/s, the 56-layer ones at 80).
SETTINGS = dict(
    dataset="fashion_mnist", recipe="modern", epochs=10, batch_size=128,
    train_subset=10_000,  # stratified: 1,000 per class
    test_subset=2_000,  # the test error of every epoch is measured on these
    val_fraction=0.0,  # the test split is the per-epoch validation: test error per epoch
    lr=0.1, weight_decay=1e-4, warmup_epochs=1, label_smoothing=0.0,  # the paper's
    crop_padding=0, flip=False,  # no augmentation: the training error is the net's fit
)
MODELS = ("plain20", "plain56", "resnet20", "resnet56")


def arms():
    return [Arm(m, m.replace("plain", "plain-").replace("resnet", "ResNet-"), {"model": m})
            for m in MODELS]


def report(data):
    by_name = {a["name"]: a for a in data["arms"]}
    rows = [[a["label"], error_text(a, "train"), error_text(a, "test"),
             percent(min(error_curves(a)["test"])), a["metrics"]["epochs_completed"],
             f"{a['metrics']['trainable_params']:,}",
             f"{a['metrics'].get('train_images_per_second') or 0:.0f}"]
            for a in data["arms"]]
    body = [
        "What the ResNet paper shows in its Figures 1 and 6 (CIFAR-10, 164 epochs): a "
        "deeper plain net has a *higher* training error than a shallower one, while a "
        "deeper residual net has a *lower* one. Here: the same networks (3x3 stem, three "
        "stages of 16/32/64 filters, option-A shortcuts) on a reduced Fashion-MNIST run.",
        "", "## Settings", "", _settings_text(data), "",
        "Training error is 1 - the training accuracy Keras reports for the epoch: the "
        "running mean over the epoch's batches, with BN in training mode and no "
        "augmentation (the paper's Figure 6 plots it the same way); test error is "
        "measured at the end of each epoch on the test images named above.", "",
        "## Results", "",
        table(["net", "final training error", "final test error", "best test error",
               "epochs", "parameters", "training images/s"], rows),
        "", "## Did the paper's finding hold?", "",
        *[f"- {line}" for line in findings(by_name)],
    ]
    panels = [(f"{split} error", "error", [
        (a["label"], c["epoch"], c[split], "--" if a["name"].startswith("plain") else "-")
        for a in data["arms"] for c in [error_curves(a)]]) for split in ("train", "test")]
    return "\n".join(body), panels


def findings(by_name) -> list[str]:
    """The paper's two claims, checked on the last epoch's training error."""
    lines = []
    for kind, label, expected in (("plain", "plain", "higher"), ("resnet", "residual", "lower")):
        shallow, deep = by_name.get(f"{kind}20"), by_name.get(f"{kind}56")
        if not (shallow and deep):
            lines.append(f"the {label} pair was not run (both 20 and 56 layers are needed)")
            continue
        if diverged(shallow) or diverged(deep):
            lines.append(f"the {label} pair cannot be compared: " + "; ".join(
                f"{a['label']} diverged ({diverged(a)})" for a in (shallow, deep)
                if diverged(a)))
            continue
        s, d = final(shallow, "train"), final(deep, "train")
        got = "higher" if d > s else "lower" if d < s else "the same"
        verdict = "as the paper found" if got == expected else \
            f"unlike the paper (which found it {expected})"
        lines.append(f"the deeper {label} net ends with the {got} training error "
                     f"({percent(d)} at 56 layers vs {percent(s)} at 20): {verdict}")
    plain, residual = by_name.get("plain56"), by_name.get("resnet56")
    if plain and residual and not (diverged(plain) or diverged(residual)):
        p, r = final(plain, "train"), final(residual, "train")
        lines.append(f"at 56 layers, the shortcuts alone (same layers, same parameters) "
                     f"take the training error from {percent(p)} (plain) to {percent(r)} "
                     f"(residual), {'lower' if r < p else 'not lower'}: "
                     + ("residual learning eases the optimisation, the paper's explanation "
                        "of degradation" if r < p else "no sign here of the easier "
                        "optimisation the paper reports"))
        shallow = [by_name.get(n) for n in ("plain20", "resnet20")]
        if all(shallow) and not any(diverged(a) for a in shallow):
            cost_plain = p - final(shallow[0], "train")
            cost_res = r - final(shallow[1], "train")
            lines.append(f"going from 20 to 56 layers costs the plain nets "
                         f"{100 * cost_plain:+.2f} points of training error and the "
                         f"residual nets {100 * cost_res:+.2f}")
    return lines


def _settings_text(data):
    from kerasnets.experiments.common import describe_settings

    return describe_settings(data["settings"])
