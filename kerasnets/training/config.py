"""Every training setting, with its default, its flag and its help.

Precedence: the defaults below < the recipe (``--recipe``) < explicit flags.
``TRAIN_OPTIONS`` is the single table the CLI, the recipes and ``config.json``
are built from, so a setting is added in exactly one place.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field, fields

from kerasnets.data.datasets import DATASETS
from kerasnets.data.pipelines import PIPELINES
from kerasnets.training.distribute import MODES as DISTRIBUTE_MODES
from kerasnets.training.optim import OPTIMIZERS, SCHEDULES
from kerasnets.training.recipes import RECIPES

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


@dataclass
class TrainConfig:
    # what to train
    model: str = "lenet5"
    dataset: str = "fashion_mnist"
    data_dir: str | None = None
    download: bool = True
    recipe: str = "modern"
    model_options: dict = field(default_factory=dict)
    # data
    image_size: int | None = None
    to_rgb: bool = False
    val_fraction: float = 0.0
    normalize: str = "unit"
    crop_padding: int = 0
    flip: bool = False
    randaugment: bool = False
    random_erasing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    pipeline: str = "tfdata"
    workers: int = 2
    use_multiprocessing: bool = False
    # optimisation
    epochs: int = 10
    batch_size: int = 128
    steps_per_epoch: int | None = None
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    step_epochs: int = 30
    step_gamma: float = 0.1
    label_smoothing: float = 0.0
    clip_norm: float | None = None
    # execution
    seed: int = 0
    precision: str = "float32"
    jit_compile: str = "auto"
    steps_per_execution: int = 1
    data_format: str = "channels_last"
    # distribution (kerasnets.training.distribute)
    distribute: str = "none"
    lr_scaling: str = "none"
    lr_reference_batch: int | None = None
    cpu_devices: int | None = None
    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    distribute_timeout: float = 300.0
    # output
    output_dir: str = "saved_models"
    run_name: str | None = None
    verbose: str = "auto"

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown training setting(s): {', '.join(sorted(unknown))}.")
        return cls(**data)


def _parse_option(text):
    """``KEY=VALUE`` with VALUE read as JSON when it can be (true, 0.1, "x", [1, 2])."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        value = json.loads(value)
    except json.JSONDecodeError:
        value = {"True": True, "False": False, "None": None}.get(value, value)
    return key.strip(), value


def _positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return value
    return parse


def _non_negative(kind):
    def parse(text):
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
        return value
    return parse


def _fraction(text):
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


# (flag, dest, argparse keywords); every default is None so that we can tell what
# the user set from what the recipe or TrainConfig fills in.
TRAIN_OPTIONS = {
    "Data": [
        ("--dataset", dict(choices=list(DATASETS), help="data set (default fashion_mnist): "
                           + "; ".join(f"{k}: {v}" for k, v in DATASETS.items()))),
        ("--data-dir", dict(metavar="DIR", help="where the data set's files are; searched "
                            "first (then $KERASNETS_DATA, ~/.keras/datasets, "
                            "/usr/share/datasets). Required for --dataset folder")),
        ("--download", dict(action=argparse.BooleanOptionalAction, help="download the "
                            "data set through Keras when it is found nowhere (default on; "
                            "needs internet)")),
        ("--image-size", dict(type=_positive(int), metavar="PX", help="resize images to "
                              "PX x PX (d2l: 224 for AlexNet/VGG/NiN, 96 for the others)")),
        ("--to-rgb", dict(action=argparse.BooleanOptionalAction, help="repeat grayscale to "
                          "three channels (the model then takes RGB)")),
        ("--val-fraction", dict(type=_fraction, metavar="F", help="hold out F of the "
                                "training set for validation (default 0: validate on the "
                                "test split, as d2l does)")),
        ("--normalize", dict(choices=["unit", "standardize"], help="unit: x/255; "
                             "standardize: per-channel mean/std of the training split")),
        ("--crop-padding", dict(type=_non_negative(int), metavar="PX", help="random crop "
                                "after zero-padding PX pixels (0: off)")),
        ("--flip", dict(action=argparse.BooleanOptionalAction, help="random horizontal "
                        "flips")),
        ("--randaugment", dict(action=argparse.BooleanOptionalAction, help="RandAugment "
                               "(2 ops, magnitude 0.5; needs RGB)")),
        ("--random-erasing", dict(type=_fraction, metavar="P", help="erase a random "
                                  "rectangle with probability P")),
        ("--mixup", dict(type=_non_negative(float), metavar="ALPHA", help="MixUp alpha "
                         "(0: off)")),
        ("--cutmix", dict(type=_non_negative(float), metavar="ALPHA", help="CutMix alpha "
                          "(0: off)")),
        ("--pipeline", dict(choices=list(PIPELINES), help="tfdata (default) or pydataset "
                            "(keras.utils.PyDataset)")),
        ("--workers", dict(type=_positive(int), help="PyDataset workers (default 2)")),
        ("--use-multiprocessing", dict(action=argparse.BooleanOptionalAction,
                                       help="PyDataset workers as processes, not threads")),
    ],
    "Optimisation": [
        ("--epochs", dict(type=_positive(int))),
        ("--batch-size", dict(type=_positive(int))),
        ("--steps-per-epoch", dict(type=_positive(int), metavar="N", help="train N batches "
                                   "per epoch (short runs); default: the whole set")),
        ("--optimizer", dict(choices=list(OPTIMIZERS))),
        ("--lr", dict(type=_positive(float), help="(peak) learning rate")),
        ("--momentum", dict(type=_non_negative(float), help="SGD momentum")),
        ("--nesterov", dict(action=argparse.BooleanOptionalAction, help="Nesterov momentum")),
        ("--weight-decay", dict(type=_non_negative(float), metavar="WD", help="decoupled "
                                "weight decay (not on BN parameters and biases)")),
        ("--schedule", dict(choices=list(SCHEDULES), help="learning-rate schedule")),
        ("--warmup-epochs", dict(type=_non_negative(float), metavar="E", help="linear "
                                 "warm-up (cosine and constant schedules)")),
        ("--step-epochs", dict(type=_positive(int), metavar="E", help="step schedule: "
                               "decay every E epochs")),
        ("--step-gamma", dict(type=_positive(float), help="step schedule: decay factor")),
        ("--label-smoothing", dict(type=_fraction, metavar="EPS")),
        ("--clip-norm", dict(type=_positive(float), metavar="NORM", help="clip the global "
                             "gradient norm")),
    ],
    "Execution": [
        ("--seed", dict(type=int)),
        ("--precision", dict(choices=list(PRECISIONS), help="Keras dtype policy")),
        ("--jit-compile", dict(choices=["auto", "true", "false"], help="XLA / torch.compile "
                               "as Keras does it (default auto)")),
        ("--steps-per-execution", dict(type=_positive(int), metavar="N", help="training "
                                       "steps per compiled call")),
        ("--data-format", dict(choices=["channels_last", "channels_first"])),
    ],
    "Distribution": [
        ("--distribute", dict(choices=list(DISTRIBUTE_MODES), help="data: data-parallel over every "
                              "local device (JAX: keras.distribution.DataParallel; "
                              "TensorFlow: MirroredStrategy, MultiWorkerMirroredStrategy "
                              "when TF_CONFIG names several workers). --batch-size is the "
                              "global batch")),
        ("--lr-scaling", dict(choices=["none", "linear"], help="linear: lr x batch-size / "
                              "the recipe's batch size (Goyal et al.), for a global batch "
                              "grown with the replicas")),
        ("--cpu-devices", dict(type=_positive(int), metavar="N", help="split the CPU into N "
                               "devices, to try --distribute data on one machine")),
        ("--coordinator", dict(metavar="HOST:PORT", help="JAX, several hosts: process 0's "
                               "address (or $KERAS_DISTRIBUTION_JOB_ADDRESSES)")),
        ("--num-processes", dict(type=_positive(int), metavar="N", help="JAX, several "
                                 "hosts: how many (or $KERAS_DISTRIBUTION_NUM_PROCESSES)")),
        ("--process-id", dict(type=_non_negative(int), metavar="I", help="JAX, several "
                              "hosts: this one, 0 is the chief (or "
                              "$KERAS_DISTRIBUTION_PROCESS_ID)")),
        ("--distribute-timeout", dict(type=_positive(float), metavar="S", help="give up "
                                      "when the other processes are not there after S "
                                      "seconds (default 300)")),
    ],
    "Output": [
        ("--output-dir", dict(metavar="DIR", help="where runs are saved (default "
                              "saved_models)")),
        ("--run-name", dict(metavar="NAME", help="run directory name (default "
                            "MODEL-DATASET-TIMESTAMP); never overwritten")),
        ("--verbose", dict(choices=["auto", "0", "1", "2"], help="Keras progress output")),
    ],
}


def build_parser(prog="train.py"):
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train a kerasnets model with model.fit on any Keras backend "
                    "(KERAS_BACKEND=tensorflow|jax|torch) and keep everything under "
                    "OUTPUT_DIR/MODEL-DATASET-TIMESTAMP/.",
        epilog="Precedence: built-in defaults < --recipe < your flags. "
               "Example: KERAS_BACKEND=jax python scripts/train.py resnet34 --recipe d2l")
    parser.add_argument("model", nargs="?", help="a name from kerasnets.list_models() "
                        "(default lenet5)")
    parser.add_argument("--recipe", choices=list(RECIPES), help="; ".join(
        f"{k}: {v[1]}" for k, v in RECIPES.items()) + " (default modern)")
    parser.add_argument("--model-option", action="append", type=_parse_option, default=[],
                        metavar="KEY=VALUE", dest="model_options",
                        help="model option, e.g. small_input=true, drop_path_rate=0.1, "
                             "width_multiplier=0.5 (repeatable)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run "
                        "from its last completed epoch, with the settings in its "
                        "config.json")
    for title, options in TRAIN_OPTIONS.items():
        group = parser.add_argument_group(title)
        for flag, kwargs in options:
            group.add_argument(flag, default=None, **kwargs)
    parser.set_defaults(**{f.name: None for f in fields(TrainConfig)
                           if f.name not in ("model_options",)})
    return parser


# Where this process stands in a cluster: may differ per host, so --resume takes them.
HOST_SETTINGS = ("cpu_devices", "coordinator", "num_processes", "process_id",
                 "distribute_timeout", "verbose")


def explicit_settings(args) -> dict:
    """The settings the user gave on the command line."""
    values = {k: v for k, v in vars(args).items()
              if k not in ("resume", "model_options") and v is not None}
    if args.model_options:
        values["model_options"] = dict(args.model_options)
    if "jit_compile" in values:
        values["jit_compile"] = values["jit_compile"].lower()
    return values
