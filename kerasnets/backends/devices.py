"""What the backend runs on."""

from __future__ import annotations


def jax_started() -> bool:
    """Whether JAX has created its backends (after which the device count is fixed).

    JAX 0.10 has no public way to ask this: ``jax.devices()`` would start the
    backends itself, and ``jax.extend.backend`` does not export the check, so we
    read ``jax._src.xla_bridge.backends_are_initialized`` (what ``jax.distributed``
    uses for the same question).
    """
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()
