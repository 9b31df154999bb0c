"""Why ``kerasnets.backends.kernels`` rewrites convolutions and max-pooling on JAX's CPU:
forward + backward (jit) of one layer as ``lax`` runs it and as the rewrite, side by side
(strided convolutions: XLA's, and ``jax_cpu.strided_conv``, whose input gradient is
computed by phases).

``KERAS_BACKEND=jax python -m kerasnets.benchmarks.jax_conv`` (about 3 minutes on 2 cores).
"""

from __future__ import annotations

import time

import numpy as np

CONVS = [  # (feature map, channels in, channels out, kernel, batch)
    (2, 512, 512, 3, 32), (3, 512, 512, 3, 32), (4, 512, 512, 3, 32), (7, 512, 512, 3, 32),
    (8, 256, 256, 1, 32), (14, 256, 1024, 1, 32), (56, 64, 64, 1, 32),
    (28, 64, 64, 3, 128), (14, 128, 128, 3, 128), (7, 256, 256, 3, 128),
]
POOLS = [(32, 64, 32), (112, 64, 32)]  # (feature map, channels, batch): 3x3/2 max-pool
# (feature map, channels in, channels out, batch): 3x3/2 convolutions, padding 1, of the
# trainer's ResNet-18 (28x28x1, batch 128), ResNet-50's layer2 there, ResNet-18 at 64x64
STRIDED = [(28, 64, 128, 128), (14, 128, 256, 128), (7, 256, 512, 128), (28, 128, 128, 128),
           (16, 64, 128, 32)]


def _time(fn, *args, repeats=5):
    import jax

    step = jax.jit(jax.grad(lambda *a: (fn(*a) ** 2).sum(), argnums=tuple(range(len(args)))))
    jax.block_until_ready(step(*args))
    start = time.perf_counter()
    for _ in range(repeats):
        jax.block_until_ready(step(*args))
    return (time.perf_counter() - start) / repeats


def main():
    import jax.numpy as jnp
    from jax import lax

    from kerasnets.backends import jax_cpu, kernels

    rng = np.random.default_rng(0)
    print("| layer | lax (ms) | rewrite (ms) | speed-up | lax GFLOP/s |\n|---|---:|---:|---:|---:|")
    for size, cin, cout, k, batch in CONVS:
        x = jnp.asarray(rng.standard_normal((batch, size, size, cin), np.float32))
        w = jnp.asarray(rng.standard_normal((k, k, cin, cout), np.float32))

        def native(x, w):
            return lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

        def rewrite(x, w):
            return kernels._conv_as_matmul(x, w, strides=(1, 1), padding="same",
                                           data_format="channels_last")
        a, b = _time(native, x, w), _time(rewrite, x, w)
        flops = 3 * 2 * batch * size * size * k * k * cin * cout
        print(f"| {k}x{k} conv {cin}->{cout} on {size}x{size}, batch {batch} | {a * 1e3:.1f} | "
              f"{b * 1e3:.1f} | {a / b:.2f} | {flops / a / 1e9:.0f} |", flush=True)
    for size, channels, batch in POOLS:
        x = jnp.asarray(rng.standard_normal((batch, size, size, channels), np.float32))

        def native_pool(x):
            return lax.reduce_window(x, -jnp.inf, lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "VALID")

        def _slices(x):
            return jax_cpu.max_pool(x, (3, 3), (2, 2))
        a, b = _time(native_pool, x), _time(_slices, x)
        print(f"| 3x3/2 max-pool on {size}x{size}x{channels}, batch {batch} | {a * 1e3:.1f} | "
              f"{b * 1e3:.1f} | {a / b:.2f} | - |", flush=True)
    for size, cin, cout, batch in STRIDED:  # the rewrite: its input gradient by phases
        x = jnp.asarray(rng.standard_normal((batch, size, size, cin), np.float32))
        w = jnp.asarray(rng.standard_normal((3, 3, cin, cout), np.float32))

        def native_strided(x, w):
            return lax.conv_general_dilated(x, w, (2, 2), ((1, 1), (1, 1)),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"))

        def phases(x, w):
            return jax_cpu.strided_conv(x, w, (2, 2), ((1, 1), (1, 1)))
        a, b = _time(native_strided, x, w), _time(phases, x, w)
        out = (size - 1) // 2 + 1
        flops = 3 * 2 * batch * out * out * 9 * cin * cout
        print(f"| 3x3/2 conv {cin}->{cout} on {size}x{size}, batch {batch} | {a * 1e3:.1f} | "
              f"{b * 1e3:.1f} | {a / b:.2f} | {flops / a / 1e9:.0f} |", flush=True)


if __name__ == "__main__":
    main()
