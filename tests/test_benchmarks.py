"""The benchmark runner's bookkeeping (no workload is run: those are timed by
``scripts/benchmark.py``, never by a test)."""

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
