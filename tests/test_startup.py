"""Settings kerasnets makes before a backend starts (kerasnets/backends/startup.py)."""

import os
import platform

import keras
import pytest

from kerasnets.backends import startup


def test_startup_sets_only_what_the_user_has_not():
    environ = {}
    assert startup.apply(environ, modules={}, machine="x86_64") == {
        "TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "1"}
    assert environ["TF_ENABLE_ONEDNN_OPTS"] == "1"

    mine = {"TF_ENABLE_ONEDNN_OPTS": "0"}
    startup.apply(mine, modules={}, machine="x86_64")
    assert mine == {"TF_ENABLE_ONEDNN_OPTS": "0", "TF_CPP_MIN_LOG_LEVEL": "2"}


def test_startup_leaves_other_cpus_and_a_started_tensorflow_alone():
    environ = {}
    startup.apply(environ, modules={}, machine="aarch64")
    assert "TF_ENABLE_ONEDNN_OPTS" not in environ  # measured on x86 only
    late = {}
    assert startup.apply(late, modules={"tensorflow": object()}, machine="x86_64") == {}
    assert late == {}  # TensorFlow read its settings at import: too late to set them


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's own setting")
@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 only")
def test_tensorflow_runs_its_onednn_kernels_after_import_kerasnets():
    """conftest imports kerasnets before Keras, as scripts/train.py does, so the suite
    runs TensorFlow as users get it: with oneDNN's CPU kernels on."""
    from tensorflow.python.util import _pywrap_util_port

    if os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "0":
        pytest.skip("TF_ENABLE_ONEDNN_OPTS=0 exported by the user")
    assert _pywrap_util_port.IsMklEnabled()
