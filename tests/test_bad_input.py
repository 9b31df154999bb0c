"""Every bad input gets one clear line (issue 12): what was wrong, and what to do.

Each test feeds one kind of bad input, through ``load_dataset``/``create_model`` or the
command line, and checks the message (one line on stderr, exit status 2, no traceback)
and, where a run could start, that nothing was written. Every file is tiny and lives
in ``tmp_path``.
"""

import argparse
import shutil
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import keras
import numpy as np
import pytest

import kerasnets
from kerasnets.data import (DATASETS, CorruptDatasetError, DatasetNotFoundError,
                            load_dataset, locate)
from kerasnets.training.cli import main, predict_main
from kerasnets.training.config import build_parser
from kerasnets.training.errors import TrainingError
from kerasnets.training.evaluate import load_images, load_trained
from kerasnets.training.options import HelpFormatter
from kerasnets.training.resolve import resolve_config

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "fashion_mnist_sample"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test may find data in the real home, the system dirs, or the network."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.delenv("KERASNETS_DATA", raising=False)
    for name, spec in DATASETS.items():
        monkeypatch.setitem(DATASETS, name, replace(spec, system_dirs=()))

    def no_network(spec):
        raise ConnectionError("tests never download")
    monkeypatch.setattr(locate, "download", no_network)
    return home


def one_line_error(capsys, rc) -> str:
    """The CLI's contract for bad input: exit 2, one line ``kerasnets: error: ...``."""
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("kerasnets: error: "), err
    return lines[0]


def train_cli(capsys, tmp_path, *argv) -> str:
    """Run ``kerasnets-train``; assert it failed in one line and wrote nothing."""
    out_dir = tmp_path / "runs"
    rc = main([*argv, "--no-download", "--epochs", "1", "--output-dir", str(out_dir)])
    line = one_line_error(capsys, rc)
    assert not out_dir.exists() or not any(out_dir.rglob("*")), list(out_dir.rglob("*"))
    return line


def write_images(directory: Path, count: int, size=(6, 5), colour=(200, 30, 30)):
    """``count`` PNGs of ``size`` (width, height) named 0.png, 1.png, ..."""
    from PIL import Image
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.new("RGB", size, colour).save(directory / f"{i}.png")
    return directory


def truncated_jpeg(path: Path) -> Path:
    """A JPEG cut in half: its header is fine, its pixels are not all there."""
    from PIL import Image
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(path, "JPEG")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def huge_png(path: Path, side: int = 14000) -> Path:
    """A valid PNG header that says ``side`` x ``side`` pixels (a few bytes on disk)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


def tiny_model_file(path: Path, layer=None) -> Path:
    """A small classifier of 8x8 RGB images saved as ``.keras``."""
    inputs = keras.Input((8, 8, 3))
    x = layer(inputs) if layer is not None else inputs
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(x))
    keras.Model(inputs, outputs).save(path)
    return path


# --------------------------------------------------------------------------- item 5

@pytest.mark.parametrize("model, option, expected", [
    ("lenet5", "dropout_rate=abc", "dropout_rate='abc' should be a float"),
    ("resnet18", "small_input=maybe", "small_input='maybe' should be a bool"),
    ("lenet5", "dropout_rate=2", "dropout_rate=2 must be in [0, 1)"),
    ("lenet5", "pool=median", "pool='median' must be one of 'avg', 'max'"),
    ("lenet5", "depth=3", "does not take option(s) depth"),
])
def test_model_option_values_are_checked_before_anything_is_written(
        capsys, tmp_path, model, option, expected):
    line = train_cli(capsys, tmp_path, model, "--model-option", option,
                     "--data-dir", str(SAMPLE))
    assert expected in line


@pytest.mark.parametrize("name, options, expected", [
    ("resnet18", dict(small_input="maybe"), "should be a bool"),
    ("resnet18", dict(dropout_rate="abc"), "should be a float"),
    ("resnet18", dict(drop_path_rate=1.5), "must be in [0, 1)"),
    ("mobilenet_v1", dict(alpha="half"), "must be a number > 0"),
    ("mobilenet_v1", dict(activation="banana"), "must be one of 'relu'"),
])
def test_create_model_checks_option_values(name, options, expected):
    with pytest.raises(ValueError) as err:
        kerasnets.create_model(name, **options)
    assert expected in str(err.value) and name in str(err.value)


# --------------------------------------------------------------------------- item 6

def copy_sample(dest: Path) -> Path:
    shutil.copytree(SAMPLE, dest)
    return dest


def test_explicit_data_dir_is_the_only_place_looked(tmp_path, monkeypatch):
    # A complete copy elsewhere must not be used in place of the one asked for.
    monkeypatch.setenv("KERASNETS_DATA", str(copy_sample(tmp_path / "elsewhere")))
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("fashion_mnist", data_dir=missing)
    message = str(err.value)
    assert str(missing) in message and "does not exist" in message
    assert "only place looked" in message and len(message.splitlines()) == 1

    partial = copy_sample(tmp_path / "partial")
    (partial / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("fashion_mnist", data_dir=partial)
    assert "only 3 of the 4 files" in str(err.value)
    assert "missing train-labels-idx1-ubyte[.gz]" in str(err.value)
    # ... and without data_dir the search order finds the other copy.
    assert load_dataset("fashion_mnist").source == str(tmp_path / "elsewhere")


def test_incomplete_data_dir_from_the_command_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("KERASNETS_DATA", str(copy_sample(tmp_path / "elsewhere")))
    partial = copy_sample(tmp_path / "partial")
    (partial / "t10k-images-idx3-ubyte.gz").unlink()
    line = train_cli(capsys, tmp_path, "lenet5", "--data-dir", str(partial))
    assert "t10k-images-idx3-ubyte" in line and str(partial) in line


# --------------------------------------------------------------------------- item 7

def test_decompression_bomb_in_a_folder_names_the_file_and_the_limit(tmp_path):
    root = tmp_path / "pets"
    write_images(root / "cat", 3)
    write_images(root / "dog", 3)
    bomb = huge_png(root / "dog" / "huge.png")
    with pytest.raises(CorruptDatasetError) as err:
        load_dataset("folder", data_dir=root, image_size=8, strict_images=True)
    message = str(err.value)
    assert str(bomb) in message and "196000000 pixels" in message
    assert "MAX_IMAGE_PIXELS" in message and len(message.splitlines()) == 1


def test_decompression_bomb_with_a_lowered_limit(tmp_path, monkeypatch):
    from PIL import Image
    root = tmp_path / "pets"
    write_images(root / "cat", 3)
    write_images(root / "dog", 2)
    big = write_images(tmp_path / "big", 1, size=(40, 40))  # 1600 pixels > 2 x 500
    shutil.copy(big / "0.png", root / "dog" / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    with pytest.raises(CorruptDatasetError, match="MAX_IMAGE_PIXELS") as err:
        load_dataset("folder", data_dir=root, strict_images=True)
    assert str(root / "dog" / "big.png") in str(err.value)
    with pytest.raises(CorruptDatasetError, match="too large") as err:
        load_images([root / "dog" / "big.png"], (8, 8), 3)
    assert str(root / "dog" / "big.png") in str(err.value)


# --------------------------------------------------------------------------- predict

def test_predict_on_a_truncated_jpeg_or_a_directory(capsys, tmp_path):
    model = tiny_model_file(tmp_path / "tiny.keras")
    truncated = truncated_jpeg(tmp_path / "cut.jpg")
    line = one_line_error(capsys, predict_main([str(model), str(truncated)]))
    assert str(truncated) in line and "truncated" in line
    folder = write_images(tmp_path / "photos", 1)
    line = one_line_error(capsys, predict_main([str(model), str(folder)]))
    assert str(folder) in line and "is a directory" in line
    line = one_line_error(capsys, predict_main([str(model), str(tmp_path / "gone.png")]))
    assert f"No image file {tmp_path / 'gone.png'}" in line


# --------------------------------------------------------------------------- Lambda

def double(x):
    return x * 2


@pytest.mark.parametrize("function, expected", [
    (double, "calls the Python function 'double'"),
    (lambda x: x * 2, "holds Python bytecode"),
], ids=["named function", "lambda"])
def test_keras_file_with_a_lambda_says_why_and_what_to_do(capsys, tmp_path, function,
                                                          expected):
    model = tiny_model_file(tmp_path / "lambda.keras", keras.layers.Lambda(function))
    with pytest.raises(TrainingError) as err:
        load_trained(model)
    message = str(err.value)
    assert str(model) in message and expected in message
    assert "safe_mode=False" in message and "only for a file you trust" in message.lower()
    assert "rebuild the model" in message and len(message.splitlines()) == 1
    image = write_images(tmp_path / "img", 1, size=(8, 8)) / "0.png"
    assert expected in one_line_error(capsys, predict_main([str(model), str(image)]))


def test_unreadable_keras_file_is_one_line(capsys, tmp_path):
    junk = tmp_path / "junk.keras"
    junk.write_bytes(b"not a zip")
    with pytest.raises(TrainingError, match="Cannot load .*junk.keras as a Keras model"):
        load_trained(junk)


# --------------------------------------------------------------------------- folders

def test_empty_class_folder_is_an_error_naming_it(tmp_path):
    root = tmp_path / "pets"
    write_images(root / "cat", 3)
    (root / "dog").mkdir()
    (root / "dog" / "notes.txt").write_text("no images")
    with pytest.raises(CorruptDatasetError) as err:
        load_dataset("folder", data_dir=root)
    message = str(err.value)
    assert f"class folder {root / 'dog'} has no images" in message
    assert "add images or remove the folder" in message
    assert str(root / "cat") not in message


def test_every_bad_image_is_named_up_front(tmp_path):
    """--strict-images: every bad file named in one error (by default they are skipped
    and named: tests/test_folders.py)."""
    root = tmp_path / "pets"
    write_images(root / "cat", 4)
    write_images(root / "dog", 4)
    bad = []
    for i in range(7):  # headers PIL cannot read
        path = root / "cat" / f"junk{i:02}.png"
        path.write_bytes(b"\x89PNG but not really")
        bad.append(path)
    for i in range(5):  # intact headers, truncated pixels: only decoding can tell
        bad.append(truncated_jpeg(root / "dog" / f"cut{i:02}.jpg"))
    for image_size in (8, None):  # None: the readable images differ in size as well
        with pytest.raises(CorruptDatasetError) as err:
            load_dataset("folder", data_dir=root, image_size=image_size, strict_images=True)
        message = str(err.value)
        assert message.startswith("12 image files are unusable") and "and 2 more" in message
        named = [p for p in bad if str(p) in message]
        assert len(named) == 10 and len(message.splitlines()) == 1
        assert "cannot be read as an image" in message and "cannot be decoded" in message


def test_folder_size_rule(tmp_path):
    """A folder data set has no size of its own: --image-size, else the recipe's (modern:
    224), else the images' own, which must then be one size."""
    root = tmp_path / "mixed"
    write_images(root / "cat", 2, size=(6, 5))
    write_images(root / "dog", 2, size=(9, 7))

    def resolved(**explicit):
        return resolve_config(dict(model="resnet18", dataset="folder", data_dir=str(root),
                                   **explicit)).image_size

    assert resolved() == 224
    assert resolved(image_size=48) == 48
    assert resolved(recipe="none") is None
    with pytest.raises(ValueError, match=r"2 different sizes.*--image-size"):
        load_dataset("folder", data_dir=root)
    assert load_dataset("folder", data_dir=root, image_size=8).input_shape == (8, 8, 3)
    help_text = " ".join(build_parser().format_help().split())
    assert "A folder data set has no size of its own" in help_text
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "a `folder` data set has no size of its own" in readme.lower()


# --------------------------------------------------------------------------- --help

def test_help_shows_a_default_only_when_there_is_one():
    help_text = build_parser().format_help()
    assert "(default: None)" not in help_text
    resume = help_text[help_text.index("  --resume RUN_DIR"):help_text.index("Data:")]
    assert "(default" not in resume  # an option without a default shows none
    assert "(default: 10)" in help_text  # --epochs

    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--weights", help="for a model name: 'imagenet'")
    parser.add_argument("--top-k", type=int, default=5, help="how many")
    parser.add_argument("--quick", action="store_true", help="fast")
    text = parser.format_help()
    assert "(default: None)" not in text and "(default: False)" not in text
    assert "(default: 5)" in text


@pytest.mark.parametrize("entry", ["evaluate_main", "predict_main"])
def test_evaluate_and_predict_help_show_no_none_default(capsys, entry):
    from kerasnets.training import cli
    with pytest.raises(SystemExit):
        getattr(cli, entry)(["--help"])
    assert "(default: None)" not in capsys.readouterr().out
