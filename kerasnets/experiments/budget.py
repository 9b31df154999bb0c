"""``budget``: the seeds' families, each trained on Fashion-MNIST for the same wall-clock
budget (15 minutes) on one backend, at the smallest input each accepts: which classic
network is best per CPU-minute. Run it on your CPU's fastest backend, all arms on one
machine: on AVX-512 cores TensorFlow trained ResNet-18 fastest, on an AMD EPYC without
AVX-512 the torch backend did, 1.3-2.5x ahead (32-39 against 16-26 images/s;
docs/benchmarks.md, 2026-11-24).

The recipe rule is ``RECIPE_RULE`` below (no search was run; one rule for all,
stated in the report).
"""

import math

import kerasnets
from kerasnets.experiments.common import Arm, error_curves, table
from kerasnets.training.callbacks import parse_time_limit

RECIPE_RULE = """\
- the `modern` recipe (Nesterov SGD, cosine schedule with warm-up, label smoothing,
  weight decay, random crops), which beats `d2l` where both were measured (LeNet-5:
  0.8976 against 0.8061, the README's results);
- its cosine schedule is as long as the steps that fit the budget at the model's
  speed, measured before the run (`model.fit` steps on random batches), fractions of
  an epoch included (`--schedule-epochs`), so that it ends when the budget does; the
  run is given the whole epochs that cover it and `--time-limit` stops it at the
  budget;
- nets without normalisation layers (LeNet-5, AlexNet, VGG-11, NiN) take the d2l
  chapter's learning rate (known to train them) times (1 - momentum): the same
  effective step with momentum 0.9 as the chapter's plain SGD; the modern lr 0.1 is
  for nets with BN.
"""
NAME = "budget"
TITLE = "Accuracy per CPU-minute: the seeds' families, 15 minutes each, on Fashion-MNIST"
BUDGET = "15m"
BUDGET_SECONDS = parse_time_limit(BUDGET)
SCHEDULE_FILL = 0.85  # of the budget planned for training steps (the rest: compile, validation)
# The best of the new CIFAR ResNets for a 15-minute budget: ResNet-20, the fastest of
# them (about 3x ResNet-56's images/s, see degradation.py), so the one that sees the most
# data in the budget; degradation's report says how much depth buys per epoch.
CIFAR_RESNET = "resnet20"
SETTINGS = dict(
    dataset="fashion_mnist", recipe="modern", batch_size=128, time_limit=BUDGET,
    val_fraction=0.05,  # per-epoch validation on 3,000 training images; test: all 10,000
    backup_every="0",  # no mid-epoch backups: they would cost budget time
)
UNNORMALISED = ("lenet5", "alexnet", "vgg11", "nin")
# (arm, label, model, model options); arm names are unique even when a model repeats.
FAMILIES = (("lenet5", "LeNet-5", "lenet5", {}),
            ("bn_lenet", "BN-LeNet", "lenet5", {"norm": "batch"}),
            ("alexnet", "AlexNet", "alexnet", {}),
            ("vgg11", "VGG-11", "vgg11", {}),
            ("nin", "NiN", "nin", {}),
            ("googlenet", "GoogLeNet", "googlenet", {}),
            ("resnet18", "ResNet-18", "resnet18", {}),
            # The recipe's small-input stem (stride 1, no max-pool) trains ResNet-18 at
            # 38 images/s here, half an epoch in 15 minutes; torchvision's own stem
            # shrinks 28 px to 7 px before the first block and trains about 6x faster.
            ("resnet18_imagenet_stem", "ResNet-18, ImageNet stem", "resnet18",
             {"small_input": False}),
            ("densenet121", "DenseNet-121", "densenet121", {}),
            ("mobilenet_v2", "MobileNetV2", "mobilenet_v2", {}),
            (CIFAR_RESNET, "CIFAR " + CIFAR_RESNET, CIFAR_RESNET, {}))
# Published Fashion-MNIST test accuracies, as the repository's README quotes them
# (the data set's README benchmark table; the d2l chapter for LeNet).
PUBLISHED = {"lenet5": "about 0.8 (d2l, sigmoid LeNet)", "vgg11": "0.935 (VGG16)",
             "googlenet": "0.937 (GoogleNet)", "resnet18": "0.949 (ResNet18)",
             "resnet18_imagenet_stem": "0.949 (ResNet18)",
             "mobilenet_v2": "0.950 (MobileNet)"}
TRAIN_IMAGES = 60_000
PROBE = dict(steps=20, warmup=3)  # 5 steps had LeNet-5 at 0.7x its real speed


def smallest_input(model: str) -> int | None:
    """The image size to train at: Fashion-MNIST's 28, or the model's minimum."""
    minimum = kerasnets.model_info(model).min_input_size
    return minimum if minimum > 28 else None


def arms():
    result = []
    for name, label, model, options in FAMILIES:
        settings = {"model": model, "image_size": smallest_input(model)}
        if options:
            settings["model_options"] = dict(options)
        if model in UNNORMALISED and not options.get("norm"):
            d2l_lr = kerasnets.model_info(model).recipes["d2l"]["lr"]
            settings["lr"] = round(d2l_lr * (1 - 0.9), 6)
        result.append(Arm(name, label, settings))
    return result


def probe_spec(name: str, settings: dict) -> dict:
    """The speed probe of one arm: the model exactly as the trainer builds it from
    ``settings``, recipe included. Timing the arm's own options alone had ResNet-18
    probed with the ImageNet stem (233 images/s) where the modern recipe trains it with
    the small-input stem (41 images/s), and LeNet-5 as the sigmoid/average-pooling
    LeNet instead of the recipe's ReLU/max-pooling one."""
    from kerasnets.experiments.timing import spec
    from kerasnets.training.resolve import resolve_config

    trained = resolve_config({k: v for k, v in settings.items() if v is not None})
    return spec(name, trained.model, options=trained.model_options,
                image_size=trained.image_size, batch_size=trained.batch_size, **PROBE)


def plan(arms, settings, quick, backend, time_models):
    """Set each arm's epochs to what fits the budget at its measured speed."""
    if quick:
        return {}
    specs = [probe_spec(a.name, settings[a.name]) for a in arms]
    probed = time_models(specs, [backend])[backend]
    images = TRAIN_IMAGES * (1 - settings[arms[0].name].get("val_fraction", 0.0))
    for a in arms:
        ips = probed[a.name].get("train_images_per_second")
        # The schedule in steps, not whole epochs: rounding down to whole epochs left a
        # slow network (DenseNet-121: 1.74 epochs fit) up to half its budget unused.
        fit = round(SCHEDULE_FILL * BUDGET_SECONDS * ips / images, 3) if ips else 1.0
        settings[a.name]["epochs"] = max(1, math.ceil(fit))
        settings[a.name]["schedule_epochs"] = fit
        settings[a.name]["warmup_epochs"] = round(min(2, fit / 5), 3)
    return {a.name: probed[a.name] for a in arms}


def report(data):
    rows, plan = [], data.get("plan") or {}
    for a in sorted(data["arms"], key=lambda x: -x["metrics"].get("test_accuracy", -1)):
        m = a["metrics"]
        probed = (plan.get(a["name"]) or {}).get("train_images_per_second")
        reached = m.get("epochs_reached", m["epochs_completed"])
        rows.append([a["label"], f"{m['test_accuracy']:.4f}" if "test_accuracy" in m
                     else f"diverged ({a.get('diverged')})",
                     PUBLISHED.get(a["name"], ""), f"{reached:.2f}",
                     f"{a['settings'].get('schedule_epochs') or a['settings']['epochs']:g}",
                     f"{m.get('train_images_per_second') or 0:.0f}",
                     f"{probed:.0f}" if probed else "-",
                     f"{m['wall_seconds'] / 60:.1f}",
                     f"{a['settings']['image_size'] or 28}", f"{a['settings']['lr']:g}",
                     f"{m['trainable_params']:,}"])
    budget = data["settings"].get("time_limit") or "no limit (--quick)"
    body = [
        f"Each network trained once on Fashion-MNIST with a wall-clock budget of "
        f"{budget} (`--time-limit`: training, compilation and per-epoch validation "
        f"included; the final test on the whole test split after it), on the "
        f"{data['backend']} backend, one after the other on this machine.", "",
        "## Settings", "", _settings(data), "", "The recipe rule:", "",
        RECIPE_RULE.strip(), "", "## Results", "",
        table(["network", "test accuracy", "published (Fashion-MNIST README; d2l)",
               "epochs reached", "epochs planned", "training images/s",
               "probed images/s", "wall minutes", "input px", "lr", "parameters"], rows), "",
        "## What it shows", "", *[f"- {x}" for x in findings(data)]]
    # Against training minutes, not epochs: the question is accuracy per CPU-minute, and
    # the arms ran from half an epoch (ResNet-18) to 78 (LeNet-5) in the same time.
    panels = [("validation error against training time", "validation error (log)", [
        (a["label"], _minutes(a), error_curves(a)["test"], "o-") for a in data["arms"]],
        {"xlabel": "minutes of training (end of each epoch)", "yscale": "log"})]
    return "\n".join(body), panels


def _minutes(arm) -> list[float]:
    """Minutes of training at the end of each epoch of ``arm``'s history."""
    total, out = 0.0, []
    for row in arm["history"]:
        total += row.get("epoch_seconds") or 0.0
        out.append(total / 60)
    return out


def findings(data) -> list[str]:
    arms_ = sorted(data["arms"], key=lambda x: -x["metrics"].get("test_accuracy", -1))
    best, fastest = arms_[0], max(
        data["arms"], key=lambda x: x["metrics"].get("train_images_per_second") or 0)
    return [f"best in the budget: {best['label']} "
            f"({best['metrics'].get('test_accuracy', float('nan')):.4f} test accuracy)",
            f"fastest: {fastest['label']} "
            f"({fastest['metrics'].get('train_images_per_second') or 0:.0f} training "
            f"images/s)", *schedule_ends(data)]


def cosine_left(reached: float, schedule: float, warmup: float) -> float:
    """The fraction of the peak learning rate a warm-up + cosine schedule of ``schedule``
    epochs is at after ``reached`` epochs."""
    if reached <= warmup:
        return reached / warmup if warmup else 1.0
    done = min(1.0, (reached - warmup) / max(1e-9, schedule - warmup))
    return 0.5 * (1 + math.cos(math.pi * done))


def schedule_ends(data) -> list[str]:
    """Where the plan missed: a network the probe judged too fast has its cosine cut by
    the budget (at a learning rate above zero); one judged too slow ends before it."""
    budget = data["settings"].get("time_limit")
    if not budget:
        return []  # --quick: no budget, no plan
    cut, early = [], []
    for a in data["arms"]:
        m, s = a["metrics"], a["settings"]
        reached, planned = m.get("epochs_reached"), s.get("schedule_epochs")
        if reached is None or not planned:
            continue
        if reached < 0.98 * planned:
            left = cosine_left(reached, planned, s.get("warmup_epochs") or 0)
            cut.append(f"{a['label']} at {reached:.2f} of {planned:g} epochs "
                       f"(learning rate at {left:.0%} of its peak)")
        elif m["wall_seconds"] < 0.95 * BUDGET_SECONDS:
            early.append(f"{a['label']} after {m['wall_seconds'] / 60:.1f} minutes")
    lines = []
    if cut:
        lines.append("the speed probe (20 `model.fit` steps on random batches, without "
                     "the input pipeline) judged these networks faster than they trained, "
                     "so the budget cut their schedule before its end: " + "; ".join(cut))
    if early:
        lines.append("the probe judged these slower than they trained, so they ended "
                     f"their schedule before the {budget}: " + "; ".join(early))
    return lines


def _settings(data):
    from kerasnets.experiments.common import describe_settings

    return describe_settings(data["settings"])
