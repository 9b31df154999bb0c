"""Which backend, and which kind of device, a computation runs on."""

from __future__ import annotations

import functools

import keras


def backend() -> str:
    return keras.backend.backend()


@functools.lru_cache(maxsize=None)
def _default_device_is_cpu(name: str) -> bool:
    if name == "jax":
        import jax

        return jax.default_backend() == "cpu"
    if name == "tensorflow":
        import tensorflow as tf

        return not tf.config.list_logical_devices("GPU")
    if name == "torch":
        import torch

        return not torch.cuda.is_available()  # Keras' torch backend uses CUDA when present
    return True


def on_cpu() -> bool:
    """Whether this backend computes on the CPU (where some kernels are rewritten)."""
    return _default_device_is_cpu(backend())


@functools.lru_cache(maxsize=None)
def tf_onednn() -> bool:
    """Whether TensorFlow runs oneDNN's CPU kernels in this process (fixed at import by
    ``TF_ENABLE_ONEDNN_OPTS`` and the CPU; ``kerasnets/backends/startup.py`` turns them
    on for x86). TensorFlow has no public way to ask; ``IsMklEnabled`` is what its own
    tests read. False if it is missing: then the kernels that need oneDNN are not used.
    """
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return False


def jax_started() -> bool:
    """Whether JAX has created its backends (after which the device count is fixed).

    JAX 0.10 has no public way to ask this: ``jax.devices()`` would start the
    backends itself, and ``jax.extend.backend`` does not export the check, so we
    read ``jax._src.xla_bridge.backends_are_initialized`` (what ``jax.distributed``
    uses for the same question).
    """
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()
