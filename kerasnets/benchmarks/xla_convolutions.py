"""Why ``import kerasnets`` asks XLA:CPU for its own convolution kernel on JAX
(``kerasnets.backends.startup``): forward + backward (jit) of the zoo's convolutions with
JAX's default, where XLA:CPU hands each convolution to YNNPACK, and with XLA's own kernel.

The choice is an ``XLA_FLAGS`` flag, read once when JAX starts, so each setting runs in
a process of its own; the two alternate ``--rounds`` times and the best of each is kept.

``KERAS_BACKEND=jax python -m kerasnets.benchmarks.xla_convolutions`` (under a minute on 2 cores;
``--quick``: two small layers, one round).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

# (where in the zoo, batch, feature map, channels in, channels out, kernel, stride,
# groups): ResNet-18 at 64x64 (ImageNet stem), ResNet-18 as the trainer builds it for
# Fashion-MNIST (28x28x1, small-input stem, batch 128), ResNet-50/DenseNet-121 at 64x64.
LAYERS = [
    ("ResNet-18 64x64: stem 7x7/2", 32, 64, 3, 64, 7, 2, 1),
    ("ResNet-18 64x64: layer1 3x3", 32, 16, 64, 64, 3, 1, 1),
    ("ResNet-18 64x64: layer2 3x3/2", 32, 16, 64, 128, 3, 2, 1),
    ("ResNet-18 64x64: layer2 3x3", 32, 8, 128, 128, 3, 1, 1),
    ("ResNet-18 64x64: layer3 3x3", 32, 4, 256, 256, 3, 1, 1),
    ("trainer's ResNet-18: stem 3x3, 1->64", 128, 28, 1, 64, 3, 1, 1),
    ("trainer's ResNet-18: layer1 3x3", 128, 28, 64, 64, 3, 1, 1),
    ("trainer's ResNet-18: layer2 3x3/2", 128, 28, 64, 128, 3, 2, 1),
    ("trainer's ResNet-18: layer2 3x3", 128, 14, 128, 128, 3, 1, 1),
    ("trainer's ResNet-18: layer3 3x3", 128, 7, 256, 256, 3, 1, 1),
    ("trainer's ResNet-18: layer4 3x3", 128, 4, 512, 512, 3, 1, 1),
    ("ResNet-50 64x64: layer1 3x3", 32, 16, 64, 64, 3, 1, 1),
    ("ResNet-50 64x64: layer2 3x3/2", 32, 16, 128, 128, 3, 2, 1),
    ("DenseNet-121 64x64: dense layer 3x3, 128->32", 32, 16, 128, 32, 3, 1, 1),
]
QUICK = [LAYERS[1], LAYERS[3]]


def _time(name, batch, size, cin, cout, k, stride, groups, repeats):
    import jax
    from jax import lax

    rng = np.random.default_rng(0)
    x = jax.numpy.asarray(rng.standard_normal((batch, size, size, cin), np.float32))
    w = jax.numpy.asarray(rng.standard_normal((k, k, cin // groups, cout), np.float32))

    def conv(x, w):
        return lax.conv_general_dilated(x, w, (stride, stride), [(k // 2, k // 2)] * 2,
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        feature_group_count=groups)
    step = jax.jit(jax.grad(lambda x, w: (conv(x, w) ** 2).sum(), argnums=(0, 1)))
    jax.block_until_ready(step(x, w))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(step(x, w))
        best = min(best, time.perf_counter() - start)
    return best


def timings(layers, repeats=3):
    """Seconds for forward + backward of each layer, with this process's XLA flags."""
    return [_time(*layer, repeats=repeats) for layer in layers]


def _in_process(setting, quick):
    from kerasnets.backends import startup

    flags = os.environ.get("XLA_FLAGS", "").replace(startup.XLA_OWN_CONVOLUTIONS, "")
    flag = {"ynnpack": startup.YNN_CONVOLUTIONS, "xla": startup.XLA_OWN_CONVOLUTIONS}[setting]
    env = {**os.environ, "KERAS_BACKEND": "jax", "XLA_FLAGS": " ".join(flags.split() + [flag])}
    cmd = [sys.executable, "-m", "kerasnets.benchmarks.xla_convolutions", "--child"]
    done = subprocess.run(cmd + (["--quick"] if quick else []), env=env, capture_output=True,
                          text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("TIMINGS ")]
    if not lines:
        raise RuntimeError(f"the {setting} run printed no timings:\n{done.stderr[-2000:]}")
    return json.loads(lines[-1][len("TIMINGS "):])


def compare(rounds=2, quick=False):
    """Markdown table: each layer's best time with each setting, over alternating runs."""
    layers = QUICK if quick else LAYERS
    best = {"ynnpack": [float("inf")] * len(layers), "xla": [float("inf")] * len(layers)}
    for _ in range(rounds):
        for setting in best:
            best[setting] = [min(a, b) for a, b in zip(best[setting],
                                                        _in_process(setting, quick))]
    rows = ["| layer (batch, forward + backward) | YNNPACK, JAX's default (ms) | "
            "XLA's own, kerasnets' (ms) | speed-up | XLA's own GFLOP/s |",
            "|---|---:|---:|---:|---:|"]
    for (name, batch, size, cin, cout, k, stride, groups), ynn, xla in zip(
            layers, best["ynnpack"], best["xla"]):
        out = -(-size // stride)
        flops = 3 * 2 * batch * out * out * k * k * cin // groups * cout
        rows.append(f"| {name} ({batch}) | {ynn * 1e3:.1f} | {xla * 1e3:.1f} | "
                    f"{ynn / xla:.2f} | {flops / xla / 1e9:.0f} |")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="two small layers, one round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating runs of each setting")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from kerasnets.backends import startup

    if "XLA_FLAGS" not in startup.defaults(backend="jax"):
        parser.exit(2, "kerasnets leaves XLA's convolutions to JAX on this CPU and jaxlib "
                       f"(the flag is set on x86 with jaxlib {startup.YNN_FLAG_JAXLIB_VERSIONS}):"
                       " nothing to compare.\n")
    if args.child:
        layers = QUICK if args.quick else LAYERS
        print("TIMINGS " + json.dumps(timings(layers, repeats=1 if args.quick else 3)))
        return
    print(compare(rounds=1 if args.quick else args.rounds, quick=args.quick))


if __name__ == "__main__":
    main()
