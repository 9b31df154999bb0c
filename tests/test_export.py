"""``model.export``: a TensorFlow SavedModel and an ONNX file give the Keras model's
logits, for representative families (plain/residual, depthwise + squeeze-excite,
inception branches and ceil-mode pooling), on the backends where Keras can export them.

What Keras 3.15 can export: TF SavedModel from TensorFlow and JAX (jax2tf); ONNX
from TensorFlow (tf2onnx) and torch (torch.onnx). JAX's ONNX path (jax2onnx) writes
a MaxPool that onnxruntime rejects ("Unsupported pooling size"), and torch cannot
write a SavedModel: those two are skipped, with the reason.
"""

import keras
import numpy as np
import pytest

import kerasnets
from tests.helpers import record, scaled_diff

BACKEND = keras.backend.backend()
MODELS = ["resnet18", "mobilenet_v3_small", "googlenet"]
TOLERANCE = 1e-4  # max abs difference, relative to the logits' scale where that exceeds 1


def model_and_logits(name):
    keras.utils.set_random_seed(0)
    model = kerasnets.create_model(name, num_classes=10, input_shape=(64, 64, 3))
    x = np.random.RandomState(1).rand(2, 64, 64, 3).astype("float32")
    # A direct call (not predict) marks the model as called, which ONNX export needs.
    return model, x, keras.ops.convert_to_numpy(model(x, training=False))


@pytest.mark.skipif(BACKEND == "torch", reason="Keras cannot export a SavedModel from torch")
@pytest.mark.parametrize("name", MODELS)
def test_saved_model_gives_the_same_logits(tmp_path, name):
    import tensorflow as tf

    model, x, logits = model_and_logits(name)
    model.export(str(tmp_path / name), format="tf_saved_model", verbose=False)
    loaded = tf.saved_model.load(str(tmp_path / name))
    exported = loaded.serve(tf.constant(x)).numpy()
    record("export_saved_model", name, scaled_diff(exported, logits))
    assert scaled_diff(exported, logits) < TOLERANCE


@pytest.mark.skipif(BACKEND == "jax", reason="jax2onnx writes a MaxPool onnxruntime rejects")
@pytest.mark.parametrize("name", MODELS)
def test_onnx_gives_the_same_logits(tmp_path, name):
    onnxruntime = pytest.importorskip("onnxruntime")

    model, x, logits = model_and_logits(name)
    path = str(tmp_path / f"{name}.onnx")
    model.export(path, format="onnx", verbose=False)
    session = onnxruntime.InferenceSession(path)
    exported = session.run(None, {session.get_inputs()[0].name: x})[0]
    record("export_onnx", name, scaled_diff(exported, logits))
    assert scaled_diff(exported, logits) < TOLERANCE
