"""Fine-tuning from the trainer (issue 13): every weight source (.keras, .weights.h5, a
run directory, a torchvision .pth, ImageNet from a private torch.hub cache), freeze
semantics (frozen weights and BatchNormalization statistics unchanged), the two-phase
schedule, the backbone's learning-rate multiplier, resume in phase 2 and at the phase
boundary, mismatches as one clear line, and evaluation on another backend. Tiny runs on
the committed Fashion-MNIST sample, on the current backend."""

import fcntl
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import kerasnets
from kerasnets import registry
from kerasnets.training import artifacts, resolve_config, train
from kerasnets.training.cli import main
from kerasnets.training.finetune import classifier_layers, weights_file_keys
from kerasnets.training.phases import frozen_layers, scale_learning_rate
from tests.conftest import ROOT, SAMPLE_DIR
from tests.helpers import publish_fake_resnet18_weights

SHORT = ["--data-dir", str(SAMPLE_DIR), "--no-download", "--steps-per-epoch", "2",
         "--batch-size", "16", "--verbose", "0", "--backup-every", "0", "--jit-compile", "false"]
QUICK = dict(data_dir=str(SAMPLE_DIR), download=False, steps_per_epoch=2, batch_size=16,
             verbose="0", backup_every="0", jit_compile="false")
RESNET = ["--model-option", "small_input=true"]


class Killed(BaseException):
    """A kill -9 stand-in (as in test_run_safety): nothing of ours catches it."""


class KillAt(keras.callbacks.Callback):
    """Killed when batch ``batch`` (from 0) of epoch ``epoch`` (from 1) begins."""

    def __init__(self, epoch, batch=0):
        super().__init__()
        self.at, self.epoch = (epoch, batch), 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch + 1

    def on_train_batch_begin(self, batch, logs=None):
        if (self.epoch, batch) == self.at:
            raise Killed


class WeightsAfterEpochs(keras.callbacks.Callback):
    """The model's weights at each epoch end."""

    def __init__(self):
        super().__init__()
        self.seen = {}

    def on_epoch_end(self, epoch, logs=None):
        self.seen[epoch + 1] = {layer.name: [np.array(w) for w in layer.get_weights()]
                                for layer in self.model.layers}


def layer_weights(model):
    return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def assert_equal(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def changed(a, b):
    return any(not np.array_equal(x, y) for x, y in zip(a, b))


def run_dir(output):
    (run,) = [p for p in Path(output).iterdir() if p.is_dir()]
    return run


def train_cli(capsys, *args):
    rc = main([*args, *SHORT])
    out = capsys.readouterr()
    assert rc == 0, out.err
    return out.out


@pytest.fixture(scope="module")
def sources(tmp_path_factory, worker_id):
    """Finished runs to start from: LeNet-5 and ResNet-18 (small-input stem), trained once
    per session and shared by the pytest-xdist workers (a module fixture would be trained
    by each worker: 70 s each on torch). The tests only read them."""
    if worker_id == "master":
        root = tmp_path_factory.getbasetemp() / "finetune-sources"
    else:  # the session's directory, above each worker's own
        root = tmp_path_factory.getbasetemp().parent / "finetune-sources"
    root.mkdir(exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one worker trains, the other waits and reads
        done = root / "runs.json"
        if not done.exists():
            lenet = train(resolve_config(dict(model="lenet5", epochs=1, **QUICK,
                                              output_dir=str(root / "lenet5"))))
            resnet = train(resolve_config(dict(model="resnet18", epochs=1, **QUICK,
                                               model_options={"small_input": True},
                                               test_subset=64,  # CI time: full-size maps
                                               output_dir=str(root / "resnet18"))))
            done.write_text(json.dumps({"lenet5": lenet["run_dir"],
                                        "resnet18": resnet["run_dir"]}))
    return {name: Path(run) for name, run in json.loads(done.read_text()).items()}


def test_run_directory_source_frozen_backbone_and_batchnorm_statistics(sources, tmp_path,
                                                                       capsys):
    """--weights RUN_DIR: the run's model, options and preprocessing; with the backbone
    frozen every weight but fc (BN moving statistics included) stays the source's."""
    source = sources["resnet18"]
    out = train_cli(capsys, "--weights", str(source), "--freeze", "backbone", "--epochs", "1",
                    "--normalize", "unit", "--test-subset", "64", "--output-dir", str(tmp_path))
    run = run_dir(tmp_path)
    assert "weights from" in out and "1 new (fc)" in out
    assert "--image-size 28" in out and "(yours: --normalize unit)" in out
    record = json.loads((run / "config.json").read_text())
    assert record["settings"]["model"] == "resnet18"
    assert record["settings"]["model_options"]["small_input"] is True
    assert record["preprocessing"]["normalize"] == "unit"  # not the source's standardize
    loaded = record["weights_source"]
    assert loaded["new"] == ["fc"] and loaded["source"] == str(source)
    assert loaded["sha256"] == hashlib.sha256((source / "model.keras").read_bytes()).hexdigest()
    before = layer_weights(keras.saving.load_model(source / "model.keras"))
    after = layer_weights(keras.saving.load_model(run / "model.keras"))
    assert sorted(loaded["loaded"]) == sorted(set(before) - {"fc"})
    for name in loaded["loaded"]:  # conv kernels, BN gamma/beta and moving mean/variance
        assert_equal(after[name], before[name])
    assert changed(after["fc"], before["fc"]) and after["fc"][0].shape == (512, 10)


def test_frozen_batchnorm_uses_moving_statistics_on_shifted_data():
    """Keras 3: a BatchNormalization with trainable=False runs in inference mode, so a
    training step on data with a very different mean leaves its statistics alone."""
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(4, 3, name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2, name="fc")(x), name="tiny")
    x_shifted = np.random.default_rng(0).normal(50.0, 5.0, (8, 4, 4, 3)).astype("float32")
    y = keras.utils.to_categorical(np.arange(8) % 2, 2)
    frozen = frozen_layers(model, "backbone", classifier_layers(model))
    assert {"conv", "bn"} <= set(frozen) and "fc" not in frozen
    for name in frozen:
        model.get_layer(name).trainable = False
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    bn, conv, fc = (model.get_layer(n).get_weights() for n in ("bn", "conv", "fc"))
    model.train_on_batch(x_shifted, y)
    assert_equal(model.get_layer("bn").get_weights(), bn)  # gamma, beta, moving mean/var
    assert_equal(model.get_layer("conv").get_weights(), conv)
    assert changed(model.get_layer("fc").get_weights(), fc)
    # the reference: the same step with BN trainable moves its moving mean towards ~50*k
    model.get_layer("bn").trainable = True
    model.compile(optimizer=keras.optimizers.SGD(0.1),
                  loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    model.train_on_batch(x_shifted, y)
    assert changed(model.get_layer("bn").get_weights(), bn)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_backbone_learning_rate_multiplier_scales_the_step(optimizer):
    """One step from the same start: the backbone moves by exactly the multiplier times
    its full-rate step, the head by the full step (Adam included, whose step a
    gradient scale would not change)."""
    def make():
        keras.utils.set_random_seed(1)
        inputs = keras.Input((6,))
        hidden = keras.layers.Dense(5, name="body")(inputs)
        return keras.Model(inputs, keras.layers.Dense(3, name="fc")(hidden))

    def step(multiplier):
        model = make()
        start = layer_weights(model)
        chosen = keras.optimizers.SGD(0.1, momentum=0.9) if optimizer == "sgd" else \
            keras.optimizers.Adam(0.01)
        scale_learning_rate(chosen, model.get_layer("body").trainable_variables, multiplier)
        model.compile(optimizer=chosen,
                      loss=keras.losses.CategoricalCrossentropy(from_logits=True))
        model.train_on_batch(x, y)
        return {k: [a - b for a, b in zip(v, start[k])] for k, v in layer_weights(model).items()}

    x = np.random.default_rng(1).normal(size=(4, 6)).astype("float32")
    y = keras.utils.to_categorical([0, 1, 2, 0], 3)
    full, slow = step(1.0), step(0.25)
    for name, share in (("body", 0.25), ("fc", 1.0)):
        for a, b in zip(slow[name], full[name]):
            assert np.abs(b).max() > 0
            np.testing.assert_allclose(a, share * b, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("kind", [".keras", ".weights.h5"])
def test_keras_file_sources(sources, tmp_path, capsys, kind):
    source = sources["lenet5"]
    model = keras.saving.load_model(source / "model.keras")
    path = tmp_path / f"pretrained{kind}"
    (model.save if kind == ".keras" else model.save_weights)(path)
    out = train_cli(capsys, "lenet5", "--weights", str(path), "--freeze", "backbone",
                    "--epochs", "1", "--output-dir", str(tmp_path / "runs"))
    run = run_dir(tmp_path / "runs")
    head = classifier_layers(model)
    assert f"{len(head)} new ({', '.join(head)})" in out
    record = json.loads((run / "config.json").read_text())
    assert record["weights_source"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    after = layer_weights(keras.saving.load_model(run / "model.keras"))
    for name, weights in layer_weights(model).items():
        if name in head:
            assert changed(after[name], weights)
        else:
            assert_equal(after[name], weights)


def test_weights_file_keys_are_those_keras_writes(tmp_path):
    import h5py

    model = kerasnets.create_model("mobilenet_v2", input_shape=(32, 32, 3), num_classes=4)
    model.save_weights(tmp_path / "m.weights.h5")
    with h5py.File(tmp_path / "m.weights.h5") as file:
        written = {k for k in file["layers"] if len(file["layers"][k].get("vars", {}))}
    keys = weights_file_keys(model)
    assert {keys[layer.name] for layer in model.layers if layer.weights} == written


def test_mismatches_are_one_clear_line(sources, tmp_path, capsys):
    resnet34 = kerasnets.create_model("resnet34", input_shape=(28, 28, 1), num_classes=10,
                                      small_input=True)
    resnet34.save_weights(tmp_path / "r34.weights.h5")
    alone = tmp_path / "resnet18-small-input.keras"  # no config.json beside: no options
    alone.write_bytes((sources["resnet18"] / "model.keras").read_bytes())
    cases = [
        (["resnet18", "--weights", str(tmp_path / "r34.weights.h5"), *RESNET],
         "does not fit resnet18 as built here"),
        (["resnet18", "--weights", str(sources["lenet5"])],
         "holds lenet5, but asked for resnet18"),
        (["resnet18", "--weights", str(alone), "--model-option", "small_input=false"],
         "layer 'conv1' has weights of shapes"),
        (["lenet5", "--weights", str(tmp_path / "nothing.pth")], "no such file or directory"),
        (["lenet5", "--weights", str(sources["lenet5"]), "--freeze", "nope"],
         "has no layer or stage of that name"),
        (["lenet5", "--head-epochs", "1", "--freeze", "backbone"], "drop one of them"),
    ]
    for args, message in cases:
        rc = main([*args, *SHORT, "--epochs", "2", "--output-dir", str(tmp_path / "runs")])
        err = capsys.readouterr().err
        assert rc == 2, (args, err)
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "Traceback" not in err, err
        assert message in lines[0], (message, lines[0])
    assert not [p for p in (tmp_path / "runs").iterdir()]  # refused before any run folder
    rc = main(["lenet5", "--head-epochs", "2", *SHORT, "--epochs", "2"])
    assert rc == 2 and "leaves no epoch for the second phase" in capsys.readouterr().err


def test_freeze_before_a_stage_or_layer():
    model = kerasnets.create_model("resnet18", input_shape=(28, 28, 1), num_classes=3,
                                   small_input=True)
    head = classifier_layers(model)
    assert head == ["fc"]
    names = [layer.name for layer in model.layers]
    first = next(i for i, n in enumerate(names) if n.startswith("layer3_"))
    before_stage = frozen_layers(model, "layer3", head)
    assert before_stage == names[:first] and "layer2_1_bn2" in before_stage
    # a layer's own padding layer (layer3_0_conv1_pad) goes with it
    assert frozen_layers(model, "layer3_0_conv1", head) == before_stage
    before_layer = frozen_layers(model, "layer3_0_bn1", head)
    assert before_layer == names[:names.index("layer3_0_bn1")]
    assert set(before_stage) < set(before_layer) and "layer3_0_conv1" in before_layer
    assert frozen_layers(model, "none", head) == []
    assert "fc" not in frozen_layers(model, "backbone", head)


def test_two_phases_one_run(sources, tmp_path):
    """--head-epochs 1: epoch 1 trains the classifier only, epoch 2 everything after
    --freeze; one history, one run directory."""
    watch = WeightsAfterEpochs()
    config = resolve_config(dict(
        weights=str(sources["lenet5"]), head_epochs=1, epochs=2, freeze="conv2",
        backbone_lr_multiplier=0.5, **QUICK, output_dir=str(tmp_path)))
    result = train(config, callbacks=[watch])
    source = layer_weights(keras.saving.load_model(sources["lenet5"] / "model.keras"))
    head = classifier_layers(keras.saving.load_model(sources["lenet5"] / "model.keras"))
    frozen = set(frozen_layers(keras.saving.load_model(sources["lenet5"] / "model.keras"),
                               "conv2", head))
    for name, weights in source.items():
        if name in head:
            assert changed(watch.seen[1][name], weights)
        else:
            assert_equal(watch.seen[1][name], weights)  # phase 1: the head only
            if name in frozen:
                assert_equal(watch.seen[2][name], weights)
            else:
                assert changed(watch.seen[2][name], weights), name
    rows = artifacts.read_history_csv(Path(result["run_dir"]) / "history.csv")
    assert [r["epoch"] for r in rows] == [1, 2]
    assert result["status"] == "finished"


def test_resume_in_phase_two_ends_where_a_straight_run_would(sources, tmp_path):
    """Killed in epoch 3 (phase 2; the backup of epoch 2 is phase 2's) or as epoch 2
    begins (the boundary: the backup is phase 1's): --resume ends bit for bit as an
    uninterrupted run does."""
    settings = dict(weights=str(sources["lenet5"]), head_epochs=1, epochs=3,
                    backbone_lr_multiplier=0.1, **QUICK)
    straight = train(resolve_config({**settings, "output_dir": str(tmp_path / "straight")}))
    a = keras.saving.load_model(Path(straight["run_dir"]) / "model.keras").get_weights()
    for killed_in in (3, 2):
        output = tmp_path / f"killed-in-{killed_in}"
        with pytest.raises(Killed):
            train(resolve_config({**settings, "output_dir": str(output)}),
                  callbacks=[KillAt(epoch=killed_in)])
        run = run_dir(output)
        state = json.loads((run / "backup" / "training_metadata.json").read_text())
        assert state["epoch"] == killed_in - 1
        assert main(["--resume", str(run)]) == 0
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["status"] == "finished" and metrics["epochs_completed"] == 3
        assert_equal(a, keras.saving.load_model(run / "model.keras").get_weights())
        assert metrics["test_accuracy"] == pytest.approx(straight["test_accuracy"], abs=1e-6)
        rows = artifacts.read_history_csv(run / "history.csv")
        assert [r["epoch"] for r in rows] == [1, 2, 3]


def random_resnet18(num_classes):
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes).eval()
    with torch.no_grad():  # statistics a fresh Keras BN would not have
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model


def test_torchvision_pth_source(tmp_path, capsys):
    import torch

    reference = random_resnet18(num_classes=7)
    path = tmp_path / "resnet18-finetuned.pth"
    torch.save(reference.state_dict(), path)
    out = train_cli(capsys, "resnet18", "--weights", str(path), "--image-size", "32",
                    "--to-rgb", "--freeze", "backbone", "--epochs", "1",
                    "--output-dir", str(tmp_path / "runs"))
    assert "1 new (fc)" in out
    model = keras.saving.load_model(run_dir(tmp_path / "runs") / "model.keras")
    state = {k: v.numpy() for k, v in reference.state_dict().items()}
    np.testing.assert_array_equal(model.get_layer("layer4_1_conv2").get_weights()[0],
                                  np.transpose(state["layer4.1.conv2.weight"], (2, 3, 1, 0)))
    bn = model.get_layer("layer3_0_bn1").get_weights()
    np.testing.assert_allclose(bn[2], state["layer3.0.bn1.running_mean"])  # frozen BN
    assert model.get_layer("fc").get_weights()[0].shape == (512, 10)


def test_imagenet_source_from_the_hub_cache_sets_the_input(tmp_path, capsys, monkeypatch):
    """A private torch.hub cache holding a random resnet18 checkpoint named after its
    sha256 prefix (as test_torchvision does): the input follows ImageNet's, except
    --image-size, which is the user's."""
    target = publish_fake_resnet18_weights(tmp_path, monkeypatch,
                                           random_resnet18(num_classes=1000).state_dict())
    prefix = target.name.rsplit("-", 1)[1].split(".")[0]
    out = train_cli(capsys, "resnet18", "--weights", "imagenet", "--image-size", "32",
                    "--epochs", "1", "--output-dir", str(tmp_path / "runs"))
    assert "--normalize imagenet, --to-rgb (yours: --image-size 32)" in out
    record = json.loads((run_dir(tmp_path / "runs") / "config.json").read_text())
    assert record["preprocessing"]["mean"] == list(registry.IMAGENET_MEAN)
    assert record["settings"]["to_rgb"] is True and record["input_shape"] == [32, 32, 3]
    assert record["weights_source"]["path"] == str(target)
    assert record["weights_source"]["sha256"].startswith(prefix)


def test_evaluate_and_predict_on_another_backend(sources, tmp_path, capsys):
    """A fine-tuned run (from a run directory, two phases) evaluates the same on another
    backend, and predicts."""
    train_cli(capsys, "--weights", str(sources["lenet5"]), "--head-epochs", "1", "--epochs",
              "2", "--output-dir", str(tmp_path))
    run = run_dir(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    other = next(b for b in ("jax", "tensorflow", "torch") if b != keras.backend.backend())
    from PIL import Image

    Image.fromarray(np.full((28, 28), 128, np.uint8)).save(tmp_path / "grey.png")
    env = {**os.environ, "KERAS_BACKEND": other, "PYTHONPATH": str(ROOT)}
    evaluated = subprocess.run([sys.executable, str(ROOT / "scripts" / "evaluate.py"), str(run)],
                               capture_output=True, text=True, env=env, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert result["backend"] == other
    assert result["accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    predicted = subprocess.run([sys.executable, str(ROOT / "scripts" / "predict.py"), str(run),
                                str(tmp_path / "grey.png"), "--top-k", "2"],
                               capture_output=True, text=True, env=env, timeout=300)
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.splitlines()[0].endswith("grey.png")


def test_transfer_demo_folders(tmp_path):
    """The demonstration's folders (scripts/transfer_demo.py) are folder data sets of
    the source classes and of ``per_class`` images of each target class."""
    from kerasnets.data import load_dataset
    from kerasnets.training.transfer import write_transfer_folders

    counts = write_transfer_folders(tmp_path, data_dir=SAMPLE_DIR, per_class=3,
                                    val_per_class=2)
    sample = load_dataset("fashion_mnist", data_dir=SAMPLE_DIR, download=False)
    assert counts["finetune/train"] == 15
    assert counts["pretrain/train"] == int(np.isin(sample.y_train, range(5)).sum())
    assert counts["finetune/test"] == int(np.isin(sample.y_test, range(5, 10)).sum())
    tuned = load_dataset("folder", data_dir=tmp_path / "finetune", image_size=28)
    assert sorted(tuned.class_names) == ["Ankle_boot", "Bag", "Sandal", "Shirt", "Sneaker"]
    assert len(tuned.x_train) == 15 and tuned.x_train.shape[1:3] == (28, 28)
    assert len(tuned.x_test) == counts["finetune/test"] and len(tuned.x_val) == 10
    train_files = {p.name for p in (tmp_path / "finetune" / "train").rglob("*.jpg")}
    assert not train_files & {p.name for p in (tmp_path / "finetune" / "val").rglob("*.jpg")}
    with pytest.raises(FileExistsError, match="exists already"):
        write_transfer_folders(tmp_path, data_dir=SAMPLE_DIR)


def test_crop_padding_follows_the_input_size_the_weights_set(sources, tmp_path):
    """The modern recipe's random crop pads an eighth of the image: a 28 px source
    fine-tuned on a folder crops for 28 px (3), not for the size the recipe picks for the
    folder (the transfer demo's run padded 28 px, for 224, and learnt nothing)."""
    from PIL import Image

    for split in ("train", "test"):
        for label in ("a", "b"):
            folder = tmp_path / "data" / split / label
            folder.mkdir(parents=True)
            for i in range(2):
                Image.fromarray(np.full((64, 64, 3), 60 + 40 * i, np.uint8)).save(
                    folder / f"{i}.png")
    settings = dict(model="resnet18", weights=str(sources["resnet18"]), dataset="folder",
                    data_dir=str(tmp_path / "data"), download=False,
                    output_dir=str(tmp_path / "runs"))
    config = resolve_config(settings)
    assert (config.image_size, config.crop_padding) == (28, 3)
    assert resolve_config(dict(settings, crop_padding=5)).crop_padding == 5  # yours stays
    assert resolve_config(dict(settings, image_size=48)).crop_padding == 6  # your size
