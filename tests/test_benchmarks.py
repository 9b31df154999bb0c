"""The benchmark runner's bookkeeping (no workload is timed: those are timed by
``scripts/benchmark.py``, never by a test; one tiny workload runs to check an option)."""

import pytest

from kerasnets.benchmarks.runner import job_key, progress_line

pytestmark = pytest.mark.one_backend("torch")  # Python above the backend


def test_progress_line_names_each_kind_of_result():
    matmul = {"kind": "matmul", "backend": "torch", "gflops": 188.04}
    line = progress_line(0, 1, job_key(matmul), matmul, 11.2)
    assert line.startswith("[1/1] matmul/torch ")
    assert line.endswith("188.0 GFLOP/s  (11 s)")  # it had printed ERROR for a good result

    training = {"kind": "kerasnets", "model": "resnet18", "backend": "jax",
                "train_images_per_second": 108.66}
    assert progress_line(1, 3, job_key(training), training, 16).endswith(
        "  108.7 img/s  (16 s)")
    assert progress_line(1, 3, job_key(training), training, 16).startswith(
        "[2/3] kerasnets/resnet18/jax ")

    failed = {**training, "error": "Traceback ...\nValueError: bad spec\n"}
    assert "ERROR ValueError: bad spec  (16 s)" in progress_line(0, 1, "k", failed, 16)
    assert "no figure" in progress_line(0, 1, "k", {"kind": "pipeline"}, 1)


def test_step_timer_stops_at_the_last_step_not_at_fits_return():
    """TF's fit once returned seconds after its last step; that time is not a step's."""
    import time

    import keras
    import numpy as np

    from kerasnets.benchmarks.workloads import _StepTimer

    class SlowEnd(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            time.sleep(1.0)

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    timer = _StepTimer(warmup=2)
    model.fit(np.zeros((5, 4)), np.zeros((5, 2)), batch_size=1, epochs=1, verbose=0,
              callbacks=[timer.callback, SlowEnd()])
    assert 0 < timer.seconds < 0.5
    assert timer.first_step is not None and timer.measure_start >= timer.start


def _run_file(path, models, figures, cpu="AMD EPYC"):
    """A benchmark JSON as ``benchmark`` writes it, with one round of ``figures``
    ({(model, backend): train images/s})."""
    import json

    raw = {"matmul/torch": [{"kind": "matmul", "backend": "torch", "gflops": 170.0}]}
    for (model, backend), rate in figures.items():
        job = {"kind": "kerasnets", "model": model, "backend": backend}
        raw[job_key(job)] = [{**job, "train_images_per_second": rate}]
    path.write_text(json.dumps({
        "machine": {"cpu_model": cpu, "cpu_features": ["avx2"]}, "models": models,
        "backends": ["tensorflow", "jax", "torch"], "repeats": 1, "steps": 8, "warmup": 3,
        "seconds": 60.0, "raw": raw}))
    return path


def test_merged_runs_take_the_best_round_of_the_models_every_run_has(tmp_path):
    from kerasnets.benchmarks.runner import merge_runs

    first = _run_file(tmp_path / "a.json", ["resnet18", "resnet50"], {
        ("resnet18", "tensorflow"): 150.0, ("resnet18", "jax"): 120.0,
        ("resnet50", "tensorflow"): 60.0})
    second = _run_file(tmp_path / "b.json", ["resnet18"], {
        ("resnet18", "tensorflow"): 180.0, ("resnet18", "jax"): 100.0})
    report = merge_runs([first, second], output=tmp_path / "merged")
    assert report["models"] == ["resnet18"] and report["repeats"] == 2
    assert report["results"]["kerasnets/resnet18/tensorflow"]["train_images_per_second"] == 180.0
    assert report["results"]["kerasnets/resnet18/jax"]["train_images_per_second"] == 120.0
    assert "kerasnets/resnet50/tensorflow" not in report["results"]  # in one run only
    assert report["results"]["matmul/torch"]["gflops"] == 170.0
    jax_row = next(r for r in report["targets"]
                   if r["target"] == "`resnet18` 64x64: jax vs the fastest backend")
    assert jax_row["ratio"] == pytest.approx(120 / 180)
    assert (tmp_path / "merged.md").read_text().startswith(
        "Each figure is the best of up to 2 rounds.\n\n### Training images/s")


def test_merged_runs_can_take_the_median_round(tmp_path):
    """``--statistic median``: each figure the median of all the rounds, and the targets
    from those; a round that ran fast by chance no longer decides a ratio."""
    import subprocess
    import sys
    from pathlib import Path

    from kerasnets.benchmarks.runner import merge_runs

    rounds = [_run_file(tmp_path / f"{i}.json", ["resnet18"], {
        ("resnet18", "tensorflow"): tf, ("resnet18", "jax"): jx})
        for i, (tf, jx) in enumerate([(100.0, 120.0), (110.0, 70.0), (90.0, 80.0)])]
    report = merge_runs(rounds, statistic="median")
    assert report["statistic"] == "median" and report["repeats"] == 3
    assert report["results"]["kerasnets/resnet18/tensorflow"]["train_images_per_second"] == 100.0
    assert report["results"]["kerasnets/resnet18/jax"]["train_images_per_second"] == 80.0
    jax_row = next(r for r in report["targets"]
                   if r["target"] == "`resnet18` 64x64: jax vs the fastest backend")
    assert jax_row["ratio"] == pytest.approx(0.8) and jax_row["met"]
    assert report["markdown"].startswith("Each figure is the median of up to 3 rounds.")
    best = merge_runs(rounds)  # the default: the best of the rounds, JAX's 120 leads
    assert best["results"]["kerasnets/resnet18/jax"]["train_images_per_second"] == 120.0
    with pytest.raises(ValueError, match="choose one of best, median"):
        merge_runs(rounds, statistic="mean")
    from kerasnets.benchmarks.runner import benchmark

    with pytest.raises(ValueError, match="choose one of best, median"):  # before any job
        benchmark(["resnet18"], statistic="mean", log=pytest.fail)
    script = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"
    refused = subprocess.run([sys.executable, str(script), "--merge", *map(str, rounds),
                              "--statistic", "mean"], capture_output=True, text=True)
    assert refused.returncode == 2 and "invalid choice: 'mean'" in refused.stderr


def test_runs_of_different_cpus_are_not_merged(tmp_path):
    from kerasnets.benchmarks.runner import merge_runs

    first = _run_file(tmp_path / "a.json", ["resnet18"], {("resnet18", "jax"): 1.0})
    second = _run_file(tmp_path / "b.json", ["resnet18"], {("resnet18", "jax"): 1.0},
                       cpu="Intel Xeon")
    with pytest.raises(ValueError, match="different CPUs"):
        merge_runs([first, second])


def test_keras_workload_can_run_every_layer_through_keras(monkeypatch):
    """``"layer_calls_through_keras": true`` (and keras.applications, always) runs every
    layer through Keras' ``Layer.__call__``: on torch no layer takes kerasnets' shortcut;
    without it, every one does."""
    from kerasnets.benchmarks.workloads import run_keras
    from tests.helpers import count_direct_layer_calls

    calls = count_direct_layer_calls(monkeypatch)
    spec = {"kind": "kerasnets", "model": "lenet5", "image_size": 28, "channels": 1,
            "num_classes": 10, "batch_size": 4, "warmup": 1, "steps": 1}
    for through_keras in (True, False):
        calls.update(direct=0, keras=0)
        result = run_keras({**spec, "layer_calls_through_keras": through_keras})
        assert result["train_images_per_second"] > 0
        assert (calls["direct"] > 0) == (not through_keras) and calls["keras"] == 0


def test_keras_applications_and_ynnpack_workloads_run_jax_default_convolutions(monkeypatch):
    """keras.applications runs with JAX's own XLA:CPU convolutions (YNNPACK's), as its
    users get them, and kerasnets too with ``"ynnpack_convolutions": true``; the user's
    other XLA flags stay. Where kerasnets adds no flag (another jaxlib), nothing changes."""
    from kerasnets.backends import startup
    from kerasnets.benchmarks.workloads import use_jax_default_convolutions

    monkeypatch.setattr(startup, "defaults",
                        lambda **_: {"XLA_FLAGS": startup.XLA_OWN_CONVOLUTIONS})
    user = "--xla_force_host_platform_device_count=2"
    for spec, jax_default in (({"kind": "keras_apps"}, True),
                              ({"kind": "kerasnets", "ynnpack_convolutions": True}, True),
                              ({"kind": "kerasnets"}, False)):
        environ = {"XLA_FLAGS": f"{user} {startup.XLA_OWN_CONVOLUTIONS}"}
        assert use_jax_default_convolutions(spec, environ) == jax_default
        expected = startup.YNN_CONVOLUTIONS if jax_default else startup.XLA_OWN_CONVOLUTIONS
        assert environ["XLA_FLAGS"] == f"{user} {expected}"
    monkeypatch.setattr(startup, "defaults", lambda **_: {})
    environ = {}
    assert not use_jax_default_convolutions({"kind": "keras_apps"}, environ)
    assert environ == {}


def test_xla_convolutions_benchmark_quick():
    """The figures behind kerasnets' XLA flag: one row per layer, each setting timed in a
    JAX process of its own."""
    from kerasnets.backends import startup
    from kerasnets.benchmarks import xla_convolutions

    if "XLA_FLAGS" not in startup.defaults(backend="jax"):
        pytest.skip("kerasnets sets no XLA flag on this CPU and jaxlib")
    table = xla_convolutions.compare(rounds=1, quick=True).splitlines()
    assert len(table) == 2 + len(xla_convolutions.QUICK)
    for row, layer in zip(table[2:], xla_convolutions.QUICK):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[0].startswith(layer[0]) and all(float(c) > 0 for c in cells[1:])


def test_matmul_roof_is_the_best_backend_and_each_backend_measures_its_own():
    """The GFLOP/s of the training rows are read against the best matmul of the run: one
    backend's library may be far below the machine's (torch's MKL on an AMD EPYC)."""
    from kerasnets.benchmarks.runner import matmul_roof, run_job

    table = {"matmul/torch": {"gflops": 189.0}, "matmul/jax": {"gflops": 450.2},
             "kerasnets/resnet18/jax": {"train_images_per_second": 1.0}}
    assert matmul_roof(table) == "torch 189, jax 450 GFLOP/s; the best, 450, is the roof"
    assert matmul_roof({}) == "not measured"
    for backend in ("tensorflow", "jax", "torch"):
        result = run_job({"kind": "matmul", "backend": backend, "size": 64}, timeout=300)
        assert "error" not in result, result.get("error")
        assert result["backend"] == backend and result["gflops"] > 0


def test_conv_share_table_bounds_jax_by_its_convolutions():
    """The bound in ``python -m kerasnets.benchmarks.conv_share``: the fastest backend's
    step against JAX's convolutions plus the least rest (step less convolutions) of any
    backend; a failed backend is shown, not counted."""
    from kerasnets.benchmarks import conv_share

    kinds = dict.fromkeys(conv_share.KINDS, 0.0)
    spec = dict(kind="convolutions", model="resnet18", workload="trainer", image_size=28)
    results = [dict(spec, backend="tensorflow", step_ms=800.0, conv_ms=500.0,
                    conv_ms_by_kind=dict(kinds, kxk=500.0)),
               dict(spec, backend="jax", step_ms=1100.0, conv_ms=700.0,
                    conv_ms_by_kind=dict(kinds, kxk=700.0)),
               dict(spec, backend="torch", error="Traceback\nRuntimeError: out of memory\n")]
    table = conv_share.markdown(results)
    assert "| `resnet18`, trainer | jax | 1100 | 700 | 64% | 0 / 700 / 0 / 0 / 0 |" in table
    assert "| `resnet18` | torch | error: RuntimeError: out of memory |" in table
    # measured 800 / 1100; JAX's rest 400; TF's 300 is the least; 800 / (700 + 300)
    assert "| `resnet18`, trainer | tensorflow | 0.73 | 400 | 300 (tensorflow) | 0.80 |" in table
    jobs = conv_share.jobs(["resnet18"], ["jax"], trainer=True)
    assert jobs == [dict(kind="convolutions", model="resnet18", backend="jax", image_size=28,
                         batch_size=128, warmup=3, steps=4, repeats=5, workload="trainer",
                         channels=1, num_classes=10, options={"small_input": True})]


def test_conv_share_runs_each_backend_in_a_process_of_its_own(capsys, tmp_path):
    """``python -m kerasnets.benchmarks.conv_share lenet5 --backends torch``: the child
    process measures the step and the convolutions and the table shows them."""
    import json

    from kerasnets.benchmarks import conv_share

    output = tmp_path / "share.json"
    conv_share.main(["lenet5", "--backends", "torch", "--repeats", "1",
                     "--output", str(output)])
    out = capsys.readouterr().out
    assert "convolutions/lenet5/torch " in out and "| `lenet5`, 64x64 | torch | " in out
    [result] = json.loads(output.read_text())
    assert "error" not in result, result.get("error")
    assert result["conv_ms"] > 0 and result["step_ms"] > 0
    assert [layer["kind"] for layer in result["layers"]] == ["kxk", "kxk"]


def test_huge_pages_setting_replaces_only_the_hugetlb_tunable():
    from kerasnets.benchmarks.huge_pages import tunables_with

    assert tunables_with("", "glibc.malloc.hugetlb=1") == "glibc.malloc.hugetlb=1"
    assert tunables_with("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1",
                         "glibc.malloc.hugetlb=0") == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0"


def test_huge_pages_benchmark_runs_each_setting_in_a_fresh_jax_process(capsys, tmp_path):
    """``python -m kerasnets.benchmarks.huge_pages lenet5``: each round runs glibc's default
    and 2 MiB pages in processes of their own, with the user's other tunables kept, and the
    table shows both and the speed-up."""
    import json

    from kerasnets.benchmarks import huge_pages

    output = tmp_path / "pages.json"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=8")
        huge_pages.main(["lenet5", "--backend", "jax", "--image-size", "28", "--batch-size",
                         "4", "--rounds", "1", "--steps", "1", "--output", str(output)])
    out = capsys.readouterr().out
    [round_] = json.loads(output.read_text())
    assert set(round_) == {"default", "2 MiB pages"}
    for label, setting in huge_pages.SETTINGS.items():
        result = round_[label]
        assert "error" not in result, result.get("error")
        assert result["glibc_tunables"] == f"glibc.malloc.tcache_count=8:{setting}"
        assert result["step_ms"] > 0 and result["faults_per_step"] >= 0 and result["peak_mb"] > 0
    assert "median speed-up with 2 MiB pages" in out and out.count("\n| 1 | ") == 1
    with pytest.raises(SystemExit):
        huge_pages.main(["lenet5", "--rounds", "0"])
