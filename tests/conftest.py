"""Shared fixtures. The suite runs once per backend: KERAS_BACKEND=tensorflow|jax|torch.

Import order matters on this stack: torch (and triton, which torchvision pulls in)
must be loaded before TensorFlow or the process segfaults, and keras must be
imported before TensorFlow on the torch backend. So: torch, then keras.
"""

import gc
import os
import sys
import tempfile
from pathlib import Path

# JAX: reuse XLA compilations between identical graphs (a model, its from_config clone
# and its reloaded copy compile once). Set before jax is imported.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "kerasnets-test-jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# The tests check results, not speed: XLA's fastest compilation halves the JAX suite.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")

try:  # optional: only the parity tests need torchvision
    import torch  # noqa: F401
    import torchvision  # noqa: F401
except ImportError:
    pass

import kerasnets  # noqa: E402,F401  (its start-up settings before Keras imports TensorFlow, as for users)
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SAMPLE_DIR = ROOT / "tests" / "data" / "fashion_mnist_sample"


def pytest_report_header(config):
    return f"keras {keras.__version__}, backend {keras.backend.backend()}"


def pytest_runtest_setup(item):
    """``@pytest.mark.one_backend("torch")``: the test checks code above the backend (an
    experiment's report, say), so CI runs it in that backend's pass only."""
    marker = item.get_closest_marker("one_backend")
    if (marker and keras.backend.backend() != marker.args[0]
            and not os.environ.get("KERASNETS_TEST_EVERY_BACKEND")):
        pytest.skip(f"above the backend: runs in the {marker.args[0]} pass "
                    f"(KERASNETS_TEST_EVERY_BACKEND=1 runs it on every backend)")


_ORDER = pytest.StashKey()  # (first index of the item's group, its own index)


def pytest_collection_modifyitems(config, items):
    """The tests of one ``xdist_group`` in a module run back to back, from where the
    group's first test was collected, so a module can keep just the current group's
    model in memory (test_zoo). Every worker sorts the same way (xdist requires it)."""
    first = {}
    for index, item in enumerate(items):
        marker = item.get_closest_marker("xdist_group")
        group = (item.nodeid.split("::")[0], marker.args[0]) if marker else index
        first.setdefault(group, index)
        item.stash[_ORDER] = (first[group], index)
    items.sort(key=lambda item: item.stash[_ORDER])


@pytest.fixture(autouse=True, scope="module")
def _free_memory_after_each_module():
    """Drop what a module built: its models, and on JAX the compiled executables, which
    outlive the models (two JAX workers grew to 10-12 GB each over the suite and one was
    OOM-killed on a 24 GB machine)."""
    yield
    keras.backend.clear_session()
    gc.collect()
    if keras.backend.backend() == "jax":
        import jax

        jax.clear_caches()


@pytest.fixture(autouse=True)
def _seeded():
    keras.utils.set_random_seed(0)
    np.random.seed(0)
    yield
    keras.config.set_image_data_format("channels_last")


@pytest.fixture
def backend():
    return keras.backend.backend()


@pytest.fixture
def sample_dir():
    return SAMPLE_DIR

