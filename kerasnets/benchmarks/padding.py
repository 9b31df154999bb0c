"""Why the zoo's strided convolutions pad inside torch's kernel (``zero_padding``,
``kerasnets.backends.torch_cpu._padded``) and add the zeros first on TensorFlow and JAX:
forward + backward of one convolution written both ways, with this backend's own ops.

``KERAS_BACKEND=torch python -m kerasnets.benchmarks.padding`` (about a minute on 2 cores;
``--quick`` for one small shape). Each form is timed twice, alternating, median of
``--repeats`` steps each; the table gives both figures.
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np

SHAPES = [  # (batch, feature map, channels in, channels out, kernel, stride, padding, depthwise)
    (32, 64, 3, 32, 3, 2, 1, False),      # MobileNetV2's stem, 64x64
    (32, 32, 96, 96, 3, 2, 1, True),      # its first strided depthwise
    (32, 16, 144, 144, 3, 2, 1, True),
    (32, 64, 3, 64, 7, 2, 3, False),      # ResNet's stem, 64x64
    (32, 16, 64, 128, 3, 2, 1, False),    # ResNet-18's layer2.0.conv1, 64x64
    (128, 28, 64, 128, 3, 2, 1, False),   # the trainer's ResNet-18, 28x28, batch 128
    (128, 14, 128, 256, 3, 2, 1, False),
    (128, 7, 256, 512, 3, 2, 1, False),
]
QUICK = [(2, 8, 4, 4, 3, 2, 1, True), (2, 8, 3, 4, 3, 2, 1, False)]


def _median_ms(step, repeats):
    step()  # warm-up (tracing, allocations)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return float(np.median(times)) * 1e3


def _torch_steps(x, w, stride, pad, groups):
    import torch
    import torch.nn.functional as F

    x = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_(True)  # channels_last view
    w = torch.from_numpy(w).permute(3, 2, 0, 1).contiguous(
        memory_format=torch.channels_last).requires_grad_(True)

    def run(padded):
        inputs = F.pad(x, (pad,) * 4) if padded else x
        y = F.conv2d(inputs, w, stride=stride, padding=0 if padded else pad, groups=groups)
        y.backward(torch.ones_like(y))
    return lambda: run(True), lambda: run(False)


def _tensorflow_steps(x, w, stride, pad, groups):
    import tensorflow as tf

    x, w = tf.Variable(x), tf.Variable(w if groups == 1 else np.swapaxes(w, 2, 3))
    explicit = [[0, 0], [pad, pad], [pad, pad], [0, 0]]

    def conv(inputs, padding):
        if groups == 1:
            return tf.nn.conv2d(inputs, w, stride, padding)
        return tf.nn.depthwise_conv2d(inputs, w, [1, stride, stride, 1], padding)

    def step(padded):
        @tf.function
        def run():
            with tf.GradientTape() as tape:
                y = conv(tf.pad(x, explicit), "VALID") if padded else conv(x, explicit)
                loss = tf.reduce_sum(y)
            return tape.gradient(loss, [x, w])
        return lambda: [g.numpy() for g in run()]
    return step(True), step(False)


def _jax_steps(x, w, stride, pad, groups):
    import jax
    import jax.numpy as jnp
    from jax import lax

    x, w = jnp.asarray(x), jnp.asarray(w)

    def conv(inputs, kernel, padding):
        return lax.conv_general_dilated(inputs, kernel, (stride, stride), padding,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=groups)

    def loss(padded, inputs, kernel):
        if padded:
            inputs = jnp.pad(inputs, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
            return conv(inputs, kernel, "VALID").sum()
        return conv(inputs, kernel, ((pad, pad), (pad, pad))).sum()

    def step(padded):
        grad = jax.jit(jax.grad(lambda a, b: loss(padded, a, b), argnums=(0, 1)))
        return lambda: jax.block_until_ready(grad(x, w))
    return step(True), step(False)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one small shape, 2 repeats")
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    backend = keras.backend.backend()
    steps = {"torch": _torch_steps, "tensorflow": _tensorflow_steps, "jax": _jax_steps}[backend]
    shapes, repeats = (QUICK, 2) if args.quick else (SHAPES, args.repeats)
    rng = np.random.default_rng(0)
    print(f"{backend}: forward + backward, ms (median of {repeats}), two alternating runs\n")
    print("| convolution | zeros first, then \"valid\" | padding inside the convolution | "
          "ratio |\n|---|---:|---:|---:|")
    for batch, size, cin, cout, k, stride, pad, depthwise in shapes:
        groups = cin if depthwise else 1
        x = rng.standard_normal((batch, size, size, cin)).astype("float32")
        w = rng.standard_normal((k, k, cin // groups, cout)).astype("float32")
        padded, inside = steps(x, w, stride, pad, groups)
        first, second = [], []
        for _ in range(2):
            first.append(_median_ms(padded, repeats))
            second.append(_median_ms(inside, repeats))
        kind = "depthwise " if depthwise else ""
        print(f"| {kind}{k}x{k}/{stride} {cin}->{cout}, pad {pad}, on {size}x{size}, "
              f"batch {batch} | "
              f"{first[0]:.2f}, {first[1]:.2f} | {second[0]:.2f}, {second[1]:.2f} | "
              f"{min(first) / min(second):.2f} |", flush=True)


if __name__ == "__main__":
    main()
