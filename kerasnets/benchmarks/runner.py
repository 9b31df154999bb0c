"""The benchmark driver: kerasnets against its peers, interleaved, in one run.

Every workload runs in its own process (:mod:`kerasnets.benchmarks.workloads`).
The list of workloads is run ``repeats`` times, round-robin, so slow drift of a
shared machine touches every workload alike; each figure is the best round
(``BEST``), the medians are kept in the JSON.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from kerasnets.backends import BACKENDS
from kerasnets.benchmarks.workloads import KERAS_APPLICATIONS
from kerasnets.registry import model_info

FULL_MODELS = ("resnet18", "resnet50", "mobilenet_v2", "resnext50_32x4d", "densenet121",
               "mobilenet_v3_large")
QUICK_MODELS = ("resnet18", "mobilenet_v2")
ROOT = Path(__file__).resolve().parents[2]


# The trainer's real workload: the model as ``train.py`` builds it for Fashion-MNIST
# (28x28x1, the small-input stem, batch 128, 10 classes). Only the ResNet family has the
# small-input stem; torchvision gets the same stem change.
TRAINER = dict(workload="trainer", image_size=28, channels=1, batch_size=128,
               num_classes=10, options={"small_input": True})


def trainer_models(models):
    return [m for m in models if "small_input" in model_info(m).options]


def trainer_workload(model) -> dict:
    """``TRAINER`` for one model: without the small-input stem where its family has none
    (the model as ``train.py`` builds it)."""
    options = dict(TRAINER["options"]) if trainer_models([model]) else {}
    return dict(TRAINER, options=options)


def workloads(models, backends, *, peers=True, pipelines=True, image_size=64, batch_size=32,
              warmup=5, steps=20, trainer=True):
    common = dict(image_size=image_size, batch_size=batch_size, warmup=warmup, steps=steps)
    jobs = [dict(kind="matmul", backend=b) for b in dict.fromkeys([*backends, "torch"])]
    for model in models:
        for backend in backends:
            jobs.append(dict(kind="kerasnets", model=model, backend=backend, **common))
            if peers and model in KERAS_APPLICATIONS:
                jobs.append(dict(kind="keras_apps", model=model, backend=backend, **common))
        if peers and model_info(model).torchvision is not None:
            for memory_format in ("nchw", "channels_last"):
                jobs.append(dict(kind="torchvision", model=model, memory_format=memory_format,
                                 backend="torch", **common))
    small = dict(common, **TRAINER, steps=max(steps // 2, 4), warmup=min(warmup, 3))
    for model in trainer_models(models) if trainer else ():
        for backend in backends:
            jobs.append(dict(kind="kerasnets", model=model, backend=backend, **small))
        if peers:
            for memory_format in ("nchw", "channels_last"):
                jobs.append(dict(kind="torchvision", model=model, memory_format=memory_format,
                                 backend="torch", **small))
    if pipelines:
        pipe = dict(model="lenet5", batch_size=128, warmup=10, steps=max(steps * 5, 50),
                    image_size=28)
        for backend in backends:
            for kind in ("tfdata", "pydataset"):
                jobs.append(dict(kind="pipeline", pipeline=kind, backend=backend, **pipe))
            for kind in ("memory", "tfdata", "pydataset"):
                jobs.append(dict(kind="fit_pipeline", pipeline=kind, backend=backend, **pipe))
    return jobs


def run_job(job, timeout=1200, module="kerasnets.benchmarks.workloads", env=None):
    """``job`` run by ``python -m module '<job as JSON>'`` in a fresh process on its
    backend, with ``env`` added to this process's environment: the dict its ``RESULT``
    line holds, or the job with an ``"error"``."""
    env = {**os.environ, "KERAS_BACKEND": job["backend"] if job["backend"] in BACKENDS
           else "torch", "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    cmd = [sys.executable, "-m", module, json.dumps(job)]
    try:
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return {**job, "error": f"timed out after {timeout} s"}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {**job, "error": (done.stderr or done.stdout)[-2000:]}


def job_key(job):
    parts = [job["kind"], job.get("model", ""), job.get("backend", ""),
             job.get("memory_format", ""), job.get("pipeline", ""), job.get("workload", "")]
    return "/".join(p for p in parts if p)


def progress_line(round_, repeats, key, result, seconds):
    """One job's line as the run goes: its figure (images/s, or GFLOP/s for the matmul
    roof), or ERROR and the last line of what it printed."""
    if "error" in result:
        figure = "ERROR " + (result["error"].strip().splitlines() or [""])[-1]
    elif result.get("gflops"):
        figure = f"{result['gflops']:9.1f} GFLOP/s"
    else:
        rate = result.get("train_images_per_second") or result.get("pipeline_images_per_second")
        figure = f"{rate:9.1f} img/s" if rate else "no figure"
    return f"[{round_ + 1}/{repeats}] {key:55s} {figure}  ({seconds:.0f} s)"


def run_all(jobs, repeats=1, log=print):
    """``{key: [results]}``, running the job list ``repeats`` times round-robin."""
    results = {job_key(job): [] for job in jobs}
    for round_ in range(repeats):
        for job in jobs:
            started = time.time()
            result = run_job(job)
            results[job_key(job)].append(result)
            log(progress_line(round_, repeats, job_key(job), result, time.time() - started))
    return results


# Throughputs are the best of the rounds, times and memory the least: on a shared
# machine a round can only be slowed down by others (we measured the same model at
# 123 and 230 images/s back to back on this 2-core VM), never sped up.
BEST = {"train_images_per_second": max, "predict_images_per_second": max,
        "pipeline_images_per_second": max, "first_step_seconds": min, "peak_memory_mb": min,
        "gflops": max, "macs": max}


def best(results, field):
    values = [r[field] for r in results if field in r and r[field] is not None]
    return BEST[field](values) if values else None


def median(results, field):
    values = [r[field] for r in results if field in r and r[field] is not None]
    return statistics.median(values) if values else None


def machine():
    from kerasnets.training.artifacts import machine_description, package_versions

    return {**machine_description(), "versions": package_versions(),
            "python": platform.python_version()}


# How a report makes one figure of a workload's rounds: "best" (``BEST``), or "median",
# which a round or two of the host's drift moves less (rows moved by up to 30% between
# rounds here), at the cost of needing three or more rounds to mean anything.
STATISTICS = ("best", "median")


def check_statistic(statistic) -> None:
    """Refuse a statistic that is not one of ``STATISTICS`` (before a run, not after)."""
    if statistic not in STATISTICS:
        raise ValueError(f"statistic {statistic!r}: choose one of {', '.join(STATISTICS)}")


def summarize(results, statistic="best") -> dict:
    """Per workload: the best of the rounds (see ``BEST``) or, with ``statistic="median"``,
    their median; the medians are kept alongside either way."""
    check_statistic(statistic)
    pick = best if statistic == "best" else median
    table = {key: {field: pick(runs, field) for field in BEST} for key, runs in results.items()}
    for key, row in table.items():
        row["medians"] = {field: median(results[key], field) for field in BEST}
        row["errors"] = [r["error"][-300:] for r in results[key] if "error" in r]
    return table


def _fmt(value, digits=1):
    return "-" if value is None else f"{value:.{digits}f}"


def _gflops(images_per_second, macs):
    """Training GFLOP/s: forward + backward is about 3x the forward's 2 * MACs."""
    return 6 * macs * images_per_second / 1e9 if images_per_second and macs else None


def matmul_roof(table) -> str:
    """Each backend's 2048x2048 fp32 matmul rate in the run, and the best (the roof)."""
    rates = {key.split("/", 1)[1]: row["gflops"] for key, row in table.items()
             if key.startswith("matmul/") and row.get("gflops")}
    if not rates:
        return "not measured"
    each = ", ".join(f"{backend} {rate:.0f}" for backend, rate in rates.items())
    return f"{each} GFLOP/s; the best, {max(rates.values()):.0f}, is the roof"


def trainer_markdown(table, models, backends) -> str:
    """The trainer's workload (``TRAINER``): images/s and achieved GFLOP/s."""
    models = trainer_models(models)
    if not models:
        return ""
    matmul = matmul_roof(table)

    def get(kind, model, backend, fmt="", field="train_images_per_second"):
        key = job_key({"kind": kind, "model": model, "backend": backend,
                       "memory_format": fmt, "workload": "trainer"})
        return table.get(key, {}).get(field)

    lines = ["### Training images/s (GFLOP/s), the trainer's workload: 28x28x1, small-input "
             "stem, batch 128, 10 classes",
             "", f"This machine's fp32 matmul (2048x2048, each backend's own): {matmul}.", "",
             "| model | " + " | ".join(f"kerasnets {b}" for b in backends)
             + " | torchvision NCHW | torchvision channels_last | slowest / fastest backend "
               "| kerasnets best / torchvision best |",
             "|---|" + "---:|" * (len(backends) + 4)]
    for model in models:
        macs = next((get("kerasnets", model, b, field="macs") for b in backends
                     if get("kerasnets", model, b, field="macs")), None)
        ours = {b: get("kerasnets", model, b) for b in backends}
        tv = [get("torchvision", model, "torch", f) for f in ("nchw", "channels_last")]
        measured = [v for v in ours.values() if v]
        spread = min(measured) / max(measured) if len(measured) == len(backends) else None
        peer = max((v for v in tv if v), default=None)
        ratio = max(measured) / peer if measured and peer else None
        cell = lambda v: "-" if not v else f"{v:.1f} ({_fmt(_gflops(v, macs), 0)})"  # noqa: E731
        lines.append(f"| `{model}` | " + " | ".join(cell(ours[b]) for b in backends)
                     + f" | {cell(tv[0])} | {cell(tv[1])} | {_fmt(spread, 2)} | "
                       f"{_fmt(ratio, 2)} |")
    return "\n".join(lines)


def markdown(table, models, backends) -> str:
    """Training/inference table per model, and the pipeline table."""
    lines = ["### Training images/s (model.fit / PyTorch loop), higher is better", "",
             "| model | " + " | ".join(f"kerasnets {b}" for b in backends)
             + " | keras.applications (best backend) | torchvision NCHW | torchvision "
               "channels_last | kerasnets best / best peer |",
             "|---|" + "---:|" * (len(backends) + 4)]

    def get(kind, model, backend="", fmt="", field="train_images_per_second"):
        key = job_key({"kind": kind, "model": model, "backend": backend,
                       "memory_format": fmt})
        return table.get(key, {}).get(field)

    for field, title in (("train_images_per_second", None),
                         ("predict_images_per_second", "Inference images/s (predict)")):
        if title:
            lines += ["", f"### {title}", "", lines[2], lines[3]]
        for model in models:
            ours = {b: get("kerasnets", model, b, field=field) for b in backends}
            apps = [v for v in (get("keras_apps", model, b, field=field) for b in backends) if v]
            tv = get("torchvision", model, "torch", "nchw", field)
            tv_cl = get("torchvision", model, "torch", "channels_last", field)
            peers = [v for v in apps + [tv, tv_cl] if v]
            best_ours = max((v for v in ours.values() if v), default=None)
            ratio = best_ours / max(peers) if peers and best_ours else None
            lines.append(f"| `{model}` | " + " | ".join(_fmt(ours[b]) for b in backends)
                         + f" | {_fmt(max(apps) if apps else None)} | {_fmt(tv)} | "
                           f"{_fmt(tv_cl)} | {_fmt(ratio, 2)} |")
    lines += ["", "### Time to the first training step (s: tracing/compilation), peak "
                  "memory (MB)", "",
              "| model | " + " | ".join(f"{b} first step / peak MB" for b in backends) + " |",
              "|---|" + "---:|" * len(backends)]
    for model in models:
        cells = []
        for b in backends:
            row = table.get(job_key({"kind": "kerasnets", "model": model, "backend": b}), {})
            cells.append(f"{_fmt(row.get('first_step_seconds'))} / "
                         f"{_fmt(row.get('peak_memory_mb'), 0)}")
        lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
    pipeline_rows = [k for k in table if k.startswith(("pipeline", "fit_pipeline"))]
    if pipeline_rows:
        lines += ["", "### Input pipelines (Fashion-MNIST, LeNet-5's default recipe: "
                      "crop + flip + standardise, batch 128)", "",
                  "| backend | tf.data alone | PyDataset alone | fit on in-memory tensors | "
                  "fit via tf.data | fit via PyDataset | tf.data / memory | PyDataset / memory |",
                  "|---|" + "---:|" * 7]
        for b in backends:
            def pipe(kind, name, field):
                key = job_key({"kind": kind, "model": "lenet5", "backend": b, "pipeline": name})
                return table.get(key, {}).get(field)
            alone = [pipe("pipeline", p, "pipeline_images_per_second")
                     for p in ("tfdata", "pydataset")]
            fit = [pipe("fit_pipeline", p, "train_images_per_second")
                   for p in ("memory", "tfdata", "pydataset")]
            ratios = [f / fit[0] if f and fit[0] else None for f in fit[1:]]
            lines.append(f"| {b} | " + " | ".join(_fmt(v) for v in alone + fit)
                         + " | " + " | ".join(_fmt(r, 2) for r in ratios) + " |")
    return "\n".join(lines)


TARGET_MODELS = ("resnet18", "resnet50", "mobilenet_v2", "resnext50_32x4d", "densenet121")


def targets(table, models, backends) -> list[dict]:
    """Each of the speed issue's targets with its measured ratio, on both workloads
    (ImageNet stem at 64x64, and the trainer's: ``TRAINER``)."""
    def get(kind, model, backend="", fmt="", workload="", field="train_images_per_second"):
        key = job_key({"kind": kind, "model": model, "backend": backend, "memory_format": fmt,
                       "workload": workload})
        return table.get(key, {}).get(field)

    def row(target, ratio, threshold):
        return {"target": target, "ratio": ratio, "threshold": threshold,
                "met": None if ratio is None else ratio >= threshold}

    rows = []
    for workload, names in (("", models), ("trainer", trainer_models(models))):
        label = "28x28x1 trainer" if workload else "64x64"
        for model in names:
            ours = {b: get("kerasnets", model, b, workload=workload) for b in backends}
            fastest = max((v for v in ours.values() if v), default=None)
            for b in backends:  # 1. no backend pays for being written once
                rows.append(row(f"`{model}` {label}: {b} vs the fastest backend",
                                ours[b] / fastest if ours[b] and fastest else None, 0.8))
            tv = max((v for v in (get("torchvision", model, "torch", f, workload)
                                  for f in ("nchw", "channels_last")) if v), default=None)
            if model in TARGET_MODELS:  # 2. ahead of the peer
                rows.append(row(f"`{model}` {label}: fastest backend vs torchvision",
                                fastest / tv if fastest and tv else None, 1.10))
            if model == "resnet18" and "torch" in backends:  # 3. the torch backend
                rows.append(row(f"`{model}` {label}: torch backend vs torchvision",
                                ours["torch"] / tv if ours["torch"] and tv else None, 0.9))
    for b in backends:  # 4. densenet121 vs keras.applications
        if "densenet121" in models:
            ours, apps = get("kerasnets", "densenet121", b), get("keras_apps", "densenet121", b)
            rows.append(row(f"`densenet121` on {b} vs keras.applications",
                            ours / apps if ours and apps else None, 1.0))
    for model in (m for m in models if m.startswith("mobilenet")):  # 5. MobileNet inference
        best = max((v for v in (get("kerasnets", model, b, field="predict_images_per_second")
                                for b in backends) if v), default=None)
        tv = max((v for v in (get("torchvision", model, "torch", f,
                                  field="predict_images_per_second")
                              for f in ("nchw", "channels_last")) if v), default=None)
        rows.append(row(f"`{model}` predict: fastest backend vs torchvision",
                        best / tv if best and tv else None, 1.0))
    for b in backends:
        memory = table.get(job_key({"kind": "fit_pipeline", "model": "lenet5", "backend": b,
                                    "pipeline": "memory"}), {}).get("train_images_per_second")
        for pipe in ("tfdata", "pydataset") if memory else ():  # --no-pipelines: no rows
            fed = table.get(job_key({"kind": "fit_pipeline", "model": "lenet5", "backend": b,
                                     "pipeline": pipe}), {}).get("train_images_per_second")
            rows.append(row(f"fit via {pipe} vs in-memory tensors on {b}",
                            fed / memory if fed and memory else None, 0.95))
    return rows


def targets_markdown(rows) -> str:
    lines = ["### The targets", "", "| target | measured ratio | needs | met |",
             "|---|---:|---:|---|"]
    for r in rows:
        met = "-" if r["met"] is None else ("yes" if r["met"] else "**no**")
        lines.append(f"| {r['target']} | {_fmt(r['ratio'], 2)} | {r['threshold']:.2f} | {met} |")
    return "\n".join(lines)


def benchmark(models=None, backends=BACKENDS, *, quick=False, repeats=None, steps=None,
              peers=True, pipelines=True, output=None, statistic="best", log=print) -> dict:
    """Run the benchmark; returns (and writes to ``output``.json/.md) the summary."""
    check_statistic(statistic)  # a bad value would otherwise end a run of many minutes
    models = tuple(models or (QUICK_MODELS if quick else FULL_MODELS))
    repeats = repeats or (1 if quick else 3)
    steps = steps or (8 if quick else 20)
    warmup = 3 if quick else 5
    jobs = workloads(models, backends, peers=peers, pipelines=pipelines, steps=steps,
                     warmup=warmup)
    started = time.time()
    results = run_all(jobs, repeats=repeats, log=log)
    report = make_report(results, models, backends, statistic, machine=machine(),
                         repeats=repeats, steps=steps, warmup=warmup,
                         seconds=time.time() - started)
    if output:
        write_report(report, output)
    return report


def make_report(results, models, backends, statistic="best", **about) -> dict:
    """The summary of raw ``{key: [results]}``: tables, targets and markdown, each figure
    the ``statistic`` of its rounds; ``about`` (machine, rounds, steps, seconds, ...) is
    recorded as it is."""
    table = summarize(results, statistic)
    report = {**about, "statistic": statistic, "models": list(models),
              "backends": list(backends), "image_size": 64, "batch_size": 32,
              "results": table, "raw": results}
    report["targets"] = targets(table, models, backends)
    rounds = max((len(runs) for runs in results.values()), default=0)
    heading = (f"Each figure is the {statistic} of up to {rounds} rounds." if rounds > 1
               else "")
    report["markdown"] = "\n\n".join(
        part for part in (heading, markdown(table, models, backends),
                          trainer_markdown(table, models, backends),
                          targets_markdown(report["targets"])) if part)
    return report


def write_report(report, output):
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str))
    output.with_suffix(".md").write_text(report["markdown"] + "\n")


# Workloads that belong to no zoo model: kept whichever models the merged runs share.
_MODEL_FREE = ("matmul", "pipeline", "fit_pipeline")


def merge_runs(paths, output=None, statistic="best") -> dict:
    """Several runs' JSON files as one report, each figure the best (or, with
    ``statistic="median"``, the median) of all their rounds, as if they had been one run
    with more ``--repeats``, for the models and backends every run has. The runs must come
    from one CPU: timings of two CPUs do not compare."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    cpus = {(r["machine"].get("cpu_model"), tuple(r["machine"].get("cpu_features") or ()))
            for r in runs}
    if len(cpus) > 1:
        raise ValueError(f"these runs come from different CPUs ({sorted(c[0] for c in cpus)} "
                         "or different CPU features); merge only runs of one machine.")
    models = [m for m in runs[0]["models"] if all(m in r["models"] for r in runs)]
    backends = [b for b in runs[0]["backends"] if all(b in r["backends"] for r in runs)]
    raw = {}
    for run in runs:
        for key, results in run["raw"].items():
            for result in results:
                if result["kind"] in _MODEL_FREE or result.get("model") in models:
                    raw.setdefault(key, []).append(result)
    report = make_report(raw, models, backends, statistic, machine=runs[0]["machine"],
                         merged_from=[str(p) for p in paths],
                         repeats=sum(r["repeats"] for r in runs),
                         steps=[r["steps"] for r in runs], warmup=[r["warmup"] for r in runs],
                         seconds=sum(r["seconds"] for r in runs))
    if output:
        write_report(report, output)
    return report
