"""Why JAX's CPU computes a depthwise convolution's kernel gradient one tap per loop
iteration (``kerasnets.backends.jax_cpu.depthwise_per_tap_gradient``): forward + backward
(jit) of one depthwise layer of the MobileNets after a BatchNormalization-like scale and
ReLU6, with XLA's own gradient of the shifted multiply-adds and with the per-tap loop.

``KERAS_BACKEND=jax python -m kerasnets.benchmarks.jax_depthwise`` (about a minute on 2
cores; ``--quick``: two layers).
"""

from __future__ import annotations

import sys
import time

import numpy as np

LAYERS = [  # (feature map, channels, kernel, stride, batch): MobileNets at 64x64 and 224x224
    (32, 32, 3, 1, 32), (32, 96, 3, 2, 32), (16, 144, 3, 1, 32), (16, 144, 3, 2, 32),
    (8, 384, 3, 1, 32), (4, 960, 5, 1, 32), (112, 32, 3, 1, 8), (14, 672, 5, 1, 32),
]
QUICK = [(16, 144, 3, 1, 8), (16, 144, 3, 2, 8)]


def _time(step, *args, repeats):
    import jax

    jax.block_until_ready(step(*args))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(step(*args))
        best = min(best, time.perf_counter() - start)
    return best


def compare(layers=None, repeats=5) -> str:
    """A markdown table: one row per layer, both forms' best time of ``repeats``."""
    import jax
    import jax.numpy as jnp

    from kerasnets.backends import jax_cpu

    rng = np.random.default_rng(0)
    rows = ["| depthwise layer (forward + backward) | XLA's gradient (ms) | per tap (ms) | "
            "speed-up |", "|---|---:|---:|---:|"]
    for size, channels, k, stride, batch in layers or LAYERS:
        x = jnp.asarray(rng.standard_normal((batch, size, size, channels), np.float32))
        weights = jnp.asarray(rng.standard_normal((k, k, channels), np.float32))
        scale = jnp.asarray(rng.standard_normal((channels,), np.float32))
        out = (size - 1) // stride + 1
        target = jnp.asarray(rng.standard_normal((batch, out, out, channels), np.float32))
        times = []
        for form in (jax_cpu.shifted_multiply_adds, jax_cpu.depthwise_per_tap_gradient):
            def loss(x, weights, form=form):
                padded = jnp.pad(jnp.clip(x * scale + 1.0, 0.0, 6.0),
                                 ((0, 0), (k // 2, k // 2), (k // 2, k // 2), (0, 0)))
                y = form(padded, weights, (stride, stride), (1, 1), (out, out))
                return jnp.sum(y * target)
            step = jax.jit(jax.grad(loss, argnums=(0, 1)))
            times.append(_time(step, x, weights, repeats=repeats))
        rows.append(f"| {k}x{k}/{stride}, {channels} channels on {size}x{size}, batch {batch} "
                    f"| {times[0] * 1e3:.2f} | {times[1] * 1e3:.2f} | {times[0] / times[1]:.2f} |")
    return "\n".join(rows)


def main(argv=None):
    quick = "--quick" in (sys.argv[1:] if argv is None else argv)
    print(compare(QUICK if quick else LAYERS, repeats=2 if quick else 5), flush=True)


if __name__ == "__main__":
    main()
