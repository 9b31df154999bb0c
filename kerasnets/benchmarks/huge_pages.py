"""What 2 MiB pages change in a model's training step: the measurement behind the restart
of kerasnets' commands with ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` on JAX
(``kerasnets.backends.startup``).

``python -m kerasnets.benchmarks.huge_pages resnet50 --trainer`` (JAX by default; about
three minutes for the trainer's ResNet-50 on 2 cores, less for 64x64 models). Each round
trains the model in two fresh processes, one after the other: with glibc's default
(``glibc.malloc.hugetlb=0``) and with ``glibc.malloc.hugetlb=1``; the user's other tunables
are kept. Each process compiles with a first ``model.fit``, then times the steps of a
second one after its first step (as ``scripts/benchmark.py`` does) and counts around that
fit the page faults (pages the kernel mapped in: XLA:CPU takes each step's buffers afresh
from ``malloc``), the user and system CPU time per step, and the peak memory. The table
shows every round and the median speed-up; a fresh process varies by 10-30% between runs
on this 2-core host, so read several rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from kerasnets.backends.startup import HUGE_PAGES_TUNABLE

# glibc's default, and the tunable kerasnets' commands restart with
SETTINGS = {"default": "glibc.malloc.hugetlb=0", "2 MiB pages": HUGE_PAGES_TUNABLE}


def tunables_with(current: str, setting: str) -> str:
    """``current`` (a ``GLIBC_TUNABLES`` value) with its ``glibc.malloc.hugetlb`` entry,
    if any, replaced by ``setting``."""
    kept = [part for part in current.split(":")
            if part and not part.startswith("glibc.malloc.hugetlb")]
    return ":".join(kept + [setting])


def jobs(model, backend, trainer=False, steps=4, image_size=64, batch_size=32):
    """One job per setting, for :func:`kerasnets.benchmarks.runner.run_job`."""
    from kerasnets.benchmarks import runner

    spec = dict(kind="huge_pages", model=model, backend=backend, image_size=image_size,
                batch_size=batch_size, channels=3, num_classes=1000, steps=steps,
                workload="64x64" if image_size == 64 else f"{image_size}x{image_size}")
    if trainer:
        spec.update(runner.trainer_workload(model))
    return [dict(spec, setting=label) for label in SETTINGS]


def run(spec) -> dict:
    """In this process: ``model.fit``'s step time, page faults, CPU time and peak memory."""
    import resource

    import keras
    import numpy as np

    from kerasnets.benchmarks import workloads

    keras.utils.set_random_seed(0)
    model = workloads._keras_model(spec)
    model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = workloads._random_batch(spec)
    batches = spec["steps"] + 1  # the first is not timed
    xs, ys = np.concatenate([x] * batches), np.concatenate([y] * batches)
    model.fit(xs[:2 * len(x)], ys[:2 * len(x)], batch_size=len(x), verbose=0)  # compiles
    timer = workloads._StepTimer(warmup=1)
    before = resource.getrusage(resource.RUSAGE_SELF)
    model.fit(xs, ys, batch_size=len(x), verbose=0, shuffle=False, callbacks=[timer.callback])
    after = resource.getrusage(resource.RUSAGE_SELF)
    per_step = 1.0 / batches
    return {"step_ms": timer.seconds / spec["steps"] * 1e3,
            "faults_per_step": (after.ru_minflt - before.ru_minflt) * per_step,
            "user_ms_per_step": (after.ru_utime - before.ru_utime) * per_step * 1e3,
            "sys_ms_per_step": (after.ru_stime - before.ru_stime) * per_step * 1e3,
            "peak_mb": after.ru_maxrss / 1024,
            "glibc_tunables": os.environ.get("GLIBC_TUNABLES", "")}


def markdown(rounds) -> str:
    """Each round's two processes side by side, and the median speed-up."""
    labels = list(SETTINGS)
    header = " | ".join(f"{label}: step ms / faults / sys ms a step / peak MB" for label in labels)
    rows = [f"| round | {header} | speed-up |", "|---|" + "---|" * len(labels) + "---:|"]
    speedups = []
    for number, results in enumerate(rounds, 1):
        cells = []
        for label in labels:
            r = results[label]
            cells.append("error: " + r["error"].strip().splitlines()[-1][:80] if "error" in r else
                         f"{r['step_ms']:.0f} / {r['faults_per_step']:.0f} / "
                         f"{r['sys_ms_per_step']:.0f} / {r['peak_mb']:.0f}")
        ok = all("error" not in results[label] for label in labels)
        if ok:
            speedups.append(results[labels[0]]["step_ms"] / results[labels[1]]["step_ms"])
        rows.append(f"| {number} | {' | '.join(cells)} | "
                    f"{f'{speedups[-1]:.2f}' if ok else '-'} |")
    if speedups:
        rows.append(f"\nmedian speed-up with {labels[1]}: {statistics.median(speedups):.2f}x "
                    f"({len(speedups)} rounds)")
    return "\n".join(rows)


def main(argv=None):
    from kerasnets.benchmarks import runner

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0].startswith("{"):  # one job, in the process runner.run_job started
        spec = json.loads(argv[0])
        print("RESULT " + json.dumps({**spec, **run(spec)}), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model")
    parser.add_argument("--trainer", action="store_true",
                        help="the trainer's workload (28x28x1, batch 128, small-input stem)")
    parser.add_argument("--backend", choices=runner.BACKENDS,
                        default=os.environ.get("KERAS_BACKEND", "jax"))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4, help="timed steps in each process")
    parser.add_argument("--image-size", type=int, default=64, help="without --trainer")
    parser.add_argument("--batch-size", type=int, default=32, help="without --trainer")
    parser.add_argument("--output", help="write every result to this JSON")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.steps < 1:
        parser.error("--rounds and --steps must be at least 1")
    rounds = []
    for number in range(args.rounds):
        results = {}
        for job in jobs(args.model, args.backend, args.trainer, args.steps, args.image_size,
                        args.batch_size):
            tunables = tunables_with(os.environ.get("GLIBC_TUNABLES", ""),
                                     SETTINGS[job["setting"]])
            started = time.time()
            results[job["setting"]] = result = runner.run_job(
                job, module="kerasnets.benchmarks.huge_pages",
                env={"GLIBC_TUNABLES": tunables})
            figure = ("ERROR" if "error" in result else
                      f"{result['step_ms']:.0f} ms a step, "
                      f"{result['faults_per_step']:.0f} faults a step")
            print(f"[{number + 1}/{args.rounds}] {args.model} {args.backend} "
                  f"{job['setting']:12s} {figure} ({time.time() - started:.0f} s)", flush=True)
        rounds.append(results)
    if args.output:
        with open(args.output, "w") as f:
            json.dump(rounds, f, indent=1)
    print(markdown(rounds))


if __name__ == "__main__":
    main()
