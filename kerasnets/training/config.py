"""Every training setting, declared once: type, default, flag, help, check, group.

Each field of :class:`TrainConfig` is one setting, made with
:func:`~kerasnets.training.options.option`; the command line (:func:`build_parser`),
the checks of values from the command line, ``config.json`` and Python, the
``Preprocessing`` of a run and ``HOST_SETTINGS`` are all derived from these
fields. Adding a setting is adding a field here (and using it where it acts).

Precedence: the defaults below < the recipe (``--recipe``) < explicit flags.
"""

# No ``from __future__ import annotations``: options.value_type reads the field types.
import argparse
import json
from dataclasses import asdict, dataclass, fields

from kerasnets.data import DATASETS, PIPELINES
from kerasnets.training.callbacks import backup_every_problem, time_limit_problem
from kerasnets.training.distribute import MODES as DISTRIBUTE_MODES
from kerasnets.training.errors import SettingError
from kerasnets.training.optim import OPTIMIZERS, SCHEDULES
from kerasnets.training.options import (add_flags, declared, flag_name, fraction, help_text,
                                        non_negative, option, positive, problem)
from kerasnets.training.recipes import RECIPES

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
DATA, OPTIMISATION, EXECUTION = "Data", "Optimisation", "Execution"
DISTRIBUTION, OUTPUT = "Distribution", "Output"
FINETUNING = "Fine-tuning (kerasnets.training.finetune)"
HOST = dict(group=DISTRIBUTION, host=True)


@dataclass
class TrainConfig:
    # what to train
    model: str = option("lenet5", "a name from kerasnets.list_models()", DATA, flag=False)
    dataset: str = option(
        "fashion_mnist", "data set: " + "; ".join(f"{k}: {v.description}" for k, v in DATASETS.items()),
        DATA, choices=tuple(DATASETS))
    data_dir: str | None = option(
        None, "where the data set's files are, the only place looked when given (a missing "
        "or incomplete DIR is an error); without it: $KERASNETS_DATA, ~/.keras/datasets, "
        "/usr/share/datasets. Required for --dataset folder", DATA,
        metavar="DIR", default_text="search the usual places")
    download: bool = option(True, "download the data set through Keras when it is found "
                            "nowhere (needs internet)", DATA)
    recipe: str = option("modern", "; ".join(f"{k}: {v}" for k, v in RECIPES.items()),
                         OPTIMISATION, choices=tuple(RECIPES))
    model_options: dict = option(
        None, "model option, e.g. small_input=true, drop_path_rate=0.1, "
        "width_multiplier=0.5 (repeatable)", DATA, default_factory=dict, flag=False,
        default_text="the model's own, or the recipe's")
    # data
    image_size: int | None = option(
        None, "resize images to PX x PX (d2l: 224 for AlexNet/VGG/NiN, 96 for the others). "
        "A folder data set has no size of its own: PX, else the recipe's size (modern: 224; "
        "d2l: the model's), else the images' own, which must then be the same for all",
        DATA, limit=positive, metavar="PX", default_text="the data set's own size")
    to_rgb: bool = option(False, "repeat grayscale to three channels (the model then "
                          "takes RGB)", DATA)
    val_fraction: float = option(0.0, "hold out F of the training set for validation (0: "
                                 "validate on the test split, as d2l does)", DATA,
                                 limit=fraction, metavar="F")
    train_subset: int | None = option(
        None, "train on a stratified, seeded subset of N images of the training split "
        "(after --val-fraction is held out), for reduced reproductions", DATA,
        limit=positive, metavar="N", default_text="all of it")
    test_subset: int | None = option(
        None, "test (at every epoch when it is the validation split, and at the end) on a "
        "stratified, seeded subset of N images of the test split, for reduced "
        "reproductions", DATA, limit=positive, metavar="N", default_text="all of it")
    normalize: str = option("unit", "unit: x/255; standardize: per-channel mean/std of "
                            "the training split; imagenet: ImageNet's mean/std (RGB), as "
                            "ImageNet weights expect", DATA,
                            choices=("unit", "standardize", "imagenet"), to_preprocessing=True)
    crop_padding: int = option(0, "random crop after zero-padding PX pixels (0: off)", DATA,
                               limit=non_negative, metavar="PX", to_preprocessing=True)
    flip: bool = option(False, "random horizontal flips", DATA, to_preprocessing=True)
    randaugment: bool = option(False, "RandAugment (2 ops, magnitude 0.5; needs RGB)",
                               DATA, to_preprocessing=True)
    random_erasing: float = option(0.0, "erase a random rectangle with probability P", DATA,
                                   limit=fraction, metavar="P", to_preprocessing=True)
    mixup: float = option(0.0, "MixUp alpha (0: off)", DATA, limit=non_negative,
                          metavar="ALPHA", to_preprocessing=True)
    cutmix: float = option(0.0, "CutMix alpha (0: off)", DATA, limit=non_negative,
                           metavar="ALPHA", to_preprocessing=True)
    strict_images: bool = option(False, "folder data sets: an unusable image file (empty, "
                                 "truncated, not an image, too large) is an error naming "
                                 "them all, instead of being skipped and listed in "
                                 "config.json and metrics.json", DATA)
    image_cache: str | None = option(
        None, "folder data sets: keep decoded images for later epochs, in 'memory' or in a "
        "memory-mapped file in the existing directory DIR (removed after the run)", DATA,
        metavar="memory|DIR", default_text="off: every epoch decodes again")
    pipeline: str = option("tfdata", "input pipeline: tfdata (tf.data) or pydataset "
                           "(keras.utils.PyDataset)", DATA, choices=tuple(PIPELINES))
    workers: int = option(2, "PyDataset workers", DATA, limit=positive)
    use_multiprocessing: bool = option(False, "PyDataset workers as processes, not "
                                       "threads", DATA)
    # optimisation
    epochs: int = option(10, "epochs to train", OPTIMISATION, limit=positive)
    batch_size: int = option(128, "batch size (the global batch when distributed)",
                             OPTIMISATION, limit=positive)
    steps_per_epoch: int | None = option(None, "train N batches per epoch (short runs)",
                                         OPTIMISATION, limit=positive, metavar="N",
                                         default_text="the whole set")
    optimizer: str = option("sgd", "optimizer", OPTIMISATION, choices=OPTIMIZERS)
    lr: float = option(0.1, "(peak) learning rate", OPTIMISATION, limit=positive)
    momentum: float = option(0.9, "SGD momentum", OPTIMISATION, limit=non_negative)
    nesterov: bool = option(False, "Nesterov momentum", OPTIMISATION)
    weight_decay: float = option(0.0, "decoupled weight decay (not on BN parameters and "
                                 "biases)", OPTIMISATION, limit=non_negative, metavar="WD")
    schedule: str = option("constant", "learning-rate schedule", OPTIMISATION,
                           choices=SCHEDULES)
    warmup_epochs: float = option(0.0, "linear warm-up (cosine and constant schedules)",
                                  OPTIMISATION, limit=non_negative, metavar="E")
    schedule_epochs: float | None = option(
        None, "length of the learning-rate schedule in epochs, when it is to end before "
        "--epochs do: a --time-limit run planned in steps ends its cosine at the budget "
        "(fractions allowed)", OPTIMISATION, limit=positive, metavar="E",
        default_text="--epochs")
    step_epochs: int = option(30, "step schedule: decay every E epochs", OPTIMISATION,
                              limit=positive, metavar="E")
    step_gamma: float = option(0.1, "step schedule: decay factor", OPTIMISATION,
                               limit=positive)
    label_smoothing: float = option(0.0, "label smoothing of the cross-entropy",
                                    OPTIMISATION, limit=fraction, metavar="EPS")
    clip_norm: float | None = option(None, "clip the global gradient norm", OPTIMISATION,
                                     limit=positive, metavar="NORM", default_text="off")
    time_limit: str | None = option(
        None, "stop training at the first batch end after this wall time since training "
        "began (90s, 15m, 1h; per-epoch validation included), then save and test the "
        "model as a finished run does (a resumed run gets what is left of it); "
        "metrics.json records the epochs reached",
        OPTIMISATION, limit=time_limit_problem, metavar="TIME", default_text="off")
    # fine-tuning
    weights: str | None = option(
        None, "start from pretrained weights: imagenet (torchvision's, from the torch.hub "
        "cache), a .keras or .weights.h5 file, a run directory (its model.keras, "
        "architecture and preprocessing) or a torchvision .pth state_dict. The classifier "
        "is new; input settings follow the weights unless given", FINETUNING,
        metavar="SOURCE", default_text="random initialisation")
    freeze: str = option("none", "keep fixed: none; backbone (all but the classifier); or "
                         "a layer or stage name (e.g. layer3): every layer before it. Frozen "
                         "BatchNormalization uses its moving statistics", FINETUNING,
                         limit=lambda v: None if v.strip() else "must not be empty",
                         metavar="WHAT")
    head_epochs: int = option(0, "train only the new classifier for the first N epochs, "
                              "then as --freeze says (one run, two phases)", FINETUNING,
                              limit=non_negative, metavar="N")
    backbone_lr_multiplier: float = option(
        1.0, "learning rate of every layer but the classifier, as a multiple of --lr "
        "(e.g. 0.1; after --head-epochs)", FINETUNING, limit=positive, metavar="M")
    # execution
    seed: int = option(0, "seed of the initialisation, shuffles and augmentation",
                       EXECUTION)
    precision: str = option("float32", "Keras dtype policy", EXECUTION, choices=PRECISIONS)
    jit_compile: str = option("auto", "XLA / torch.compile as Keras does it", EXECUTION,
                              choices=("auto", "true", "false"))
    steps_per_execution: int = option(1, "training steps per compiled call", EXECUTION,
                                      limit=positive, metavar="N")
    data_format: str = option("channels_last", "image layout inside the model", EXECUTION,
                              choices=("channels_last", "channels_first"))
    # distribution (kerasnets.training.distribute)
    distribute: str = option(
        "none", "data: data-parallel over every local device (JAX: "
        "keras.distribution.DataParallel; TensorFlow: MirroredStrategy, "
        "MultiWorkerMirroredStrategy when TF_CONFIG names several workers). --batch-size is "
        "the global batch", DISTRIBUTION, choices=DISTRIBUTE_MODES)
    lr_scaling: str = option("none", "linear: lr x batch-size / the recipe's batch size "
                             "(Goyal et al.), for a global batch grown with the replicas",
                             DISTRIBUTION, choices=("none", "linear"))
    lr_reference_batch: int | None = option(
        None, "the batch size the recipe's lr is meant for (--lr-scaling)", DISTRIBUTION,
        limit=positive, flag=False, default_text="the recipe's batch size")
    cpu_devices: int | None = option(None, "split the CPU into N devices, to try "
                                     "--distribute data on one machine", **HOST,
                                     limit=positive, metavar="N", default_text="off")
    coordinator: str | None = option(None, "JAX, several hosts: process 0's address",
                                     **HOST, metavar="HOST:PORT",
                                     default_text="$KERAS_DISTRIBUTION_JOB_ADDRESSES")
    num_processes: int | None = option(None, "JAX, several hosts: how many", **HOST,
                                       limit=positive, metavar="N",
                                       default_text="$KERAS_DISTRIBUTION_NUM_PROCESSES")
    process_id: int | None = option(None, "JAX, several hosts: this one, 0 is the chief",
                                    **HOST, limit=non_negative, metavar="I",
                                    default_text="$KERAS_DISTRIBUTION_PROCESS_ID")
    distribute_timeout: float = option(300.0, "give up when the other processes are not "
                                       "there after S seconds", **HOST, limit=positive,
                                       metavar="S")
    # output
    output_dir: str = option("saved_models", "where runs are saved", OUTPUT, metavar="DIR")
    run_name: str | None = option(None, "run directory name; never overwritten", OUTPUT,
                                  metavar="NAME", default_text="MODEL-DATASET-TIMESTAMP")
    verbose: str = option("auto", "Keras progress output", OUTPUT,
                          choices=("auto", "0", "1", "2"), host=True)
    backup_every: str = option("10m", "also back up within an epoch every N minutes (10m) "
                               "or N steps (500steps), for --resume mid-epoch; 0: at epoch "
                               "ends only", OUTPUT, limit=backup_every_problem, host=True,
                               metavar="EVERY")

    def __post_init__(self):
        problems = [f"{flag_name(f.name)}: {message}" for f, _ in declared(TrainConfig)
                    if (message := problem(f, getattr(self, f.name)))]
        if problems:
            raise SettingError("Invalid setting(s): " + "; ".join(problems) + ".")

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, data):
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise SettingError(f"Unknown training setting(s): {', '.join(sorted(unknown))}.")
        return cls(**data)

    def preprocessing_settings(self) -> dict:
        """The settings that go into the run's ``kerasnets.data.Preprocessing``."""
        return {f.name: getattr(self, f.name) for f, spec in declared(TrainConfig)
                if spec.to_preprocessing}


# Where this process stands in a cluster: may differ per host, so --resume takes them.
HOST_SETTINGS = tuple(f.name for f, spec in declared(TrainConfig) if spec.host)


def _parse_model_option(text):
    """``KEY=VALUE`` with VALUE read as JSON when it can be (true, 0.1, "x", [1, 2])."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    try:
        value = json.loads(value)
    except json.JSONDecodeError:
        value = {"True": True, "False": False, "None": None}.get(value, value)
    return key.strip(), value


def build_parser(prog="train.py"):
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Train a kerasnets model with model.fit on any Keras backend "
                    "(KERAS_BACKEND=tensorflow|jax|torch) and keep everything under "
                    "OUTPUT_DIR/MODEL-DATASET-TIMESTAMP/.",
        epilog="Precedence: built-in defaults < --recipe < your flags. "
               "Example: KERAS_BACKEND=jax python scripts/train.py resnet34 --recipe d2l")
    by_name = {f.name: f for f, _ in declared(TrainConfig)}
    parser.add_argument("model", nargs="?", help=help_text(by_name["model"]))
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run "
                        "from its last backup (an epoch's end, or within an epoch: "
                        "--backup-every), with the settings in its config.json; a "
                        "finished run is refused")
    groups = {DATA: parser.add_argument_group(DATA)}
    groups[DATA].add_argument("--model-option", action="append", type=_parse_model_option,
                              default=[], metavar="KEY=VALUE", dest="model_options",
                              help=help_text(by_name["model_options"]))
    add_flags(parser, TrainConfig, groups)
    return parser


def explicit_settings(args) -> dict:
    """The settings the user gave on the command line."""
    values = {k: v for k, v in vars(args).items()
              if k not in ("resume", "model_options") and v is not None}
    if args.model_options:
        values["model_options"] = dict(args.model_options)
    return values
