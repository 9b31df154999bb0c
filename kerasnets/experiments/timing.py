"""Training images/s of several models on each backend: one process per backend (a
Keras process has one backend), timing ``model.fit`` steps on random batches with the
benchmark's own workload (:func:`kerasnets.benchmarks.workloads.run_keras`).

``python -m kerasnets.experiments.timing '[spec, ...]'`` is the per-backend process;
:func:`time_models` runs it once per backend and gathers ``{backend: {key: result}}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def spec(key, model, *, options=None, image_size=28, channels=1, batch_size=128,
         steps=10, warmup=3) -> dict:
    """One timing: ``key`` names it in the results (an experiment's arm name)."""
    return dict(kind="kerasnets", key=key, model=model, options=options or {},
                image_size=image_size, channels=channels, batch_size=batch_size,
                num_classes=10, steps=steps, warmup=warmup)


def _say(message):
    print(message, flush=True)


def time_models(specs, backends, timeout=3600, log=_say) -> dict:
    """``{backend: {key: {"train_images_per_second": ..., ...} or {"error": ...}}}``."""
    results = {}
    for backend in backends:
        env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
        cmd = [sys.executable, "-m", "kerasnets.experiments.timing", json.dumps(specs)]
        log(f"kerasnets: timing {len(specs)} model(s) on {backend}")
        try:
            done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                                  timeout=timeout)
            output, problem = done.stdout, (done.stderr or "")[-1000:]
        except subprocess.TimeoutExpired:
            output, problem = "", f"timed out after {timeout} s"
        found = {}
        for line in output.splitlines():
            if line.startswith("RESULT "):
                result = json.loads(line[len("RESULT "):])
                found[result["key"]] = result
        results[backend] = {s["key"]: found.get(s["key"], {"error": problem or "no result"})
                            for s in specs}
    return results


def main(argv=None):
    from kerasnets.benchmarks.workloads import run_keras

    # TensorFlow's speed varies up to 2x between timings in one process on some hosts
    # (memory paging, not warm-up: docs/benchmarks.md, 2026-11-24); an untimed first
    # model did not remove it, so none is run, and the README reads TF's column as a range.
    for one in json.loads((argv or sys.argv[1:])[0]):
        try:
            result = run_keras(dict(one))
        except Exception as error:  # one model failing must not lose the others' figures
            result = {"error": f"{type(error).__name__}: {error}"[:500]}
        print("RESULT " + json.dumps({"key": one["key"], "steps": one["steps"],
                                      "warmup": one["warmup"], **{
            k: v for k, v in result.items() if k in (
                "train_images_per_second", "first_step_seconds", "backend", "error")}}),
            flush=True)


if __name__ == "__main__":
    main()
