"""Why ``kerasnets.backends.kernels.grouped_conv`` computes a grouped convolution as it
does on each CPU backend: forward + backward of ResNeXt-50's 3x3 grouped convolutions (32
groups), the backend's native grouped kernel (TensorFlow's own on TF, ``lax.conv`` on JAX,
torch's own on the channels_last view on torch) against one convolution per group, side
by side; on JAX also kerasnets' form there, groups of at most 4 channels computed several to
a convolution of 16 channels with block-diagonal kernels.

``KERAS_BACKEND=tensorflow python -m kerasnets.benchmarks.grouped_conv`` (or jax, or
torch; about a minute on 2 cores), float32. ``--keras-op`` adds Keras' ``ops.conv``: on TF
it compiles a grouped convolution with XLA (minutes: 2.5 s to 31 s per call here); on
torch it is the native kernel with Keras' copies of the input and kernel. TensorFlow without
oneDNN (``TF_ENABLE_ONEDNN_OPTS=0``) has no CPU kernel for the native form's gradient:
its row says so.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np

# (feature map, channels, batch): ResNeXt-50 32x4d's four stages on 64x64 inputs
# (batch 32) and on the trainer's 28x28 inputs with the small-input stem (batch 128).
SHAPES = [(16, 128, 32), (8, 256, 32), (4, 512, 32), (2, 1024, 32),
          (28, 128, 128), (14, 256, 128), (7, 512, 128), (4, 1024, 128)]
GROUPS = 32


def _step(fn):
    """A compiled forward + backward of ``sum(fn(x, w) ** 2)`` for the Keras backend."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        step = jax.jit(jax.grad(lambda x, w: (fn(x, w) ** 2).sum(), argnums=(0, 1)))
        return lambda x, w: jax.block_until_ready(step(x, w))
    if keras.backend.backend() == "torch":
        import torch

        def step(x, w):
            x, w = x.detach().requires_grad_(), w.detach().requires_grad_()
            return torch.autograd.grad((fn(x, w) ** 2).sum(), (x, w))
        return step
    import tensorflow as tf

    @tf.function
    def step(x, w):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            loss = tf.reduce_sum(fn(x, w) ** 2)
        return tape.gradient(loss, [x, w])
    return lambda x, w: [g.numpy() for g in step(x, w)]


def _time(fn, x, w, repeats):
    step = _step(fn)
    step(x, w)
    start = time.perf_counter()
    for _ in range(repeats):
        step(x, w)
    return (time.perf_counter() - start) / repeats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--shapes", type=int, default=len(SHAPES),
                        help="time only the first N shapes (the tests use 1)")
    parser.add_argument("--keras-op", action="store_true",
                        help="also time Keras' ops.conv: XLA-compiled on TF (slow), with "
                             "Keras' copies on torch (on JAX it is the native column)")
    args = parser.parse_args(argv)

    import keras
    from keras import ops

    from kerasnets.backends import devices, kernels

    backend = keras.backend.backend()
    # the forms of kernels.grouped_conv to time, by column
    columns = {"native": {"tensorflow": "tensorflow", "torch": "torch"}.get(backend, "keras"),
               "one per group": "split"}
    if backend == "jax":  # groups of <= 4 channels: several to a convolution (kernels.py)
        columns["in blocks of 16 channels"] = "blocks"
    if args.keras_op and backend != "jax":
        columns["Keras' ops.conv (XLA)" if backend == "tensorflow" else "Keras' ops.conv"] = \
            "keras"

    def timed(form, x, w):
        """Seconds per forward + backward in ``form``, or why it failed."""
        def fn(x, w):
            return kernels.grouped_conv(x, w, strides=1, padding="same", dilation_rate=1,
                                        groups=GROUPS, data_format="channels_last",
                                        form="split" if form == "blocks" else form)
        with contextlib.ExitStack() as scope:
            if backend == "jax" and form == "split":  # traced in _time's first call
                from kerasnets.backends import jax_cpu

                scope.enter_context(jax_cpu.groups_one_by_one())
            try:
                return _time(fn, x, w, args.repeats)
            except Exception as error:  # TF without oneDNN: no CPU gradient kernel
                return f"fails ({type(error).__name__})"

    onednn = f", oneDNN {'on' if devices.tf_onednn() else 'off'}" \
        if backend == "tensorflow" else ""
    print(f"{backend}{onednn}; kerasnets' form here: {kernels.grouped_conv_form()}")
    print(f"| 3x3 conv, 32 groups | {' | '.join(f'{c} (ms)' for c in columns)} | "
          f"native speed-up |\n|---|{'---:|' * (len(columns) + 1)}")
    rng = np.random.default_rng(0)
    for size, channels, batch in SHAPES[:args.shapes]:
        x = ops.convert_to_tensor(rng.standard_normal((batch, size, size, channels), np.float32))
        w = ops.convert_to_tensor(
            rng.standard_normal((3, 3, channels // GROUPS, channels), np.float32))
        seconds = [timed(form, x, w) for form in columns.values()]
        native, split = seconds[:2]
        cells = [f"{t * 1e3:.1f}" if isinstance(t, float) else t for t in seconds]
        cells.append(f"{split / native:.2f}" if isinstance(native, float) else "-")
        print(f"| {channels} channels on {size}x{size}, batch {batch} | {' | '.join(cells)} |",
              flush=True)


if __name__ == "__main__":
    main()
