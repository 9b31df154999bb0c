"""The seeds' questions as experiments (issue 14): ``run_experiment(NAME)`` trains every
arm of one experiment through the trainer (each run kept like ``train.py``'s), then
writes ``NAME.json`` (every history and timing), ``NAME.png`` and ``NAME.md`` (the
report, its statements computed from the JSON) into the report directory.

An experiment is a module here with ``NAME``, ``TITLE``, ``SETTINGS`` (the trainer
settings of the full run, in one place), ``arms()`` and ``report(data)``; optionally
``timing_specs(...)`` (per-backend speed) and ``plan(...)`` (settings that depend on a measurement).
"""

from __future__ import annotations

import time
from pathlib import Path

import keras

from kerasnets.experiments import budget, cardinality, common, degradation, normalization
from kerasnets.experiments.timing import time_models
from kerasnets.training import artifacts

EXPERIMENTS = {m.NAME: m for m in (degradation, normalization, cardinality, budget)}
BACKENDS = ("tensorflow", "jax", "torch")


def experiment(name: str):
    if name not in EXPERIMENTS:
        raise ValueError(f"Unknown experiment {name!r}; choose from {', '.join(EXPERIMENTS)}.")
    return EXPERIMENTS[name]


def select(module, names=None):
    """The experiment's arms, or those named (in the experiment's order)."""
    arms = module.arms()
    if not names:
        return arms
    unknown = [n for n in names if n not in {a.name for a in arms}]
    if unknown:
        raise ValueError(f"{module.NAME} has no arm(s) {', '.join(unknown)}; its arms are "
                         f"{', '.join(a.name for a in arms)}.")
    return [a for a in arms if a.name in names]


def run_experiment(name: str, *, quick=False, output_dir="saved_models",
                   report_dir="docs/experiments", data_dir=None, arms=None,
                   timing_backends=None, command=None, reuse_runs=False):
    """Run experiment ``name`` on the current Keras backend; returns the report's path.

    Args:
        quick: a few steps per arm (``common.QUICK``): checks the whole pipeline.
        data_dir: where the Fashion-MNIST files are (default: the usual places).
        arms: names of the arms to run (default: all).
        timing_backends: backends to time the arms on, each in its own process, for
            the experiments that report speed (default: all three; with ``quick``, the
            current one); ``()`` for none.
        command: the command line, for the report (default: rebuilt from the arguments).
        reuse_runs: read back an arm's finished (or diverged) run of the same settings
            from an earlier invocation (e.g. one interrupted) instead of training it,
            and keep the plan (``planned``) that invocation made for the arm.
    """
    module = experiment(name)
    chosen = select(module, arms)
    backend = keras.backend.backend()
    stamp = common.stamp()
    settings = {a.name: common.arm_settings(a, module.SETTINGS, quick=quick,
                                            output_dir=output_dir, data_dir=data_dir,
                                            stamp=f"{name}-{stamp}")
                for a in chosen}
    data = {"experiment": name, "quick": quick, "backend": backend,
            "created": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": command or common.command(name, quick, backend),
            "machine": artifacts.cpu_model(),
            "settings": common.shown_settings(module.SETTINGS, quick)}
    if hasattr(module, "plan"):
        data["plan"] = planned(module, chosen, settings, quick=quick, backend=backend,
                               output_dir=output_dir, reuse=reuse_runs)
    data["arms"] = [common.train_arm(a, settings[a.name],
                                     reuse_prefix=f"{a.name}-{name}-" if reuse_runs else None)
                    for a in chosen]
    if hasattr(module, "timing_specs"):
        if timing_backends is None:
            timing_backends = (backend,) if quick else BACKENDS
        data["timing_steps"] = module.QUICK_TIMING if quick else module.TIMING
        data["timings"] = time_models(module.timing_specs(chosen, settings, quick),
                                      timing_backends) if timing_backends else {}
    body, panels = module.report(data)
    return common.write_report(report_dir, name, data, body, panels, module.TITLE)


def planned(module, arms, settings, *, quick, backend, output_dir, reuse):
    """``module.plan``'s measurements per arm, its settings merged into ``settings``.

    Each arm's plan is kept in ``OUTPUT_DIR/NAME-plan.json``. With ``reuse``, an arm
    planned there from the same settings keeps that plan instead of being measured
    again: a new measurement would plan other epochs, and the arm's finished run (of
    the old plan) would not be found to reuse."""
    if quick:  # nothing measured: nothing to keep
        return module.plan(arms, settings, quick, backend, time_models)
    path = Path(output_dir) / f"{module.NAME}-plan.json"
    kept = artifacts.read_json(path) if path.is_file() else {}
    measured, fresh, cpu = {}, [], artifacts.cpu_model()
    for a in arms:
        entry = kept.get(a.name) if reuse else None
        if entry and common.same_settings(entry["before"], settings[a.name]) \
                and entry.get("cpu") == cpu:  # a plan measured on another CPU is not this one's
            settings[a.name].update(entry["planned"])
            measured[a.name] = entry["measured"]
        else:
            fresh.append(a)
    if not fresh:
        return measured
    before = {a.name: dict(settings[a.name]) for a in fresh}
    new = module.plan(fresh, settings, quick, backend, time_models)
    for a in fresh:
        changed = {k: v for k, v in settings[a.name].items()
                   if k not in before[a.name] or before[a.name][k] != v}
        measured[a.name] = new.get(a.name)
        kept[a.name] = {"before": before[a.name], "planned": changed,
                        "measured": measured[a.name], "cpu": cpu}
    path.parent.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(path, kept)
    return {a.name: measured[a.name] for a in arms}


def rewrite_report(name: str, report_dir="docs/experiments"):
    """Write ``NAME.md`` and ``NAME.png`` again from the ``NAME.json`` an earlier run
    wrote (after a change to how the report reads, without training again); the
    report still names the command and date of the run that produced the data."""
    module = experiment(name)
    path = Path(report_dir) / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"There is no {path} to rewrite the report from: run "
                         f"`python scripts/experiment.py {name}` first.")
    data = artifacts.read_json(path)
    body, panels = module.report(data)
    return common.write_report(report_dir, name, data, body, panels, module.TITLE)
