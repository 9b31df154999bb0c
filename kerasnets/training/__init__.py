"""Training glue: settings and recipes, optimisers, callbacks, the run itself."""

from kerasnets.training.config import TrainConfig
from kerasnets.training.errors import TrainingError, TrainingInterrupted
from kerasnets.training.resolve import resolve_config
from kerasnets.training.run import train

__all__ = ["TrainConfig", "TrainingError", "TrainingInterrupted", "resolve_config", "train"]
