"""The trainer never loses what a user trained (issue 12): finished runs are not
retrained, a kill or a signal at any moment leaves a run that --resume finishes
doing only what is left, a full or read-only disk ends with one clear line and the
backup intact, concurrent trainers do not collide, saved files follow the umask,
and a resume mid-epoch ends where an uninterrupted run would. Tiny LeNet-5 runs on
the committed Fashion-MNIST sample, on the current backend."""

import errno
import inspect
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import keras
import numpy as np
import pytest

from kerasnets.data import pipelines
from kerasnets.training import TrainingInterrupted, artifacts, resolve_config, train
from kerasnets.training import run as run_module
from kerasnets.training.cli import main
from kerasnets.training.rundir import new_run_dir
from tests.conftest import SAMPLE_DIR

# File modes, locks and a full disk are handled in Python above the backend: one pass.
ABOVE_THE_BACKEND = pytest.mark.one_backend("torch")

SHORT = ["--data-dir", str(SAMPLE_DIR), "--no-download", "--epochs", "2",
         "--steps-per-epoch", "3", "--batch-size", "32", "--verbose", "0",
         "--recipe", "d2l", "--lr", "0.1", "--backup-every", "0"]


needs_initial_step = pytest.mark.skipif(
    "initial_step" not in inspect.signature(pipelines.tf_dataset).parameters,
    reason="needs make_pipeline(initial_step=...) (kerasnets.data.pipelines)")


class Killed(BaseException):
    """A kill -9 stand-in: nothing of ours catches it, so the disk stays as it was."""


def only_run(output_dir):
    runs = [p for p in Path(output_dir).iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def status(run):
    return json.loads((run / "metrics.json").read_text())


def backup_state(run):
    return json.loads((run / "backup" / "training_metadata.json").read_text())


def weights(path):
    return keras.saving.load_model(path).get_weights()


def assert_same_weights(a, b, **tolerance):
    assert len(a) == len(b)
    for wa, wb in zip(a, b):
        if tolerance:
            np.testing.assert_allclose(wa, wb, **tolerance)
        else:
            np.testing.assert_array_equal(wa, wb)


def one_line_error(capsys, rc, expected_rc):
    err = capsys.readouterr().err
    assert rc == expected_rc, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def fresh_run(tmp_path, capsys, *extra):
    assert main(["lenet5", *SHORT, *extra, "--output-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    return only_run(tmp_path)


def test_resume_of_a_finished_run_is_refused_and_changes_nothing(tmp_path, capsys):
    run = fresh_run(tmp_path, capsys)
    kept = {name: (run / name).read_bytes()
            for name in ("model.keras", "best.keras", "history.csv", "metrics.json")}
    line = one_line_error(capsys, main(["--resume", str(run)]), 2)
    assert f"Run {run} has finished (2 epochs, test accuracy" in line
    assert "nothing to resume" in line and "larger --epochs" in line
    assert {name: (run / name).read_bytes() for name in kept} == kept


def test_kill_between_model_and_metrics_then_resume_trains_nothing(tmp_path, capsys,
                                                                   monkeypatch):
    write_json = artifacts.write_json

    def killed_before_finished(path, data):
        if Path(path).name == "metrics.json" and data.get("status") == "finished":
            raise Killed
        write_json(path, data)

    monkeypatch.setattr(artifacts, "write_json", killed_before_finished)
    with pytest.raises(Killed):
        main(["lenet5", *SHORT, "--output-dir", str(tmp_path)])
    monkeypatch.undo()
    run = only_run(tmp_path)
    trained = weights(run / "model.keras")
    history = (run / "history.csv").read_text()
    assert not (run / "metrics.json").exists()
    assert backup_state(run) == {"epoch": 2, "step": 0, "weights": "epoch-2.weights.h5"}

    fits = []
    monkeypatch.setattr(keras.Model, "fit", lambda *a, **k: fits.append(1))
    assert main(["--resume", str(run)]) == 0
    assert fits == []  # nothing retrained
    assert "resuming after epoch 2" in capsys.readouterr().out
    metrics = status(run)
    assert metrics["status"] == "finished" and metrics["epochs_completed"] == 2
    assert metrics["test_accuracy"] > 0
    assert (run / "history.csv").read_text() == history
    assert_same_weights(weights(run / "model.keras"), trained)
    assert not (run / "backup").exists()  # removed only now

    # a run left so by earlier versions (the backup removed before metrics.json)
    (run / "metrics.json").unlink()
    assert main(["--resume", str(run)]) == 0
    assert fits == []
    again = status(run)
    assert again["status"] == "finished" and again["epochs_completed"] == 2
    assert again["test_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)


@pytest.mark.parametrize("where", ["final save", "test evaluation"])
def test_ctrl_c_after_training_keeps_the_run_and_resume_finishes(tmp_path, capsys,
                                                                monkeypatch, where):
    """A real SIGINT to this process while model.keras is saved or the test set is
    evaluated: exit 130 with one line, "interrupted after training", resume finishes."""
    def ctrl_c():
        os.kill(os.getpid(), signal.SIGINT)

    if where == "final save":
        save_model = artifacts.save_model

        def save(model, path):
            if Path(path).name == "model.keras":
                ctrl_c()
            save_model(model, path)
        monkeypatch.setattr(artifacts, "save_model", save)
    else:
        evaluation = run_module._evaluation_pipeline
        calls = []

        def pipeline(*args):
            calls.append(1)
            if len(calls) == 2:  # the test split's (the first is validation's)
                ctrl_c()
            return evaluation(*args)
        monkeypatch.setattr(run_module, "_evaluation_pipeline", pipeline)
    rc = main(["lenet5", *SHORT, "--output-dir", str(tmp_path)])
    line = one_line_error(capsys, rc, 130)
    monkeypatch.undo()
    run = only_run(tmp_path)
    assert "Interrupted after training: all 2 epochs are trained and kept" in line
    assert f"--resume {run}" in line
    metrics = status(run)
    assert metrics["status"] == "interrupted after training"
    assert metrics["epochs_completed"] == 2 and "test_accuracy" not in metrics
    assert backup_state(run)["epoch"] == 2
    assert (run / "model.keras").exists() == (where == "test evaluation")

    assert main(["--resume", str(run)]) == 0
    assert "resuming after epoch 2" in capsys.readouterr().out
    metrics = status(run)
    assert metrics["status"] == "finished" and metrics["epochs_completed"] == 2
    assert metrics["test_accuracy"] > 0 and metrics["train_images_per_second"]
    assert len((run / "history.csv").read_text().splitlines()) == 3
    assert (run / "model.keras").exists() and not (run / "backup").exists()


class CtrlCAt(keras.callbacks.Callback):
    """SIGINT to this process when batch ``batch`` (from 0) of epoch ``epoch`` (from 1)
    begins, as a user's Ctrl-C would come."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("during", [pytest.param("interrupted.keras", marks=needs_initial_step),
                                    "the backup"])
def test_second_ctrl_c_while_saving_keeps_the_backup(tmp_path, monkeypatch, during):
    config = resolve_config(dict(model="lenet5", recipe="d2l", data_dir=str(SAMPLE_DIR),
                                 download=False, epochs=2, steps_per_epoch=3, batch_size=32,
                                 verbose="0", backup_every="0", output_dir=str(tmp_path)))
    atomic_write = artifacts.atomic_write

    def second_ctrl_c(path, write):
        name = Path(path).name
        if (name == "interrupted.keras") if during == "interrupted.keras" else \
                ("-step-" in name):
            os.kill(os.getpid(), signal.SIGINT)
        atomic_write(path, write)

    monkeypatch.setattr(artifacts, "atomic_write", second_ctrl_c)
    with pytest.raises(TrainingInterrupted, match="--resume") as stopped:
        train(config, callbacks=[CtrlCAt(epoch=2, batch=1)])
    monkeypatch.undo()
    run = only_run(tmp_path)
    state = backup_state(run)
    if during == "interrupted.keras":  # the first Ctrl-C backed up step 2 of epoch 2
        assert state == {**state, "epoch": 1, "step": 2}
        assert not (run / "interrupted.keras").exists()
        assert "backed up after step 2 of epoch 2" in str(stopped.value)
    else:  # the second one stopped that backup: the epoch's is there, whole
        assert state == {"epoch": 1, "step": 0, "weights": "epoch-1.weights.h5"}
        assert (run / "interrupted.keras").exists()
        assert "backed up after epoch 1" in str(stopped.value)
    assert (run / "backup" / state["weights"]).exists()
    assert sorted(p.name for p in (run / "backup").iterdir()) == sorted(
        [state["weights"], "training_metadata.json"])  # no temporary files left
    assert status(run)["status"] == "interrupted"

    assert main(["--resume", str(run)]) == 0
    metrics = status(run)
    assert metrics["status"] == "finished" and metrics["epochs_completed"] == 2


def test_ctrl_c_in_the_last_step_of_an_epoch_stops_after_its_backup(tmp_path):
    config = resolve_config(dict(model="lenet5", recipe="d2l", data_dir=str(SAMPLE_DIR),
                                 download=False, epochs=2, steps_per_epoch=3, batch_size=32,
                                 verbose="0", output_dir=str(tmp_path)))
    with pytest.raises(TrainingInterrupted, match="backed up after epoch 1 "):
        train(config, callbacks=[CtrlCAt(epoch=1, batch=2)])
    run = only_run(tmp_path)
    assert backup_state(run) == {"epoch": 1, "step": 0, "weights": "epoch-1.weights.h5"}
    assert len((run / "history.csv").read_text().splitlines()) == 2  # epoch 1 recorded
    assert main(["--resume", str(run)]) == 0
    assert status(run)["epochs_completed"] == 2


def test_unwritable_output_dir_fails_up_front_with_one_line(tmp_path, capsys, monkeypatch):
    """Read-only storage (simulated: this works as root too): one line, exit 2, nothing
    trained or created."""
    import tempfile

    target = tmp_path / "readonly"
    mkstemp = tempfile.mkstemp

    def read_only(*args, **kwargs):
        if str(kwargs.get("dir", "")).startswith(str(target)):
            raise OSError(errno.EROFS, "Read-only file system")
        return mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    started = []  # the data is not even loaded
    monkeypatch.setattr(run_module, "prepare", lambda *a: started.append(1))
    line = one_line_error(capsys, main(["lenet5", *SHORT, "--output-dir", str(target)]), 2)
    assert line == (f"kerasnets: error: Cannot write in {target}: read-only file system. "
                    f"Use a writable --output-dir (or free space there, or fix its "
                    f"permissions).")
    assert list(target.iterdir()) == [] and started == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_output_dir_fails_up_front_with_one_line(tmp_path, capsys):
    target = tmp_path / "runs"
    target.mkdir()
    target.chmod(0o500)
    try:
        line = one_line_error(capsys, main(["lenet5", *SHORT, "--output-dir", str(target)]),
                              2)
    finally:
        target.chmod(0o700)
    assert f"Cannot write in {target}: permission denied" in line
    assert "--output-dir" in line and list(target.iterdir()) == []


def test_too_little_free_space_fails_before_training(tmp_path, capsys, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(1 << 30, 1 << 30, 1 << 20))
    fits = []
    monkeypatch.setattr(keras.Model, "fit", lambda *a, **k: fits.append(1))
    line = one_line_error(capsys, main(["lenet5", *SHORT, "--output-dir", str(tmp_path)]), 2)
    assert "Not enough space in" in line and "1 MiB free" in line and "--output-dir" in line
    assert fits == []


@ABOVE_THE_BACKEND
def test_disk_full_mid_run_ends_with_one_line_and_the_backup_resumes(tmp_path, capsys,
                                                                     monkeypatch):
    atomic_write = artifacts.atomic_write

    def full_at_epoch_2(path, write):
        if Path(path).name == "epoch-2.weights.h5":
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        atomic_write(path, write)

    monkeypatch.setattr(artifacts, "atomic_write", full_at_epoch_2)
    rc = main(["lenet5", *SHORT, "--output-dir", str(tmp_path)])
    line = one_line_error(capsys, rc, 2)
    monkeypatch.undo()
    run = only_run(tmp_path)
    assert line.startswith("kerasnets: error: Cannot write ")
    assert "no space left on device. Training stopped; the backup after epoch 1 is " \
           "intact." in line and f"--resume {run}" in line
    assert backup_state(run) == {"epoch": 1, "step": 0, "weights": "epoch-1.weights.h5"}
    assert status(run)["status"] == "failed: no space left on device"
    assert not (run / "model.keras").exists()

    assert main(["--resume", str(run)]) == 0
    assert "resuming after epoch 1" in capsys.readouterr().out
    metrics = status(run)
    assert metrics["status"] == "finished" and metrics["epochs_completed"] == 2


def test_concurrent_new_run_dirs_never_collide(tmp_path, monkeypatch):
    import time

    monkeypatch.setattr(time, "strftime", lambda *a: "20260101-000000")  # all alike
    count, barrier = 8, threading.Barrier(8)
    made, errors = [], []

    def start(run_name=None):
        barrier.wait()
        try:
            made.append(new_run_dir(tmp_path, "lenet5", "fashion_mnist", run_name))
        except Exception as error:  # noqa: BLE001 (collected for the asserts)
            errors.append(error)

    for run_name in (None, "mine"):
        made.clear()
        threads = [threading.Thread(target=start, args=(run_name,)) for _ in range(count)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if run_name is None:
            assert errors == [] and len(set(made)) == count
            assert {p.name for p in made} == {"lenet5-fashion_mnist-20260101-000000"} | {
                f"lenet5-fashion_mnist-20260101-000000-{n}" for n in range(2, count + 1)}
        else:
            assert made == [tmp_path / "mine"] and len(errors) == count - 1
            assert all(isinstance(e, FileExistsError) and "already exists; pick another "
                       "--run-name" in str(e) for e in errors)


class InterruptAfter(keras.callbacks.Callback):
    """Ctrl-C right after epoch ``epoch`` has been backed up."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


@ABOVE_THE_BACKEND
def test_a_run_being_trained_is_locked(tmp_path, capsys):
    config = resolve_config(dict(model="lenet5", recipe="d2l", data_dir=str(SAMPLE_DIR),
                                 download=False, epochs=2, steps_per_epoch=3, batch_size=32,
                                 verbose="0", output_dir=str(tmp_path)))
    with pytest.raises(TrainingInterrupted):
        train(config, callbacks=[InterruptAfter(epoch=1)])
    run = only_run(tmp_path)
    assert not (run / "train.lock").exists()  # released and removed at the end
    holder = subprocess.Popen(  # another trainer, as far as the lock goes
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "os.write(fd, str(os.getpid()).encode())\n"
         "print('locked', flush=True)\n"
         "time.sleep(120)\n", str(run / "train.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = sorted(p.name for p in run.iterdir())
        line = one_line_error(capsys, main(["--resume", str(run)]), 2)
        assert line == (f"kerasnets: error: Run {run} is being trained by another process "
                        f"(pid {holder.pid}, holding {run / 'train.lock'}); wait for it to "
                        f"end or stop it first.")
        assert sorted(p.name for p in run.iterdir()) == before
    finally:
        holder.kill()  # kill -9: the kernel releases its flock
        holder.wait()
    assert main(["--resume", str(run)]) == 0
    assert status(run)["status"] == "finished"


@ABOVE_THE_BACKEND
def test_saved_files_follow_the_umask(tmp_path, capsys):
    previous = os.umask(0o027)
    try:
        run = fresh_run(tmp_path, capsys)
    finally:
        os.umask(previous)
    for name in ("config.json", "model.keras", "best.keras", "history.csv",
                 "metrics.json", "curves.png"):
        assert oct((run / name).stat().st_mode & 0o777) == oct(0o640), name


def test_backup_every_parses_minutes_and_steps(capsys):
    from kerasnets.training.callbacks import parse_backup_every

    assert parse_backup_every("10m") == ("minutes", 10.0)
    assert parse_backup_every("2.5min") == ("minutes", 2.5)
    assert parse_backup_every("500steps") == ("steps", 500)
    assert parse_backup_every("1step") == ("steps", 1)
    assert parse_backup_every("0") == (None, 0)
    for bad in ("10", "0steps", "1.5steps", "ten minutes", "-1m"):
        with pytest.raises(ValueError, match="expected minutes like 10m"):
            parse_backup_every(bad)
    with pytest.raises(SystemExit):
        main(["lenet5", "--backup-every", "10"])
    assert "--backup-every: expected minutes like 10m" in capsys.readouterr().err


class KillAt(keras.callbacks.Callback):
    """kill -9 stand-in when batch ``batch`` (from 0) of epoch ``epoch`` (from 1) begins."""

    def __init__(self, epoch, batch):
        super().__init__()
        self.at, self.epoch = (epoch, batch), 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise Killed


@needs_initial_step
@pytest.mark.parametrize("stop,pipeline", [
    ("kill", "tfdata"), ("ctrl-c", "tfdata"),
    ("kill", "pydataset")])
def test_resume_mid_epoch_ends_where_an_uninterrupted_run_would(tmp_path, stop, pipeline):
    """The default recipe (random crops and flips), backed up every 2 steps of 5: a kill
    in step 4 of epoch 2 resumes after step 2 (the periodic backup), a Ctrl-C in step 3
    after step 3 (backed up as it stops); both end as an uninterrupted run does."""
    settings = dict(model="lenet5", data_dir=str(SAMPLE_DIR), download=False, epochs=2,
                    steps_per_epoch=5, batch_size=16, verbose="0", backup_every="2steps",
                    pipeline=pipeline, flip=True)  # the recipe turns flips off for Fashion-MNIST; on here
    straight = train(resolve_config({**settings, "output_dir": str(tmp_path / "a")}))
    config = resolve_config({**settings, "output_dir": str(tmp_path / "b")})
    assert config.crop_padding > 0 and config.flip

    if stop == "kill":
        with pytest.raises(Killed):
            train(config, callbacks=[KillAt(epoch=2, batch=3)])
        expected = {"epoch": 1, "step": 2}
    else:  # backed up as it stops, between two periodic backups
        with pytest.raises(TrainingInterrupted, match="after step 3 of epoch 2"):
            train(config, callbacks=[CtrlCAt(epoch=2, batch=2)])
        expected = {"epoch": 1, "step": 3}
    run = only_run(tmp_path / "b")
    state = backup_state(run)
    assert {k: state[k] for k in expected} == expected
    assert state["weights"] == f"epoch-1-step-{expected['step']}.weights.h5"

    assert main(["--resume", str(run)]) == 0
    resumed = status(run)
    assert resumed["status"] == "finished" and resumed["epochs_completed"] == 2
    a = weights(Path(straight["run_dir"]) / "model.keras")
    b = weights(run / "model.keras")
    assert_same_weights(a, b)  # bit for bit
    assert resumed["test_accuracy"] == pytest.approx(straight["test_accuracy"], abs=1e-6)
    rows = artifacts.read_history_csv(run / "history.csv")
    reference = artifacts.read_history_csv(Path(straight["run_dir"]) / "history.csv")
    assert [r["epoch"] for r in rows] == [1, 2]  # one row per epoch, the split one too
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert rows[1][key] == pytest.approx(reference[1][key], rel=1e-4, abs=1e-6), key


def test_backup_every_minutes_backs_up_within_an_epoch(tmp_path):
    config = resolve_config(dict(model="lenet5", recipe="d2l", data_dir=str(SAMPLE_DIR),
                                 download=False, epochs=1, steps_per_epoch=4, batch_size=32,
                                 verbose="0", backup_every="0.00001m",  # every step
                                 output_dir=str(tmp_path)))
    with pytest.raises(Killed):
        train(config, callbacks=[KillAt(epoch=1, batch=3)])
    run = only_run(tmp_path)
    state = backup_state(run)
    assert (state["epoch"], state["step"], state["weights"]) == (0, 3,
                                                                 "epoch-0-step-3.weights.h5")
    assert set(state["logs"]) >= {"loss", "accuracy"} and state["epoch_seconds"] > 0
    assert sorted(p.name for p in (run / "backup").iterdir()) == [
        "epoch-0-step-3.weights.h5", "training_metadata.json"]  # older ones removed


def test_ctrl_c_before_training_says_nothing_was_trained(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(run_module, "prepare",
                        lambda *a: os.kill(os.getpid(), signal.SIGINT))
    line = one_line_error(capsys, main(["lenet5", *SHORT, "--output-dir", str(tmp_path)]),
                          130)
    assert line == "kerasnets: Interrupted before training started; nothing was trained."
