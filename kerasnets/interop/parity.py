"""Same weights, same answers: checking every model across TensorFlow, JAX and torch.

A backend is fixed when Keras is imported, so each backend runs in its own
process (``python -m kerasnets.interop.parity --phase ...``) and writes numpy
files that the driver (:func:`run_parity`) compares:

1. ``init`` (one backend): build every model, give BatchNorm random statistics,
   save the weights once as ``.weights.h5``;
2. ``compute`` (each backend): load them; inference logits, training-mode logits
   (BatchNorm on batch statistics, dropout off), save a ``.keras``; then, in
   float64, one SGD-with-momentum step with ``model.train_on_batch``: the weights
   after it, and (the first step being ``w - lr * g``) every weight's gradient;
3. ``crossload`` (each backend): load another backend's ``.keras`` files (round the
   ring: :func:`crossload_source`) and predict.

Every model runs in its family's reduced configuration (``ModelInfo.reduced``:
fewer blocks, narrower dense layers), so the check stays fast enough for CI, and
models whose reduced networks differ only in depth or width share one computation
(:func:`parity_groups`). ``seconds.json`` in the work directory says where the time
went, per phase, backend and model (``scripts/parity.py --workdir DIR`` keeps it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from kerasnets.backends import BACKENDS
from kerasnets.backends.keras_patches import float64
from kerasnets.factory import build_reduced
from kerasnets.registry import list_models, model_info

SIZE, BATCH, CLASSES, LR = 64, 4, 10, 0.1
TOLERANCES = {"inference": 1e-4, "training": 1e-4, "gradients": 1e-3, "step": 1e-4,
              "crossload": 1e-4}


def parity_config(name):
    """The family's reduced configuration of ``name`` (``Reduced`` in its ``register``
    line: one block per stage, narrow dense heads), without dropout."""
    info = model_info(name)
    no_dropout = {"dropout_rate": 0.0} if "dropout_rate" in info.options else {}
    return dict(info.reduced.config), {**no_dropout, **info.reduced.options}


# Settings that change a parity network's width only: the same layers, the same code
# paths (grouped convolutions branch on the group count, kept), more channels.
WIDTH_ONLY = {"width_per_group"}


def parity_groups(names):
    """``{representative: [names]}``: models whose parity network is the same one
    (e.g. resnet50/101/152 with one block per stage), or the same but for its width
    (wide_resnet101_2 is resnet101 at twice the width; resnext101_32x8d is resnext50_32x4d
    at 8 channels a group), are computed once: the check is CI's longest test."""
    groups = {}
    for name in names:
        info = model_info(name)
        config, options = parity_config(name)
        config = {k: v for k, v in {**info.config, **config}.items() if k not in WIDTH_ONLY}
        key = repr((info.builder.__name__, sorted(config.items()), sorted(options.items())))
        groups.setdefault(key, []).append(name)
    return {min(members, key=lambda n: model_info(n).params): members  # the cheapest
            for members in groups.values()}


def build(name):
    """``name`` (or its reduced configuration) at 64x64x3 with 10 classes, no dropout."""
    info = model_info(name)
    _, options = parity_config(name)
    size = max(SIZE, info.min_input_size)
    return build_reduced(name, input_shape=(size, size, 3), num_classes=CLASSES, **options)


def inputs(model):
    rng = np.random.RandomState(0)
    x = rng.randn(BATCH, *model.input_shape[1:]).astype("float32")
    y = np.eye(CLASSES, dtype="float32")[rng.randint(0, CLASSES, BATCH)]
    return x, y


def _phase_init(workdir, names):
    import keras

    for name in names:
        keras.utils.set_random_seed(0)
        model = build(name)
        rng = np.random.RandomState(1)
        for layer in model.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                c = layer.moving_mean.shape
                layer.moving_mean.assign(rng.uniform(-0.2, 0.2, c).astype("float32"))
                layer.moving_variance.assign(rng.uniform(0.5, 2.0, c).astype("float32"))
        model.save_weights(workdir / f"{name}.weights.h5")


def _phase_compute(workdir, names, backend):
    import keras

    from kerasnets.backends import execution

    out_dir = workdir / backend
    out_dir.mkdir(exist_ok=True)
    for name in names:
        model = build(name)
        model.load_weights(workdir / f"{name}.weights.h5")
        x, y = inputs(model)
        result = dict(zip(("inference", "training"), execution.forward_modes(model, x)))
        model.save(out_dir / f"{name}.keras")
        # Gradients and the optimiser step in float64: in float32 a pre-activation
        # within rounding noise of zero can land on either side of a ReLU's kink
        # (seen once in 65,536 positions of ResNet-18, moving its stem's gradient by
        # 3%), which says nothing about the implementations.
        with float64():
            model = build(name)
            model.load_weights(workdir / f"{name}.weights.h5")
            before = [keras.ops.convert_to_numpy(w) for w in model.trainable_weights]
            execution.compile_for_a_few_steps(
                model, optimizer=keras.optimizers.SGD(LR, momentum=0.9),
                loss=keras.losses.CategoricalCrossentropy(from_logits=True))
            result["loss"] = np.float64(model.train_on_batch(x.astype("float64"),
                                                             y.astype("float64")))
            # The first momentum-SGD step is w - lr * g: the gradients, exactly in float64,
            # stored in float32: the tolerances are far above its resolution.
            result.update({f"grad:{w.path}": ((w0 - keras.ops.convert_to_numpy(w)) / LR)
                           .astype("float32")
                           for w, w0 in zip(model.trainable_weights, before)})
            result.update({f"step:{w.path}": keras.ops.convert_to_numpy(w).astype("float32")
                           for w in model.weights})
        np.savez(out_dir / f"{name}.npz", **result)


def crossload_source(backend, backends):
    """The backend whose ``.keras`` files ``backend`` loads: the next one round the ring
    (TF loads JAX's, JAX torch's, torch TF's), so that every backend writes a file that
    another loads and loads one that another wrote. All six pairs took twice the time
    and load the same format with the same code."""
    return backends[(backends.index(backend) + 1) % len(backends)]


def _phase_crossload(workdir, names, backend, other):
    """``backend`` loads ``other``'s files (the driver names it: :func:`crossload_source`)."""
    import keras

    import kerasnets  # noqa: F401  (custom layers)
    from kerasnets.backends import execution

    for name in names:
        model = keras.saving.load_model(workdir / other / f"{name}.keras", compile=False)
        x, _ = inputs(model)
        np.save(workdir / backend / f"{name}.from_{other}.npy", execution.forward(model, x))


def scaled_diff(got, expected):
    """Max abs difference, relative to the reference's scale where that exceeds one
    (random-init torchvision ResNets with random BN statistics reach logits of ~100,
    random-init DenseNets ~1e4)."""
    got, expected = np.asarray(got), np.asarray(expected)
    return float(np.abs(got - expected).max() / max(1.0, float(np.abs(expected).max())))


def _grad_diffs(ra, rb):
    """Per weight: max abs difference relative to that gradient's own scale, floored at
    1e-4 of the model's largest gradient (a BN beta feeding straight into another BN has
    an analytically zero gradient; its numerical noise has no meaningful scale)."""
    keys = [k for k in ra if k.startswith("grad:")]
    largest = max(float(np.abs(rb[k]).max()) for k in keys)
    return [float(np.abs(ra[k] - rb[k]).max() / max(float(np.abs(rb[k]).max()),
                                                    1e-4 * largest, 1e-12)) for k in keys]


def compare(workdir, names, backends=BACKENDS) -> dict:
    """``{model: {check: worst difference over backend pairs}}``."""
    workdir = Path(workdir)
    report = {}
    for name in names:
        results = {b: dict(np.load(workdir / b / f"{name}.npz")) for b in backends}
        worst = dict.fromkeys(TOLERANCES, 0.0)
        for i, a in enumerate(backends):
            for b in backends[i + 1:]:
                ra, rb = results[a], results[b]
                worst["inference"] = max(worst["inference"],
                                         scaled_diff(ra["inference"], rb["inference"]))
                worst["training"] = max(worst["training"],
                                        scaled_diff(ra["training"], rb["training"]))
                worst["gradients"] = max([worst["gradients"]] + _grad_diffs(ra, rb))
                worst["step"] = max([worst["step"]] + [
                    scaled_diff(ra[k], rb[k]) for k in ra if k.startswith("step:")])
        for b in backends:
            other = crossload_source(b, backends)
            loaded = np.load(workdir / b / f"{name}.from_{other}.npy")
            worst["crossload"] = max(worst["crossload"],
                                     scaled_diff(loaded, results[b]["inference"]),
                                     scaled_diff(loaded, results[other]["inference"]))
        report[name] = worst
    return report


def _start_phase(phase, backend, workdir, names, backends):
    env = {**os.environ, "KERAS_BACKEND": backend,
           "JAX_ENABLE_X64": "1",  # float64 for the gradient checks (no effect on float32)
           # the crossload phase compiles the graphs the compute phase compiled
           "JAX_COMPILATION_CACHE_DIR": str(workdir / "jax-cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0"}
    cmd = [sys.executable, "-m", "kerasnets.interop.parity", "--phase", phase,
           "--workdir", str(workdir)]
    if phase == "crossload":
        cmd += ["--load-from", crossload_source(backend, backends)]
    cmd += names
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=Path(__file__).resolve().parents[2])


def _run_phase(phase, backends, workdir, names, timeout):
    """One phase on several backends at once (XLA compiles on one core: overlap them)."""
    processes = {b: _start_phase(phase, b, workdir, names, backends) for b in backends}
    failures, seconds = [], {}
    for backend, process in processes.items():
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = "", f"timed out after {timeout} s"
        if process.returncode:
            failures.append(f"parity {phase} on {backend} failed:\n{stderr[-4000:]}")
        else:
            seconds[backend] = json.loads(stdout.strip().splitlines()[-1])["seconds"]
    if failures:
        raise RuntimeError("\n".join(failures))
    return seconds


def run_parity(workdir, names=None, backends=BACKENDS, timeout=1800) -> dict:
    """Run every phase in its own process per backend and compare the results."""
    groups = parity_groups(names or list_models())
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    seconds = {"init": _run_phase("init", backends[:1], workdir, list(groups), timeout)}
    for phase in ("compute", "crossload"):
        seconds[phase] = _run_phase(phase, backends, workdir, list(groups), timeout)
    # {phase: {backend: {model: seconds}}}: where the time goes
    (workdir / "seconds.json").write_text(json.dumps(seconds, indent=1))
    report = compare(workdir, list(groups), backends)
    return {name: report[representative] for representative, members in groups.items()
            for name in members}


def format_report(report) -> str:
    checks = list(TOLERANCES)
    lines = ["| model | " + " | ".join(checks) + " |", "|---|" + "---:|" * len(checks)]
    for name, worst in report.items():
        lines.append(f"| `{name}` | " + " | ".join(f"{worst[c]:.1e}" for c in checks) + " |")
    maxima = {c: max(report.items(), key=lambda item: item[1][c]) for c in checks}
    lines.append("| **worst** | " + " | ".join(
        f"{maxima[c][1][c]:.1e} ({maxima[c][0]})" for c in checks) + " |")
    lines.append("| tolerance | " + " | ".join(f"{TOLERANCES[c]:.0e}" for c in checks) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phase", choices=["init", "compute", "crossload"], required=True)
    parser.add_argument("--workdir", required=True, type=Path)
    parser.add_argument("--load-from", choices=BACKENDS,
                        help="crossload: the backend whose .keras files to load")
    parser.add_argument("names", nargs="+")
    args = parser.parse_args(argv)
    if args.phase == "crossload" and args.load_from is None:
        parser.error("--phase crossload needs --load-from BACKEND (the backend whose files to load)")
    import keras

    backend = keras.backend.backend()
    phase = {"init": lambda names: _phase_init(args.workdir, names),
             "compute": lambda names: _phase_compute(args.workdir, names, backend),
             "crossload": lambda names: _phase_crossload(args.workdir, names, backend,
                                                         args.load_from)}
    seconds = {}  # per model: where the check's time goes (it is CI's longest test)
    for name in args.names:
        start = time.perf_counter()
        phase[args.phase]([name])
        seconds[name] = round(time.perf_counter() - start, 2)
    print(json.dumps({"phase": args.phase, "backend": backend, "seconds": seconds}))


if __name__ == "__main__":
    main()
