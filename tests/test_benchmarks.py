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
