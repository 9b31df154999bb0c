"""What every experiment shares: an arm is one real training run through the trainer
(kept in ``saved_models/`` like ``train.py``'s), its history read back from the run's
``history.csv``; the results go into one JSON, from which the report and its figure
are written (so every number in a report can be traced to a run and a command)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from kerasnets.training import artifacts

# What --quick changes in every arm: two epochs of two steps, tested on 100 images.
QUICK = dict(epochs=2, steps_per_epoch=2, train_subset=None, test_subset=100,
             time_limit=None, warmup_epochs=0, schedule_epochs=None)
QUICK_MAX_BATCH = 32


def shown_settings(settings: dict, quick: bool) -> dict:
    """An experiment's common settings as its arms get them (--quick's changes in)."""
    if not quick:
        return dict(settings)
    shown = {**settings, **QUICK}
    if "batch_size" in shown:
        shown["batch_size"] = min(shown["batch_size"], QUICK_MAX_BATCH)
    return shown


@dataclass(frozen=True)
class Arm:
    """One training run of an experiment: its ``name`` (also in the run directory's
    name), a ``label`` for tables and plots, and the trainer settings it adds to the
    experiment's common ones (``model`` at least)."""

    name: str
    label: str
    settings: dict = field(default_factory=dict)


def arm_settings(arm: Arm, common: dict, *, quick: bool, output_dir, data_dir, stamp):
    """The trainer settings of ``arm``: the experiment's ``common`` settings, the arm's
    own, then --quick's reductions and where the run goes."""
    settings = {**common, **arm.settings}
    if quick:
        settings.update(QUICK)
        settings["batch_size"] = min(settings.get("batch_size", QUICK_MAX_BATCH),
                                     QUICK_MAX_BATCH)
    settings.update(output_dir=str(output_dir), run_name=f"{arm.name}-{stamp}",
                    verbose="0" if quick else "2")
    if data_dir is not None:
        settings.update(data_dir=str(data_dir), download=False)
    return {k: v for k, v in settings.items() if v is not None}


def train_arm(arm: Arm, settings: dict, reuse_prefix: str | None = None) -> dict:
    """Train one arm; its settings as resolved, metrics.json and history.csv rows.

    An arm whose loss diverges is a result, not a failure of the experiment: it is
    recorded with ``"diverged"`` (where) and the epochs it completed. With
    ``reuse_prefix``, a finished (or diverged) run of the same settings in the output
    directory whose name starts with it is read back instead of trained again."""
    from kerasnets.training import resolve_config, train
    from kerasnets.training.errors import LossDiverged

    config = resolve_config(settings)
    kept = _kept_run(config, reuse_prefix) if reuse_prefix else None
    if kept:
        print(f"kerasnets: experiment arm {arm.name}: reusing {kept}", flush=True)
        return {**_arm_record(arm, config, kept), "reused": True}
    print(f"kerasnets: experiment arm {arm.name}", flush=True)
    try:
        return _arm_record(arm, config, Path(train(config)["run_dir"]))
    except LossDiverged as error:
        print(f"kerasnets: experiment arm {arm.name} diverged; recorded as such", flush=True)
        return _arm_record(arm, config, Path(error.run_dir))


def _arm_record(arm, config, run_dir: Path) -> dict:
    metrics = artifacts.read_json(run_dir / "metrics.json")
    record = {"name": arm.name, "label": arm.label, "run_dir": str(run_dir),
              "settings": config.to_dict(), "metrics": {**metrics, "run_dir": str(run_dir)},
              "history": artifacts.read_history_csv(run_dir / "history.csv")}
    if _diverged_status(metrics.get("status", "")):
        record["diverged"] = metrics["status"][len("failed: "):]
    return record


def _diverged_status(status: str) -> bool:
    from kerasnets.training.errors import LossDiverged

    return status.startswith(LossDiverged.STATUS)


def same_settings(a: dict, b: dict) -> bool:
    """Equal as config.json stores them (tuples read back as lists), the run's name and
    verbosity aside."""
    def as_stored(settings):
        kept = {k: v for k, v in settings.items() if k not in ("run_name", "verbose")}
        return json.loads(json.dumps(kept, default=str))

    return as_stored(a) == as_stored(b)


def _kept_run(config, prefix: str) -> Path | None:
    """The newest run in the config's output directory named ``prefix*`` that finished
    or diverged with the same settings."""
    wanted = config.to_dict()
    for run_dir in sorted(Path(config.output_dir).glob(f"{prefix}*"), reverse=True):
        try:
            status = artifacts.read_json(run_dir / "metrics.json").get("status", "")
            saved = artifacts.read_json(run_dir / "config.json")["settings"]
        except (OSError, ValueError, KeyError):
            continue
        if (status == "finished" or _diverged_status(status)) \
                and same_settings(saved, wanted):
            return run_dir
    return None


def diverged(result: dict) -> str | None:
    """Where an arm's loss diverged (``"loss became NaN at epoch 2, batch 15"``), or None."""
    return result.get("diverged")


def error_text(result: dict, key: str) -> str:
    """The last epoch's error as a percentage, or that the arm diverged."""
    return "diverged" if diverged(result) else percent(final(result, key))


def error_curves(result: dict) -> dict:
    """Per-epoch training and test error of one arm (``1 - accuracy``)."""
    rows = result["history"]
    return {"epoch": [r["epoch"] for r in rows],
            "train": [1 - r["accuracy"] for r in rows],
            "test": [1 - r["val_accuracy"] for r in rows]}


def final(result: dict, key: str) -> float:
    """The last epoch's training (``"train"``) or test (``"test"``) error."""
    return error_curves(result)[key][-1]


def command(name: str, quick: bool, backend: str, extra: str = "") -> str:
    return (f"KERAS_BACKEND={backend} python scripts/experiment.py {name}"
            + (" --quick" if quick else "") + extra)


def stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table; numbers as given (format them before)."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


def figure(path, panels, title):
    """``panels``: ``[(axis title, y label, [(label, xs, ys, style)], {options})]`` side by
    side; the options dict is optional: ``xlabel`` (default "epoch"), ``yscale``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(max(8.0, 5.5 * len(panels)), 4.5),
                             squeeze=False)
    for axis, (name, ylabel, lines, *rest) in zip(axes[0], panels):
        options = rest[0] if rest else {}
        if len(lines) > 10:  # the default cycle repeats its 10 colours
            axis.set_prop_cycle(color=plt.get_cmap("tab20").colors[:len(lines)])
        for label, xs, ys, style in lines:
            axis.plot(xs, ys, style, label=label, markersize=3)
        axis.set(title=name, xlabel=options.get("xlabel", "epoch"), ylabel=ylabel)
        if options.get("yscale"):
            axis.set_yscale(options["yscale"])
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    fig.suptitle(title, fontsize=10 if len(panels) == 1 else 12)
    fig.tight_layout()
    path = Path(path)
    artifacts.atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))
    plt.close(fig)


def write_report(report_dir, name: str, data: dict, body: str, panels, title):
    """``NAME.json`` (everything), ``NAME.png`` (the figure) and ``NAME.md`` (``body``
    under a header saying what was run, by which command, and whether it was quick)."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    artifacts.write_json(report_dir / f"{name}.json", data)
    figure(report_dir / f"{name}.png", panels, title)
    quick = ("**This is a `--quick` run** (a few steps per arm, to test the pipeline): "
             "its numbers say nothing about the question.\n\n" if data["quick"] else "")
    machine = data.get("machine") or {}
    cpu = (f", {machine['cpu_model']} with {', '.join(machine['cpu_features']) or 'no AVX'}"
           if machine.get("cpu_model") else "")
    header = (f"# {title}\n\n{quick}Produced by `{data['command']}` on "
              f"{data['created']} ({data['backend']} backend{cpu}); every number below is "
              f"read from `{name}.json`, written by the same run, and each arm's run is "
              f"kept in its own directory (listed at the end).\n\n")
    runs = "\n".join(f"- {r['label']}: {r['run_dir']}" for r in data["arms"])
    text = f"{header}{body}\n\n![{title}]({name}.png)\n\n## The runs\n\n{runs}\n"
    artifacts.write_text(report_dir / f"{name}.md", text)
    return report_dir / f"{name}.md"


def describe_settings(settings: dict) -> str:
    """The experiment's settings, one per line in name order (the order the JSON keeps;
    they are what a reader must know to judge the reproduction)."""
    return "\n".join(f"- `{k}`: {json.dumps(v)}" for k, v in sorted(settings.items()))
