"""Everything that can be wrong with a run's settings or data, found before the first
step, and what the run feeds its model: the data, its ``Preprocessing``, the input shape."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from kerasnets.data import Preprocessing, channel_statistics, load_dataset
from kerasnets.data.splits import stratified_subset
from kerasnets.factory import check_options
from kerasnets.registry import IMAGENET_MEAN, IMAGENET_STD, model_info
from kerasnets.training import phases
from kerasnets.training.config import TrainConfig
from kerasnets.training.errors import TrainingError


@dataclass
class Prepared:
    config: TrainConfig
    data: object
    preprocessing: Preprocessing
    input_shape: tuple


def check_combinations(c: TrainConfig):
    """Settings that are valid one by one (``TrainConfig`` checks those) but not together."""
    problems = []
    if c.use_multiprocessing and c.pipeline != "pydataset":
        problems.append("--use-multiprocessing needs --pipeline pydataset")
    if c.dataset == "folder" and not c.data_dir:
        problems.append("--dataset folder needs --data-dir DIR (one sub-folder per class)")
    problems += phases.problems(c)
    try:  # the check create_model makes, made before the data are loaded
        check_options(c.model, c.model_options)
    except ValueError as error:
        problems.append(str(error).rstrip("."))
    if problems:
        raise TrainingError("Cannot train: " + "; ".join(problems) + ".")


def prepare(config: TrainConfig) -> Prepared:
    """Check the settings and load the data: every error before any training."""
    check_combinations(config)
    info = model_info(config.model)
    size = config.image_size
    if size is not None and size < info.min_input_size:
        raise TrainingError(
            f"--image-size {size} is too small for {config.model}: it needs at least "
            f"{info.min_input_size}x{info.min_input_size}. Use --image-size "
            f"{max(info.min_input_size, 32)} or more.")
    data = load_dataset(config.dataset, data_dir=config.data_dir, download=config.download,
                        val_fraction=config.val_fraction, seed=config.seed, image_size=size,
                        strict_images=config.strict_images, image_cache=config.image_cache)
    for split in ("train", "test"):
        count = getattr(config, f"{split}_subset")
        if count is not None:
            data = _subset(data, split, count, config.seed)
    height, width, channels = data.input_shape
    if min(height, width) < info.min_input_size:
        raise TrainingError(
            f"{config.dataset} images are {height}x{width}, too small for {config.model} "
            f"(needs {info.min_input_size}x{info.min_input_size}): add --image-size "
            f"{32 * math.ceil(info.min_input_size / 32)}.")
    channels = 3 if config.to_rgb else channels
    statistics = {}
    if config.normalize == "standardize":
        mean, std = channel_statistics(data.x_train, channels)
        statistics = dict(mean=mean, std=std)
    elif config.normalize == "imagenet":
        if channels != 3:
            raise TrainingError("--normalize imagenet needs RGB input: add --to-rgb.")
        statistics = dict(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    try:
        preprocessing = Preprocessing(channels=channels, **statistics,
                                      **config.preprocessing_settings())
    except ValueError as error:
        raise TrainingError(f"Cannot train: {error}") from None
    shape = (height, width, channels)
    if config.data_format == "channels_first":
        shape = (channels, height, width)
    return Prepared(config, data, preprocessing, shape)


def _subset(data, split: str, size: int, seed: int):
    """``data`` with ``size`` images of its ``split``, stratified and seeded."""
    x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
    if size >= len(x):
        raise TrainingError(f"--{split}-subset {size} is not less than the {len(x)} "
                            f"{split} images of {data.name}: use a smaller N, or drop "
                            f"the flag.")
    chosen = stratified_subset(y, size, seed)
    # a streamed folder keeps paths: take them, decode nothing
    x = x.subset(chosen) if hasattr(x, "subset") else x[chosen]
    return replace(data, **{f"x_{split}": x, f"y_{split}": y[chosen]})
