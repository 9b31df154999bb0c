"""kerasnets: the classic image-classification CNNs, written once in Keras 3.

>>> import kerasnets
>>> kerasnets.list_models("resnet*")
>>> model = kerasnets.create_model("resnet18", num_classes=10, input_shape=(32, 32, 3),
...                                small_input=True)
"""

import keras as _keras  # import keras before anything that may import tensorflow

from kerasnets import models as _models  # noqa: F401  (registers the zoo)
from kerasnets.profiling import count_macs, count_params
from kerasnets.registry import ModelInfo, create_model, list_models, load_weights, model_info

__version__ = "0.1.0"

__all__ = ["ModelInfo", "count_macs", "count_params", "create_model", "list_models",
           "load_weights", "model_info"]
