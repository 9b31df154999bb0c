"""Training glue: settings and recipes, optimisers, callbacks, the run itself."""

from kerasnets.training.config import TrainConfig
from kerasnets.training.run import TrainingError, TrainingInterrupted, resolve_config, train

__all__ = ["TrainConfig", "TrainingError", "TrainingInterrupted", "resolve_config", "train"]
