"""The trainer end to end, on the current backend: short real runs on the committed
Fashion-MNIST sample, resuming, NaN, cross-backend evaluation, bad input."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from kerasnets.training import TrainingError, TrainingInterrupted, resolve_config, train
from kerasnets.training.cli import evaluate_main, main, predict_main
from kerasnets.training.evaluate import evaluate
from tests.conftest import ROOT, SAMPLE_DIR

SHORT = ["--data-dir", str(SAMPLE_DIR), "--no-download", "--epochs", "2",
         "--steps-per-epoch", "3", "--batch-size", "32", "--verbose", "0"]
RUN_FILES = {"config.json", "model.keras", "best.keras", "history.csv", "metrics.json",
             "curves.png", "logs"}


def only_run(output_dir):
    runs = list(Path(output_dir).iterdir())
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.parametrize("pipeline", ["tfdata", "pydataset"])
def test_short_run_keeps_everything(tmp_path, pipeline, backend):
    rc = main(["lenet5", *SHORT, "--pipeline", pipeline, "--output-dir", str(tmp_path)])
    assert rc == 0
    run = only_run(tmp_path)
    assert run.name.startswith("lenet5-fashion_mnist-")
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    assert not (run / "backup").exists()  # removed after a clean finish

    config = json.loads((run / "config.json").read_text())
    assert config["backend"] == backend
    assert config["settings"]["pipeline"] == pipeline
    assert config["settings"]["recipe"] == "modern"
    assert config["settings"]["model_options"] == {"activation": "relu", "pool": "max"}
    assert {"keras", "numpy", "python"} <= set(config["versions"])
    assert config["machine"]["cpu_count"] >= 1
    assert config["class_names"][0] == "T-shirt/top"

    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["epochs_completed"] == 2
    for key in ("test_accuracy", "test_top5", "test_loss", "train_images_per_second",
                "wall_seconds"):
        assert metrics[key] > 0
    assert metrics["test_top5"] >= metrics["test_accuracy"]
    history = (run / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,") and len(history) == 3
    assert "val_accuracy" in history[0] and "learning_rate" in history[0]
    assert (run / "curves.png").read_bytes()[:4] == b"\x89PNG"

    model = keras.saving.load_model(run / "model.keras")
    assert model.name == "lenet5"
    again = evaluate(run)
    assert again["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)


class InterruptAfter(keras.callbacks.Callback):
    """Ctrl-C right after epoch ``epoch`` has been backed up."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.parametrize("pipeline", ["tfdata", "pydataset"])
def test_resume_ends_where_an_uninterrupted_run_would(tmp_path, pipeline):
    """With the modern recipe's augmentation (random crop + flip): each batch's
    augmentation depends on (seed, batch index) only, so the resumed run is the same."""
    settings = dict(model="lenet5", recipe="modern", data_dir=str(SAMPLE_DIR), download=False,
                    epochs=3, steps_per_epoch=4, batch_size=32, lr=0.5, verbose="0",
                    pipeline=pipeline, schedule="cosine", optimizer="sgd", momentum=0.9)
    straight = train(resolve_config({**settings, "output_dir": str(tmp_path / "a")}))

    config = resolve_config({**settings, "output_dir": str(tmp_path / "b")})
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(config, callbacks=[InterruptAfter(2)])
    run = only_run(tmp_path / "b")
    assert (run / "interrupted.keras").exists()
    assert json.loads((run / "metrics.json").read_text())["status"] == "interrupted"
    assert json.loads((run / "backup" / "training_metadata.json").read_text())["epoch"] == 2

    assert main(["--resume", str(run)]) == 0
    resumed = json.loads((run / "metrics.json").read_text())
    assert resumed["status"] == "finished" and resumed["epochs_completed"] == 3
    a = keras.saving.load_model(Path(straight["run_dir"]) / "model.keras")
    b = keras.saving.load_model(run / "model.keras")
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-4, atol=1e-5)
    assert resumed["test_accuracy"] == pytest.approx(straight["test_accuracy"], abs=2e-3)
    history = (run / "history.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in history[1:]] == ["1", "2", "3"]


def test_nan_loss_stops_with_a_clear_message(tmp_path, capsys):
    rc = main(["lenet5", "--recipe", "d2l", "--data-dir", str(SAMPLE_DIR), "--no-download",
               "--epochs", "3", "--steps-per-epoch", "3", "--batch-size", "32",
               "--verbose", "0", "--lr", "1e38", "--momentum", "0.9",
               "--model-option", "activation=relu", "--output-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "loss became NaN at epoch 1" in err and "--clip-norm" in err
    run = only_run(tmp_path)
    assert not (run / "model.keras").exists()  # no NaN weights saved as the result
    assert json.loads((run / "metrics.json").read_text())["status"].startswith(
        "failed: loss became NaN")


class PoisonAt(keras.callbacks.Callback):
    """Turn one weight into NaN when epoch ``epoch`` begins (a diverging run)."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            kernel = self.model.get_layer("fc3").kernel
            kernel.assign(np.full(kernel.shape, np.nan, "float32"))


def test_nan_keeps_the_last_good_epoch(tmp_path):
    config = resolve_config(dict(model="lenet5", data_dir=str(SAMPLE_DIR), download=False,
                                 epochs=4, steps_per_epoch=3, batch_size=32, verbose="0",
                                 output_dir=str(tmp_path)))
    with pytest.raises(TrainingError, match="NaN at epoch 3, batch 1.*last good state"):
        train(config, callbacks=[PoisonAt(3)])
    run = only_run(tmp_path)
    state = json.loads((run / "backup" / "training_metadata.json").read_text())
    assert state["epoch"] == 2  # epoch 3 (NaN) was not backed up over it
    good = keras.saving.load_model(run / "best.keras")
    assert all(np.isfinite(w).all() for w in good.get_weights())
    rows = (run / "history.csv").read_text().splitlines()
    assert len(rows) >= 3


OTHER_BACKEND = {"tensorflow": "jax", "jax": "torch", "torch": "tensorflow"}


def test_evaluate_a_model_trained_under_another_backend(tmp_path, backend, capsys):
    other = OTHER_BACKEND[backend]
    env = {**os.environ, "KERAS_BACKEND": other}
    subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "lenet5", *SHORT,
                    "--output-dir", str(tmp_path)], env=env, check=True, cwd=ROOT,
                   capture_output=True, timeout=600)
    run = only_run(tmp_path)
    stored = json.loads((run / "metrics.json").read_text())
    assert json.loads((run / "config.json").read_text())["backend"] == other
    assert evaluate_main([str(run), "--data-dir", str(SAMPLE_DIR)]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["backend"] == backend and result["trained_with"] == other
    assert result["accuracy"] == pytest.approx(stored["test_accuracy"], abs=1e-6)
    assert result["loss"] == pytest.approx(stored["test_loss"], rel=1e-4)


def test_predict_prints_top_k_labels(tmp_path, capsys):
    from PIL import Image

    assert main(["lenet5", *SHORT, "--output-dir", str(tmp_path)]) == 0
    run = only_run(tmp_path)
    from kerasnets.data import load_dataset

    sample = load_dataset("fashion_mnist", data_dir=SAMPLE_DIR, download=False)
    image = tmp_path / "boot.png"
    Image.fromarray(sample.x_test[0, ..., 0]).save(image)
    capsys.readouterr()
    assert predict_main([str(run), str(image), "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == str(image) and len(lines) == 4
    probabilities = [float(line.split("%")[0]) for line in lines[1:]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert predict_main([str(run), str(tmp_path / "missing.png")]) == 2


def test_googlenet_with_auxiliary_heads_trains(tmp_path):
    rc = main(["googlenet", "--data-dir", str(SAMPLE_DIR), "--no-download", "--epochs", "1",
               "--steps-per-epoch", "1", "--batch-size", "32", "--verbose", "0",
               "--model-option", "aux_logits=true", "--output-dir", str(tmp_path)])
    assert rc == 0
    run = only_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 1
    assert metrics["test_top5"] >= metrics["test_accuracy"]
    # the main output's metrics, the same when evaluate.py compiles the model again
    again = evaluate(run)
    assert again["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    assert again["top5"] == pytest.approx(metrics["test_top5"], abs=1e-6)
    header = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert {"accuracy", "val_accuracy", "top5", "loss"} <= set(header)  # the main output's


BAD_INPUTS = [
    (["resnet5"], "Unknown model 'resnet5'.*resnet50"),
    (["alexnet", "--image-size", "32"], "too small for alexnet.*at least 63x63"),
    (["alexnet", "--recipe", "none"], "28x28, too small for alexnet.*--image-size 64"),
    (["lenet5", "--dataset", "cifar10", "--data-dir", "{empty}"], "(?s)cifar.*Looked in"),
    (["lenet5", "--dataset", "folder"], "--dataset folder needs --data-dir"),
    (["lenet5", "--use-multiprocessing"], "--use-multiprocessing needs --pipeline pydataset"),
    (["lenet5", "--model-option", "depth=3"],
     "lenet5 (has no|does not take) option.*depth.*activation"),
    (["lenet5", "--mixup", "0.2", "--cutmix", "1"], "either MixUp or CutMix"),
    (["lenet5", "--randaugment"], "RandAugment.*--to-rgb"),
    (["lenet5", "--data-dir", "{corrupt}"], "(?i)truncated|corrupt|magic"),
]


@pytest.mark.parametrize("argv,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_fails_before_training_with_one_clear_message(tmp_path, capsys, argv,
                                                                message):
    import re

    (tmp_path / "empty").mkdir()
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for f in SAMPLE_DIR.iterdir():
        (corrupt / f.name).write_bytes(f.read_bytes()[:100])
    argv = [a.format(empty=tmp_path / "empty", corrupt=corrupt) for a in argv]
    if "--data-dir" not in argv and "--dataset" not in argv:
        argv += ["--data-dir", str(SAMPLE_DIR)]
    out_dir = tmp_path / "runs"
    rc = main([*argv, "--no-download", "--output-dir", str(out_dir)])
    err = capsys.readouterr().err
    assert rc == 2
    assert re.search(message, err), err
    assert "Traceback" not in err
    assert not out_dir.exists() or not any(out_dir.iterdir())  # nothing started


def test_bad_flags_and_resume_misuse(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["lenet5", "--epochs", "0"])
    assert exit_info.value.code == 2
    assert "--epochs: must be > 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["lenet5", "--optimizer", "rmsprop"])
    assert "invalid choice: 'rmsprop'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--resume", str(tmp_path), "--lr", "0.1"])
    assert "--resume takes every setting" in capsys.readouterr().err
    assert main(["--resume", str(tmp_path)]) == 2
    assert "no config.json" in capsys.readouterr().err
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    assert main(["lenet5", *SHORT, "--output-dir", str(tmp_path / "runs"),
                 "--run-name", "taken"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_help_documents_every_option(capsys):
    """Every declared setting has help and a default that --help shows with it, its
    flag parses to its declared default's type, and a preprocessing option is a field
    of data.Preprocessing."""
    import dataclasses
    import re

    from kerasnets.data import Preprocessing
    from kerasnets.training.config import TrainConfig, build_parser
    from kerasnets.training.options import declared, flag_name, shown_default

    declarations = declared(TrainConfig)
    assert [f.name for f, _ in declarations] == [f.name for f in dataclasses.fields(TrainConfig)]
    with pytest.raises(SystemExit):
        main(["--help"])
    entries = {}  # flag -> its entry in --help, one line
    for line in capsys.readouterr().out.splitlines():
        if re.match(r"  -", line):
            flag = line.split()[0].rstrip(",")
            entries[flag] = line
        elif line.startswith("   ") and entries:
            entries[flag] += " " + line.strip()
    parser = build_parser()
    preprocessing_fields = {f.name for f in dataclasses.fields(Preprocessing)}
    for field, spec in declarations:
        assert spec.help.strip(), field.name
        if spec.to_preprocessing:
            assert field.name in preprocessing_fields, field.name
        if not spec.flag:
            continue
        flag = flag_name(field.name)
        assert flag in entries, f"{flag} is not in --help"
        help_text = f"{spec.help} (default: {shown_default(field)})"
        # argparse wraps lines at spaces and after hyphens: compare without whitespace
        assert "".join(entries[flag].split()).endswith("".join(help_text.split())), flag
        if field.default is not None and not isinstance(field.default, bool):
            parsed = getattr(parser.parse_args([flag, str(field.default)]), field.name)
            assert parsed == field.default, flag


def test_settings_from_json_or_python_are_checked_as_flags_are(tmp_path, capsys):
    from kerasnets.training import TrainConfig

    with pytest.raises(ValueError, match="--epochs: must be > 0, got 0"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="--optimizer: invalid choice: 'rmsprop'"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="--flip: must be a bool"):
        TrainConfig(flip="yes")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"settings": {"epochs": 0}}))
    assert main(["--resume", str(run)]) == 2
    assert "--epochs: must be > 0, got 0" in capsys.readouterr().err


def test_recipes_set_the_seed_settings_and_flags_win():
    d2l = resolve_config({"model": "lenet5", "recipe": "d2l"})
    assert (d2l.lr, d2l.batch_size, d2l.epochs, d2l.momentum) == (0.9, 256, 10, 0.0)
    assert resolve_config({"model": "alexnet", "recipe": "d2l"}).image_size == 224
    assert resolve_config({"model": "resnet18", "recipe": "d2l"}).image_size == 96
    modern = resolve_config({"model": "resnet18"})
    assert modern.model_options == {"small_input": True} and modern.image_size == 28
    assert resolve_config({"model": "alexnet"}).image_size == 64
    flagged = resolve_config({"model": "lenet5", "recipe": "d2l", "lr": 0.1,
                              "model_options": {"activation": "tanh"}})
    assert flagged.lr == 0.1 and flagged.model_options == {"activation": "tanh"}


@pytest.mark.slow
def test_ctrl_c_saves_the_run_for_resume(tmp_path):
    """A real SIGINT to a real training process: exit 130, the run kept for --resume."""
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "lenet5", "--recipe", "d2l",
           "--data-dir", str(SAMPLE_DIR), "--no-download", "--epochs", "40",
           "--steps-per-epoch", "20", "--batch-size", "32", "--verbose", "2",
           "--output-dir", str(tmp_path)]
    process = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    deadline = time.time() + 300
    for line in process.stdout:  # wait for the second epoch to start
        if "Epoch 3/" in line or time.time() > deadline:
            break
    process.send_signal(signal.SIGINT)
    output = process.communicate(timeout=120)[0]
    assert process.returncode == 130, output
    assert "--resume" in output
    run = only_run(tmp_path)
    assert (run / "interrupted.keras").exists()
    epochs_done = json.loads((run / "backup" / "training_metadata.json").read_text())["epoch"]
    assert epochs_done >= 2
