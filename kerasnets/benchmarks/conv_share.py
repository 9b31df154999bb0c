"""How much of a training step is convolution on each backend, and what that leaves for
the rest: every convolution of a model timed alone (forward, input gradient and kernel
gradient, compiled as the trainer compiles them: ``jax.jit``, ``tf.function``, torch's
eager autograd; through kerasnets' kernels, so with every form the backend uses), summed
over the model, next to the whole ``model.fit`` step measured in the same process.

The sum bounds what a backend can reach while its convolution kernels stay as they are.
For the speed issue's target 1 (each backend at least 0.8x the fastest), the second table
gives, per row, the ratio JAX would reach if everything but its convolutions (the "rest":
step less convolutions) took as little time as on the backend where it takes least:
fastest step / (JAX's convolutions + the least rest). Where that is below 0.8, no work
outside the convolution kernels meets the target; where it is above, the rest is where
the time went.

``python -m kerasnets.benchmarks.conv_share resnet18 --trainer`` (one model on the
trainer's workload, TF and JAX: about 3 minutes on 2 cores); ``--backends`` adds torch;
without ``--trainer``, the 64x64x3, batch-32 workload of ``scripts/benchmark.py``.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import numpy as np

KINDS = ("1x1", "kxk", "strided kxk", "grouped", "depthwise")


def _kind(layer) -> str:
    import keras

    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return "depthwise"
    if getattr(layer, "groups", 1) > 1:
        return "grouped"
    if tuple(layer.kernel_size) == (1, 1):
        return "1x1"
    return "kxk" if tuple(layer.strides) == (1, 1) else "strided kxk"


def conv_layers(model):
    """``[(layer, input_shape without batch, whether the input is the model's input)]``
    for every convolution of ``model``, nested blocks included."""
    import keras

    inputs = {id(t) for t in model.inputs}
    found = []
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
            found.append((layer, tuple(layer.input.shape[1:]), id(layer.input) in inputs))
    return found


def _signature(layer, shape, first):
    config = {k: v for k, v in layer.get_config().items() if k not in ("name", "trainable")}
    return repr((type(layer).__name__, sorted(config.items(), key=str), shape, first))


def _step(layer, wrt_input):
    """``step(x, weights, cotangent)``: forward and the gradients the training step takes
    (the weights', and the input's unless the input is the model's)."""
    import keras

    def forward(x, weights):
        return layer.stateless_call(weights, [], x)[0]

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        if wrt_input:
            step = jax.jit(lambda x, w, ct: jax.vjp(forward, x, w)[1](ct))
        else:
            step = jax.jit(lambda x, w, ct: jax.vjp(lambda w: forward(x, w), w)[1](ct))
        return lambda x, w, ct: jax.block_until_ready(step(x, w, ct))
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step(x, weights, ct):
            with tf.GradientTape() as tape:
                tape.watch(weights)
                if wrt_input:
                    tape.watch(x)
                out = forward(x, weights)
            sources = ([x] if wrt_input else []) + list(weights)
            return tape.gradient(out, sources, output_gradients=ct)
        return step  # TF's CPU runtime returns when the results exist
    import torch

    def step(x, weights, ct):
        sources = ([x] if wrt_input else []) + list(weights)
        return torch.autograd.grad(forward(x, weights), sources, grad_outputs=ct)
    return step


def _inputs(layer, shape, batch, wrt_input):
    import keras

    rng = np.random.default_rng(0)
    x = keras.ops.convert_to_tensor(rng.standard_normal((batch, *shape)).astype("float32"))
    weights = [v.value for v in layer.trainable_variables]
    if keras.backend.backend() == "torch":
        x = x.detach().requires_grad_(wrt_input)
        weights = [w.detach().requires_grad_() for w in weights]  # the stored layout kept
    out_shape = layer.compute_output_shape((batch, *shape))
    ct = keras.ops.convert_to_tensor(rng.standard_normal(out_shape).astype("float32"))
    return x, weights, ct


def _empty_step():
    """A compiled call with a step's arguments that computes one number: what calling a
    compiled function costs by itself (``tf.function`` about 0.5 ms here, ``jax.jit``
    about 0.05), which a model's step pays once, not once per layer. Torch runs eagerly,
    in the model too: nothing to take off."""
    import keras

    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        step = jax.jit(lambda x, w, ct: ct.reshape(-1)[0] + 1)
        return lambda x, w, ct: jax.block_until_ready(step(x, w, ct))
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(lambda x, w, ct: tf.reshape(ct, [-1])[0] + 1)
    return None


def _median_seconds(step, args, repeats):
    for _ in range(2):
        step(*args)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_layer(layer, shape, batch, first, repeats=5):
    """Median seconds of one forward + backward of ``layer`` alone on a batch, less the
    cost of calling a compiled function (:func:`_empty_step`)."""
    args = _inputs(layer, shape, batch, not first)
    seconds = _median_seconds(_step(layer, not first), args, repeats)
    empty = _empty_step()
    if empty is not None:
        seconds = max(0.0, seconds - _median_seconds(empty, args, repeats))
    return seconds


def convolution_times(model, batch, repeats=5):
    """``[{"layer", "kind", "count", "ms"}]``: each distinct convolution of ``model`` once
    (``count`` layers share its configuration and input shape), ms for one of them."""
    groups = collections.OrderedDict()
    for layer, shape, first in conv_layers(model):
        groups.setdefault(_signature(layer, shape, first), []).append((layer, shape, first))
    rows = []
    for members in groups.values():
        layer, shape, first = members[0]
        rows.append({"layer": layer.name, "kind": _kind(layer), "count": len(members),
                     "input": list(shape),
                     "ms": 1e3 * time_layer(layer, shape, batch, first, repeats)})
    return rows


def run(spec):
    """One model on this process's backend: the training step as
    ``kerasnets.benchmarks.workloads.run_keras`` measures it, then every convolution
    alone."""
    import keras

    from kerasnets.benchmarks import workloads

    step = workloads.run_keras(dict(spec, kind="kerasnets"))
    step_ms = 1e3 * spec["batch_size"] / step["train_images_per_second"]
    keras.utils.set_random_seed(0)
    model = workloads._keras_model(dict(spec, kind="kerasnets"))
    rows = convolution_times(model, spec["batch_size"], spec.get("repeats", 5))
    by_kind = {k: sum(r["ms"] * r["count"] for r in rows if r["kind"] == k) for k in KINDS}
    return {"step_ms": step_ms, "conv_ms": sum(by_kind.values()), "conv_ms_by_kind": by_kind,
            "layers": rows, "backend": keras.backend.backend()}


def jobs(models, backends, trainer=False, steps=8, repeats=5):
    from kerasnets.benchmarks import runner

    common = dict(image_size=64, batch_size=32, warmup=3, steps=steps, repeats=repeats)
    if trainer:
        common.update(runner.TRAINER, steps=max(steps // 2, 4))
    return [dict(kind="convolutions", model=m, backend=b, **common)  # kind: for job_key
            for m in models for b in backends]


def markdown(results) -> str:
    """The per-backend table and, per model, JAX's bound against the fastest backend."""
    rows = ["| model, workload | backend | training step (ms) | its convolutions alone (ms) | "
            "share | 1x1 / kxk / strided / grouped / depthwise (ms) |",
            "|---|---|---:|---:|---:|---|"]
    by_model = collections.defaultdict(dict)
    for r in results:
        if "error" in r:
            rows.append(f"| `{r['model']}` | {r['backend']} | error: "
                        f"{r['error'].strip().splitlines()[-1][:80]} | | | |")
            continue
        workload = r.get("workload") or f"{r['image_size']}x{r['image_size']}"
        by_model[(r["model"], workload)][r["backend"]] = r
        kinds = " / ".join(f"{r['conv_ms_by_kind'][k]:.0f}" for k in KINDS)
        rows.append(f"| `{r['model']}`, {workload} | {r['backend']} | {r['step_ms']:.0f} | "
                    f"{r['conv_ms']:.0f} | {r['conv_ms'] / r['step_ms']:.0%} | {kinds} |")
    bounds = ["| model, workload | fastest backend | JAX / fastest, measured | JAX's rest (ms) | "
              "least rest (ms) | JAX / fastest with JAX's convolutions and the least rest |",
              "|---|---|---:|---:|---:|---:|"]
    for (model, workload), by_backend in by_model.items():
        if "jax" not in by_backend or len(by_backend) < 2:
            continue
        fastest = min(by_backend.values(), key=lambda r: r["step_ms"])
        jax_ = by_backend["jax"]
        least = min(by_backend.values(), key=lambda r: r["step_ms"] - r["conv_ms"])
        rest = least["step_ms"] - least["conv_ms"]
        bounds.append(f"| `{model}`, {workload} | {fastest['backend']} | "
                      f"{fastest['step_ms'] / jax_['step_ms']:.2f} | "
                      f"{jax_['step_ms'] - jax_['conv_ms']:.0f} | {rest:.0f} ({least['backend']}) | "
                      f"{fastest['step_ms'] / (jax_['conv_ms'] + rest):.2f} |")
    return "\n".join(rows) + "\n\n" + "\n".join(bounds)


def main(argv=None):
    import json
    import sys

    from kerasnets.benchmarks import runner, workloads

    if argv is None:  # a command: JAX's steps with huge pages, as train.py runs them
        from kerasnets.backends import startup

        startup.restart_with_huge_pages()
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].startswith("{"):  # one job, in the process runner.run_job started
        spec = json.loads(argv[0])
        workloads.use_jax_default_convolutions(spec)  # before JAX starts, as workloads does
        print("RESULT " + json.dumps({**spec, **run(spec)}), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--trainer", action="store_true",
                        help="the trainer's workload (28x28x1, batch 128, small-input stem)")
    parser.add_argument("--backends", nargs="+", default=["tensorflow", "jax"])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per layer")
    parser.add_argument("--output", help="write every result (per layer too) to this JSON")
    args = parser.parse_args(argv)
    results = []
    for job in jobs(args.models, args.backends, args.trainer, repeats=args.repeats):
        started = time.time()
        result = runner.run_job(job, timeout=3600, module="kerasnets.benchmarks.conv_share")
        results.append(result)
        figure = ("ERROR" if "error" in result else
                  f"step {result['step_ms']:.0f} ms, convolutions {result['conv_ms']:.0f} ms")
        print(f"{runner.job_key(job):50s} {figure} ({time.time() - started:.0f} s)", flush=True)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(results, f, indent=1)
    print(markdown(results))


if __name__ == "__main__":
    main()
