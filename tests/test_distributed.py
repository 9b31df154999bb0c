"""``--distribute data`` on one machine: simulated devices, two processes on
127.0.0.1, and the configurations that must fail fast.

Every run is a fresh ``scripts/train.py`` process: the device count and the
cluster are fixed when a backend starts. The README's distributed section gives
these same commands.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

import kerasnets  # noqa: F401 - registers the custom objects the saved models use
from kerasnets.training.cli import main
from tests.conftest import ROOT, SAMPLE_DIR

BACKEND = keras.backend.backend()
SUPPORTED = BACKEND in ("jax", "tensorflow")
needs_engine = pytest.mark.skipif(not SUPPORTED, reason="Keras distributes on JAX and TF only")
pytestmark = pytest.mark.xdist_group("distributed")

# d2l LeNet: no augmentation, so a run is a deterministic function of its settings.
SHORT = ["lenet5", "--recipe", "d2l", "--data-dir", str(SAMPLE_DIR), "--no-download",
         "--epochs", "2", "--steps-per-epoch", "3", "--batch-size", "32", "--lr", "0.3",
         "--verbose", "0"]
TIMEOUT = 300  # seconds a whole distributed test run may take; the workers exit on their own


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, env=None, base=SHORT):
    environment = {**os.environ, "KERAS_BACKEND": BACKEND, "TF_CPP_MIN_LOG_LEVEL": "2",
                   **(env or {})}
    return subprocess.Popen([sys.executable, "scripts/train.py", *base, *args], cwd=ROOT,
                            env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(processes, timeout=TIMEOUT):
    """Wait for every process; kill them all if one is still running after ``timeout``."""
    deadline = time.time() + timeout
    results = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=max(1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            pytest.fail(f"distributed run still going after {timeout} s")
        results.append((process.returncode, out, err))
    return results


def run(args, env=None, timeout=TIMEOUT, base=SHORT):
    return finish([start(args, env, base)], timeout)[0]


def only_run(output_dir):
    runs = list(Path(output_dir).iterdir())
    assert len(runs) == 1, runs
    return runs[0]


def weights(run_dir):
    return keras.saving.load_model(run_dir / "model.keras").get_weights()


@needs_engine
def test_four_devices_match_one_device(tmp_path):
    one = run(["--output-dir", str(tmp_path / "one")])
    four = run(["--distribute", "data", "--cpu-devices", "4",
                "--output-dir", str(tmp_path / "four")])
    assert one[0] == 0, one[2][-3000:]
    assert four[0] == 0, four[2][-3000:]
    run_one, run_four = only_run(tmp_path / "one"), only_run(tmp_path / "four")
    # Same global batches, same steps: the same weights up to summation order.
    for a, b in zip(weights(run_one), weights(run_four)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    m_one = json.loads((run_one / "metrics.json").read_text())
    m_four = json.loads((run_four / "metrics.json").read_text())
    assert (m_four["replicas"], m_four["processes"]) == (4, 1)
    # The padded, sharded evaluation counts each test image once.
    assert m_four["test_accuracy"] == pytest.approx(m_one["test_accuracy"], abs=1e-6)
    assert m_four["test_loss"] == pytest.approx(m_one["test_loss"], rel=1e-4)
    config = json.loads((run_four / "config.json").read_text())
    assert config["distribution"]["replicas"] == 4


@needs_engine
def test_interrupted_data_parallel_run_resumes(tmp_path):
    # The signal lands right after epoch 1's backup: five more epochs leave it seconds.
    four = ["--distribute", "data", "--cpu-devices", "4", "--epochs", "6"]
    straight = run([*four, "--output-dir", str(tmp_path / "straight")])
    assert straight[0] == 0, straight[2][-3000:]

    process = start([*four, "--output-dir", str(tmp_path / "cut")])
    deadline = time.time() + TIMEOUT
    while not list((tmp_path / "cut").glob("*/backup/training_metadata.json")):
        assert process.poll() is None and time.time() < deadline, "no epoch was backed up"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    rc, out, err = finish([process])[0]
    assert rc == 130, err[-3000:]
    cut = only_run(tmp_path / "cut")
    assert json.loads((cut / "metrics.json").read_text())["status"] == "interrupted"

    resumed = run(["--resume", str(cut), "--cpu-devices", "4"], base=())  # host settings only
    assert resumed[0] == 0, resumed[2][-3000:]
    metrics = json.loads((cut / "metrics.json").read_text())
    assert (metrics["status"], metrics["epochs_completed"]) == ("finished", 6)
    for a, b in zip(weights(only_run(tmp_path / "straight")), weights(cut)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def _cluster(port_count, tmp_path, extra=()):
    """Two workers on 127.0.0.1 in this backend's own way of describing a cluster."""
    out = str(tmp_path / "runs")
    if BACKEND == "jax":
        coordinator = f"127.0.0.1:{free_port()}"
        return [start(["--distribute", "data", "--coordinator", coordinator,
                       "--num-processes", "2", "--process-id", str(i), "--output-dir", out,
                       *extra]) for i in range(port_count)]
    workers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    return [start(["--distribute", "data", "--output-dir", out, *extra],
                  env={"TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                                "task": {"type": "worker", "index": i}})})
            for i in range(port_count)]


@needs_engine
def test_two_processes_on_localhost(tmp_path):
    results = finish(_cluster(2, tmp_path))
    for rc, out, err in results:
        assert rc == 0, err[-3000:]
    run_dir = only_run(tmp_path / "runs")  # only the chief wrote
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "finished"
    assert (metrics["replicas"], metrics["processes"]) == (2, 2)
    assert "test accuracy" in results[0][1] and "test accuracy" not in results[1][1]
    model = keras.saving.load_model(run_dir / "model.keras")  # loads on one device
    assert model.predict(np.zeros((2, 28, 28, 1), "float32"), verbose=0).shape == (2, 10)
    assert not list(Path("/tmp").glob("kerasnets-process1-*"))  # the worker cleaned up


@needs_engine
def test_missing_peer_fails_within_the_timeout(tmp_path):
    started = time.time()
    (rc, out, err), = finish(_cluster(1, tmp_path, ["--distribute-timeout", "5"]),
                             timeout=120)
    assert rc != 0
    assert time.time() - started < 120
    assert "kerasnets: error:" in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir()) \
        or BACKEND == "tensorflow"  # TF's chief made its directory before the wait


@needs_engine
def test_batch_not_divisible_by_replicas_fails_fast(tmp_path):
    rc, out, err = run(["--distribute", "data", "--cpu-devices", "4", "--batch-size", "30",
                        "--output-dir", str(tmp_path)], timeout=120)
    assert rc == 2
    assert "--batch-size 30 (the global batch) is not divisible by the 4 replicas" in err
    assert "use --batch-size 28 or 32" in err


@pytest.mark.skipif(SUPPORTED, reason="this backend supports --distribute data")
def test_backend_without_distribution_says_so(tmp_path, capsys):
    rc = main([*SHORT, "--distribute", "data", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"not available on the {BACKEND} backend" in err
    assert "KERAS_BACKEND=jax" in err and "KERAS_BACKEND=tensorflow" in err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_cluster_flags_need_distribute(tmp_path, capsys):
    rc = main([*SHORT, "--cpu-devices", "2", "--output-dir", str(tmp_path)])
    assert rc == 2
    assert "need --distribute data" in capsys.readouterr().err


def test_linear_lr_scaling_follows_the_recipe_batch():
    from kerasnets.training import resolve_config
    from kerasnets.training.compile import effective_lr

    config = resolve_config({"model": "lenet5", "recipe": "d2l", "batch_size": 1024,
                             "lr_scaling": "linear"})
    assert config.lr_reference_batch == 256  # d2l trains LeNet with batch 256, lr 0.9
    assert effective_lr(config) == pytest.approx(0.9 * 4)
    assert effective_lr(resolve_config({"model": "lenet5", "recipe": "d2l",
                                        "batch_size": 1024})) == pytest.approx(0.9)


def test_keras_patches_are_scoped_and_version_checked():
    from kerasnets.backends import keras_patches

    for patch in (keras_patches.multi_worker_mirrored, keras_patches.float64):
        assert patch.ISSUE.startswith("keras-team/keras#")
        low, high = patch.KERAS_VERSIONS
        with pytest.raises(keras_patches.KerasPatchError, match=f"{patch.__name__}.*{high}"):
            keras_patches.require(patch.__name__, patch.ISSUE, patch.KERAS_VERSIONS, high)
        keras_patches.require(patch.__name__, patch.ISSUE, patch.KERAS_VERSIONS, low)
    from keras.src import backend as keras_backend

    original, policy = keras_backend.result_type, keras.config.dtype_policy().name
    with keras_patches.float64():
        assert keras_backend.result_type("float64", "float32") == "float64"
    assert keras_backend.result_type is original
    assert (keras.config.floatx(), keras.config.dtype_policy().name) == ("float32", policy)
