"""What one of kerasnets' forms on JAX's CPU saves a model's training, measured in one
process: the model twice, one copy traced as JAX would run it without that form, and
``model.fit`` on each in turn, round after round, so that the host's drift touches both
alike (fresh-process runs on this 2-core host vary by 10-30% between runs; alternating
steps in one process by a few percent).

``KERAS_BACKEND=jax python -m kerasnets.benchmarks.alternating mobilenet_v2 --without
depthwise_per_tap`` (64x64x3, batch 32, 8 rounds: about two minutes for MobileNetV2;
``--trainer``: the trainer's workload, 28x28x1, batch 128, small-input stem where the
family has one).

The forms, each with the ``kerasnets.backends.jax_cpu`` context that turns it off:

* ``depthwise_per_tap``: a depthwise convolution's kernel gradient one tap per loop
  iteration (``depthwise_gradient_by_xla``);
* ``max_pool_gradient``: max-pooling's gradient written directly, to the first maximum of
  each window (``max_pool_gradient_by_xla``);
* ``stored_operands``: the convolutions' input and output held in memory
  (``operands_fused_by_xla``);
* ``strided_phases``: a strided convolution's input gradient computed by phases, one
  stride-1 convolution per phase (``strided_input_gradient_by_xla``);
* ``group_blocks``: grouped convolutions of few channels a group computed several groups
  to a convolution, with block-diagonal kernels (``groups_one_by_one``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from kerasnets.benchmarks.workloads import JAX_FORMS as WITHOUT


def compare(model_name, without, *, trainer=False, rounds=8, batches=4, image_size=64,
            batch_size=32):
    """Median seconds per training step with the form (``"with"``) and without it, and
    the speed-up; JAX backend only."""
    import keras

    from kerasnets.backends import jax_cpu
    from kerasnets.benchmarks import runner, workloads

    if keras.backend.backend() != "jax":
        raise SystemExit(f"these forms are JAX's: run with KERAS_BACKEND=jax (this process "
                         f"runs {keras.backend.backend()})")
    if without not in WITHOUT:
        raise SystemExit(f"--without {without!r}: choose one of {', '.join(WITHOUT)}")
    spec = {"kind": "kerasnets", "model": model_name, "image_size": image_size,
            "batch_size": batch_size, "channels": 3, "num_classes": 1000}
    if trainer:  # as train.py builds it: the small-input stem where the family has one
        spec.update(runner.trainer_workload(model_name))
        batches = max(1, batches // 2)
    x, y = workloads._random_batch(spec)
    xs, ys = np.concatenate([x] * batches), np.concatenate([y] * batches)
    models = {}
    for label in ("with", "without"):
        keras.utils.set_random_seed(0)
        model = workloads._keras_model(spec)
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                      loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        if label == "without":
            with getattr(jax_cpu, WITHOUT[without])():  # traced here, by the first fit
                model.fit(xs, ys, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
        else:
            model.fit(xs, ys, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
        models[label] = model
    seconds = {label: [] for label in models}
    for _ in range(rounds):
        for label, model in models.items():
            start = time.perf_counter()
            model.fit(xs, ys, batch_size=len(x), epochs=1, verbose=0, shuffle=False)
            seconds[label].append((time.perf_counter() - start) / batches)
    median = {label: statistics.median(s) for label, s in seconds.items()}
    return {"with": median["with"], "without": median["without"],
            "speedup": median["without"] / median["with"], "batch_size": len(x)}


def main(argv=None):
    if argv is None:  # a command: JAX's steps with huge pages, as train.py runs them
        from kerasnets.backends import startup

        startup.restart_with_huge_pages()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--without", required=True, choices=sorted(WITHOUT))
    parser.add_argument("--trainer", action="store_true",
                        help="the trainer's workload (28x28x1, batch 128) instead of 64x64x3")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    r = compare(args.model, args.without, trainer=args.trainer, rounds=args.rounds)
    per_second = {k: r["batch_size"] / r[k] for k in ("with", "without")}
    print(f"{args.model}: {r['with'] * 1e3:.1f} ms a step with {args.without} "
          f"({per_second['with']:.1f} images/s), {r['without'] * 1e3:.1f} ms without "
          f"({per_second['without']:.1f} images/s): {r['speedup']:.2f}x "
          f"(median of {args.rounds} rounds, alternating in one process)", flush=True)


if __name__ == "__main__":
    main()
