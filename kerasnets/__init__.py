"""kerasnets: the classic image-classification CNNs, written once in Keras 3.

>>> import kerasnets
>>> kerasnets.list_models("resnet*")
>>> model = kerasnets.create_model("resnet18", num_classes=10, input_shape=(32, 32, 3),
...                                small_input=True)
"""

from kerasnets.backends import startup as _startup

# Settings a backend reads once, when it starts (TensorFlow's quieter logs and oneDNN's
# CPU kernels; XLA:CPU's own convolutions for JAX): set before Keras imports TensorFlow and
# before JAX starts; a value the user exported wins (kerasnets/backends/startup.py).
_startup.apply()

import keras as _keras  # noqa: E402  (keras before anything that may import tensorflow)

_startup.apply(backend=_keras.backend.backend())  # JAX's XLA flags: JAX has not started yet

from kerasnets.backends import keras_patches as _keras_patches  # noqa: E402

# On torch (eager), a Functional model's layers skip Keras' per-call bookkeeping where it
# would do nothing: same calls, same results (kerasnets/backends/keras_patches.py).
_keras_patches.torch_direct_layer_calls()

from kerasnets import layers as _layers  # noqa: F401,E402  (registers the custom layers)
from kerasnets.factory import create_model  # noqa: E402
from kerasnets.features import FeatureInfo, FeatureModel  # noqa: E402
from kerasnets.interop.torchvision import load_torchvision_weights  # noqa: E402
from kerasnets.profiling import count_macs, count_params  # noqa: E402
from kerasnets.registry import ModelInfo, list_models, model_info  # noqa: E402

list_models()  # imports every family: registers its models and any custom layer it defines

__version__ = "0.1.0"

__all__ = ["FeatureInfo", "FeatureModel", "ModelInfo", "count_macs", "count_params",
           "create_model", "list_models", "load_torchvision_weights", "model_info"]
