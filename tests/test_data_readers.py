"""Tests of kerasnets.data: the specs, the readers, the search order, the splits.

All files a test writes go to ``tmp_path``; the committed sample in
tests/data/fashion_mnist_sample/ is real Fashion-MNIST in its original format.
"""

import gzip
import io
import os
import pickle
import shutil
import subprocess
import sys
import tarfile
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kerasnets.data import (DATASETS, CorruptDatasetError, Dataset, DatasetNotFoundError,
                            load_dataset)
from kerasnets.data import idx, locate
from kerasnets.data.specs import native_size
from kerasnets.data.splits import stratified_split

SAMPLE = Path(__file__).resolve().parent / "data" / "fashion_mnist_sample"
DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
REAL_DOWNLOAD = locate.download  # the autouse fixture replaces it in every test


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """No test may find data in the real home, the real system dirs, or the network."""
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


def set_system_dirs(monkeypatch, name, *dirs):
    """Point data set ``name``'s system directories at ``dirs``."""
    monkeypatch.setitem(DATASETS, name, replace(DATASETS[name], system_dirs=tuple(map(str, dirs))))


def copy_sample(dest: Path) -> Path:
    shutil.copytree(SAMPLE, dest)
    return dest


def idx_bytes(array: np.ndarray, magic=None, count=None) -> bytes:
    """Encode ``array`` as IDX (unsigned bytes); ``magic``/``count`` can lie."""
    array = np.asarray(array, np.uint8)
    magic = magic if magic is not None else (2051 if array.ndim == 3 else 2049)
    dims = list(array.shape)
    if count is not None:
        dims[0] = count
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    return header + array.tobytes()


def read_sample_idx(name):
    return idx.read_idx(SAMPLE / name, expected_magic=2051 if "images" in name else 2049)


# --------------------------------------------------------------------------- the sample

def test_sample_loads_with_shapes_dtypes_labels_and_names():
    ds = load_dataset("fashion_mnist", data_dir=SAMPLE, download=False)
    assert isinstance(ds, Dataset)
    assert ds.x_train.shape == (1000, 28, 28, 1) and ds.x_test.shape == (250, 28, 28, 1)
    assert ds.x_train.dtype == np.uint8 and ds.x_test.dtype == np.uint8
    assert ds.y_train.dtype == np.int32 and ds.y_train.shape == (1000,)
    assert ds.y_test.dtype == np.int32 and ds.y_test.shape == (250,)
    assert ds.x_val is None and ds.y_val is None
    # The first labels of the real Fashion-MNIST: ankle boot, T-shirt, T-shirt, dress...
    assert ds.y_train[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    assert ds.y_test[:5].tolist() == [9, 2, 1, 1, 6]
    assert sorted(set(ds.y_train.tolist())) == list(range(10))
    assert ds.class_names == FASHION_CLASSES
    assert ds.input_shape == (28, 28, 1) and ds.num_classes == 10
    assert ds.source == str(SAMPLE)
    assert 60 < ds.x_train.mean() < 85  # real images, not zeros or noise
    assert ds.x_train.flags.writeable and ds.x_train.flags.c_contiguous
    assert "train=1000" in repr(ds)


def test_uncompressed_idx_files_are_accepted(tmp_path):
    for name in SAMPLE.iterdir():
        (tmp_path / name.stem).write_bytes(gzip.decompress(name.read_bytes()))
    raw = load_dataset("fashion_mnist", data_dir=tmp_path, download=False)
    gz = load_dataset("fashion_mnist", data_dir=SAMPLE, download=False)
    np.testing.assert_array_equal(raw.x_train, gz.x_train)
    np.testing.assert_array_equal(raw.y_test, gz.y_test)


def test_image_size_resizes_grayscale(tmp_path):
    ds = load_dataset("fashion_mnist", data_dir=SAMPLE, image_size=32, download=False)
    assert ds.x_train.shape == (1000, 32, 32, 1) and ds.x_test.shape == (250, 32, 32, 1)
    assert ds.x_train.dtype == np.uint8


def test_mnist_from_idx_and_from_keras_npz(tmp_path):
    idx_dir = copy_sample(tmp_path / "idx" / "mnist")
    ds = load_dataset("mnist", data_dir=idx_dir.parent, download=False)
    assert ds.class_names == [str(i) for i in range(10)] and len(ds.x_train) == 1000

    x, y = np.zeros((6, 28, 28), np.uint8), np.arange(6, dtype=np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=x, y_train=y, x_test=x[:2], y_test=y[:2])
    ds = load_dataset("mnist", data_dir=tmp_path, download=False)
    assert ds.x_train.shape == (6, 28, 28, 1) and ds.y_test.dtype == np.int32
    assert ds.source == str(tmp_path / "mnist.npz")


def test_unknown_name_lists_the_data_sets():
    with pytest.raises(ValueError) as err:
        load_dataset("imagenet")
    assert all(name in str(err.value) for name in DATASETS)


# --------------------------------------------------------------------------- corrupt IDX

def _truncate_gzip(d):
    data = (d / TRAIN_IMAGES).read_bytes()
    (d / TRAIN_IMAGES).write_bytes(data[: len(data) // 2])
    return TRAIN_IMAGES, "gzip"


def _bad_magic(d):
    labels = read_sample_idx(TRAIN_LABELS)
    (d / TRAIN_LABELS).write_bytes(gzip.compress(idx_bytes(labels, magic=2051)))
    return TRAIN_LABELS, "magic number 2051 (expected 2049"


def _bad_dtype(d):
    images = read_sample_idx(TRAIN_IMAGES)
    (d / TRAIN_IMAGES).write_bytes(gzip.compress(idx_bytes(images, magic=0x0D03)))
    return TRAIN_IMAGES, "dtype code 0x0D"


def _short_file(d):
    images = read_sample_idx(TRAIN_IMAGES)
    (d / TRAIN_IMAGES).write_bytes(gzip.compress(idx_bytes(images[:999], count=1000)))
    return TRAIN_IMAGES, "truncated"


def _long_file(d):
    images = read_sample_idx(TRAIN_IMAGES)
    (d / TRAIN_IMAGES).write_bytes(gzip.compress(idx_bytes(images, count=999)))
    return TRAIN_IMAGES, "trailing data"


def _count_mismatch(d):
    labels = read_sample_idx(TRAIN_LABELS)
    (d / TRAIN_LABELS).write_bytes(gzip.compress(idx_bytes(labels[:999])))
    return TRAIN_LABELS, "1000 images but"


def _label_out_of_range(d):
    labels = read_sample_idx(TRAIN_LABELS).copy()
    labels[7] = 10
    (d / TRAIN_LABELS).write_bytes(gzip.compress(idx_bytes(labels)))
    return TRAIN_LABELS, "outside the class range"


@pytest.mark.parametrize("damage", [_truncate_gzip, _bad_magic, _bad_dtype, _short_file,
                                    _long_file, _count_mismatch, _label_out_of_range])
def test_corrupt_idx_raises_naming_the_file(tmp_path, damage):
    data_dir = copy_sample(tmp_path / "fm")
    file_name, problem = damage(data_dir)
    with pytest.raises(CorruptDatasetError) as err:
        load_dataset("fashion_mnist", data_dir=data_dir, download=False)
    assert str(data_dir / file_name) in str(err.value)
    assert problem in str(err.value)
    assert isinstance(err.value, ValueError)


# --------------------------------------------------------------------------- locating

def test_not_found_lists_every_place_looked(tmp_path, monkeypatch):
    env_dir, keras_home, system = (tmp_path / n for n in ("env", "kh", "sys"))
    for d in (env_dir, keras_home):
        d.mkdir()
    monkeypatch.setenv("KERASNETS_DATA", str(env_dir))
    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    set_system_dirs(monkeypatch, "fashion_mnist", system)
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("fashion_mnist", download=False)
    message = str(err.value)
    assert isinstance(err.value, FileNotFoundError)
    for place in (env_dir, keras_home / "datasets", system):
        assert str(place) in message
    assert "fashion-mnist/" in message and "download=False" in message
    assert "sudo apt-get install dataset-fashion-mnist" in message
    assert "does not exist" in message  # the system dir was never created
    assert len(message.splitlines()) < 15  # readable: one line per place


def test_not_found_cifar_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar10", download=False)
    message = str(err.value)
    assert "cifar-10-python.tar.gz" in message and "--data-dir DIR" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar.html" in message
    assert "$KERASNETS_DATA: not set" in message


def test_failed_download_is_reported(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar100", download=True)
    assert "download: failed: ConnectionError: tests never download" in str(err.value)


def test_incomplete_copy_is_pointed_out(tmp_path):
    data_dir = copy_sample(tmp_path / "fm")
    (data_dir / TRAIN_LABELS).unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("fashion_mnist", data_dir=data_dir, download=False)
    assert "only 3 of the 4 files" in str(err.value) and "train-labels" in str(err.value)


def test_search_order(tmp_path, monkeypatch, isolated):
    arg = copy_sample(tmp_path / "arg" / "fashion_mnist")  # conventional sub-folder
    env = copy_sample(tmp_path / "env")
    cache = copy_sample(isolated / ".keras" / "datasets" / "fashion-mnist")
    system = copy_sample(tmp_path / "system")
    monkeypatch.setenv("KERASNETS_DATA", str(env))
    set_system_dirs(monkeypatch, "fashion_mnist", system)

    def source(**kw):
        return load_dataset("fashion_mnist", download=False, **kw).source

    assert source(data_dir=arg.parent) == str(arg)
    assert source() == str(env)
    monkeypatch.delenv("KERASNETS_DATA")
    assert source() == str(cache)
    shutil.rmtree(cache)
    assert source() == str(system)


def test_keras_home_is_respected(tmp_path, monkeypatch):
    cache = copy_sample(tmp_path / "kh" / "datasets" / "fashion-mnist")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert load_dataset("fashion_mnist", download=False).source == str(cache)


# --------------------------------------------------------------------------- CIFAR

def cifar_rows(x_nhwc):
    """The original CIFAR row layout: 1024 red, 1024 green, 1024 blue bytes."""
    return x_nhwc.transpose(0, 3, 1, 2).reshape(len(x_nhwc), -1)


def write_cifar(root: Path, variant: str, rng, as_tar: bool, n: int = 3, break_with=None):
    """Write tiny CIFAR pickles in the real format (bytes keys, protocol 2)."""
    if variant == "cifar10":
        dirname, test, meta = "cifar-10-batches-py", "test_batch", "batches.meta"
        train = [f"data_batch_{i}" for i in range(1, 6)]
        label_key, num = b"labels", 10
        names = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    else:
        dirname, train, test, meta = "cifar-100-python", ["train"], "test", "meta"
        label_key, num = b"fine_labels", 100
        names = {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                 b"coarse_label_names": [f"k{i}".encode() for i in range(20)]}
    files, expected = {meta: names}, {}
    for member in train + [test]:
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, num, n).tolist()
        batch = {b"batch_label": member.encode(), b"data": cifar_rows(x), label_key: y,
                 b"filenames": [b"img.png"] * n}
        if variant == "cifar100":
            batch[b"coarse_labels"] = [v // 5 for v in y]
        files[member] = batch
        expected[member] = (x, y)
    if break_with:
        break_with(files)
    blobs = {m: pickle.dumps(d, protocol=2) for m, d in files.items()}
    if as_tar:
        archive = root / f"{dirname.replace('-batches-py', '-python')}.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for member, blob in blobs.items():
                info = tarfile.TarInfo(f"{dirname}/{member}")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    else:
        (root / dirname).mkdir(parents=True)
        for member, blob in blobs.items():
            (root / dirname / member).write_bytes(blob)
    return expected, train, test, root / dirname


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
@pytest.mark.parametrize("as_tar", [False, True], ids=["folder", "tar.gz"])
def test_cifar_reads_the_original_format(tmp_path, variant, as_tar):
    expected, train, test, folder = write_cifar(tmp_path, variant, np.random.default_rng(1),
                                                as_tar)
    ds = load_dataset(variant, data_dir=tmp_path, download=False)
    x_train = np.concatenate([expected[m][0] for m in train])
    np.testing.assert_array_equal(ds.x_train, x_train)  # CHW rows -> NHWC, batches in order
    assert ds.y_train.tolist() == sum((expected[m][1] for m in train), [])
    np.testing.assert_array_equal(ds.x_test, expected[test][0])
    assert ds.y_train.dtype == np.int32 and ds.input_shape == (32, 32, 3)
    assert ds.num_classes == (10 if variant == "cifar10" else 100)
    assert ds.class_names[:2] == (["c0", "c1"] if variant == "cifar10" else ["f0", "f1"])
    assert ds.source.endswith(".tar.gz") if as_tar else ds.source == str(folder)


def _drop_labels(files):
    del files["data_batch_2"][b"labels"]


def _short_rows(files):
    files["test_batch"][b"data"] = files["test_batch"][b"data"][:, :3000]


def _label_too_big(files):
    files["data_batch_1"][b"labels"][0] = 10


@pytest.mark.parametrize("damage, member, problem", [
    (_drop_labels, "data_batch_2", "missing key 'labels'"),
    (_short_rows, "test_batch", "expected (N, 3072)"),
    (_label_too_big, "data_batch_1", "outside the class range"),
])
@pytest.mark.parametrize("as_tar", [False, True], ids=["folder", "tar.gz"])
def test_corrupt_cifar_raises_naming_the_file(tmp_path, damage, member, problem, as_tar):
    write_cifar(tmp_path, "cifar10", np.random.default_rng(2), as_tar, break_with=damage)
    with pytest.raises(CorruptDatasetError) as err:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert f"cifar-10-batches-py/{member}" in str(err.value) and problem in str(err.value)


def test_truncated_cifar_tar(tmp_path):
    write_cifar(tmp_path, "cifar10", np.random.default_rng(3), as_tar=True, n=50)
    archive = tmp_path / "cifar-10-python.tar.gz"
    archive.write_bytes(archive.read_bytes()[:20000])
    with pytest.raises(CorruptDatasetError) as err:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert str(archive) in str(err.value)


def test_cifar_pickle_cannot_run_code(tmp_path):
    write_cifar(tmp_path, "cifar10", np.random.default_rng(4), as_tar=False)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CorruptDatasetError, match="refusing to load global"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)


# --------------------------------------------------------------------------- image folders

COLOURS = {"cat": (220, 30, 30), "dog": (30, 30, 220), "eel": (30, 220, 30)}


def write_images(directory: Path, colour, count: int, size=(12, 10), fmt="PNG", mode="RGB"):
    """``count`` solid-colour images (size = width, height) named 0.png, 1.png, ..."""
    from PIL import Image
    directory.mkdir(parents=True, exist_ok=True)
    ext = {"PNG": "png", "JPEG": "jpg"}[fmt]
    for i in range(count):
        Image.new("RGB", size, colour).convert(mode).save(directory / f"{i}.{ext}", fmt)


def make_class_tree(root: Path, counts=None):
    counts = counts or {"cat": 10, "dog": 6}
    write_images(root / "cat", COLOURS["cat"], counts["cat"], fmt="PNG")
    write_images(root / "dog", COLOURS["dog"], counts["dog"], fmt="JPEG")
    # Clutter the reader must ignore.
    (root / "cat" / ".DS_Store").write_bytes(b"\0junk")
    (root / "dog" / "notes.txt").write_text("not an image")
    write_images(root / ".thumbnails", (0, 0, 0), 2)
    return root


def assert_labels_match_colours(x, y, class_names):
    for label, name in enumerate(class_names):
        mean = x[y == label].reshape(-1, 3).mean(axis=0)
        np.testing.assert_allclose(mean, COLOURS[name], atol=6)  # JPEG is lossy


def test_folder_without_split_folders(tmp_path):
    root = make_class_tree(tmp_path / "pets")
    ds = load_dataset("folder", data_dir=root, streamed=False)
    assert ds.class_names == ["cat", "dog"]
    assert ds.x_train.dtype == np.uint8 and ds.input_shape == (10, 12, 3)
    assert len(ds.x_train) + len(ds.x_test) == 16 and ds.x_val is None
    # Default held-out fraction 0.2, stratified: 2 of 10 cats and 1 of 6 dogs.
    assert np.bincount(ds.y_test).tolist() == [2, 1]
    assert_labels_match_colours(ds.x_train, ds.y_train, ds.class_names)
    assert_labels_match_colours(ds.x_test, ds.y_test, ds.class_names)
    assert ds.source == str(root)


def test_folder_split_is_seeded(tmp_path):
    root = tmp_path / "nums"
    for c, name in enumerate(["a", "b"]):  # every image unique: grey level = id
        from PIL import Image
        (root / name).mkdir(parents=True)
        for i in range(20):
            Image.new("L", (4, 4), 100 * c + i).save(root / name / f"{i}.png")

    def test_ids(seed, fraction=0.25):
        ds = load_dataset("folder", data_dir=root, streamed=False, seed=seed, val_fraction=fraction)
        assert np.bincount(ds.y_test).tolist() == [5, 5]  # stratified
        return sorted(ds.x_test[:, 0, 0, 0].tolist())

    assert test_ids(0) == test_ids(0)
    assert any(test_ids(s) != test_ids(0) for s in (1, 2, 3))


def test_folder_with_train_and_val_folders(tmp_path):
    root = tmp_path / "kaggle"
    make_class_tree(root / "train", {"cat": 8, "dog": 8})
    make_class_tree(root / "val", {"cat": 2, "dog": 3})
    ds = load_dataset("folder", data_dir=root, streamed=False)
    assert ds.class_names == ["cat", "dog"]
    assert len(ds.x_train) == 16 and np.bincount(ds.y_test).tolist() == [2, 3]
    assert ds.x_val is None  # val/ is the held-out split we evaluate on
    assert_labels_match_colours(ds.x_test, ds.y_test, ds.class_names)

    carved = load_dataset("folder", data_dir=root, val_fraction=0.25, streamed=False)
    assert np.bincount(carved.y_val).tolist() == [2, 2] and len(carved.x_train) == 12


def test_folder_with_train_val_test_folders(tmp_path):
    root = tmp_path / "three"
    make_class_tree(root / "train", {"cat": 4, "dog": 4})
    make_class_tree(root / "val", {"cat": 1, "dog": 1})
    make_class_tree(root / "test", {"cat": 2, "dog": 3})
    ds = load_dataset("folder", data_dir=root)
    assert (len(ds.x_train), len(ds.x_val), len(ds.x_test)) == (8, 2, 5)
    with pytest.raises(ValueError, match="val_fraction must be 0"):
        load_dataset("folder", data_dir=root, val_fraction=0.2)


def test_folder_mixed_sizes_need_image_size(tmp_path):
    root = tmp_path / "mixed"
    write_images(root / "cat", COLOURS["cat"], 3, size=(12, 10))
    write_images(root / "dog", COLOURS["dog"], 3, size=(20, 16), mode="L")
    write_images(root / "eel", COLOURS["eel"], 3, size=(8, 8), mode="RGBA")
    with pytest.raises(ValueError, match="image_size") as err:
        load_dataset("folder", data_dir=root)
    assert "different sizes" in str(err.value)
    ds = load_dataset("folder", data_dir=root, image_size=(9, 7))
    assert ds.input_shape == (9, 7, 3) and ds.x_test.shape[1:] == (9, 7, 3)


def test_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="data_dir"):
        load_dataset("folder")
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset("folder", data_dir=tmp_path / "nowhere")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    (tmp_path / "empty" / "cat" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetNotFoundError, match="no images found"):
        load_dataset("folder", data_dir=tmp_path / "empty")
    (tmp_path / "flat").mkdir()
    with pytest.raises(DatasetNotFoundError, match="no class sub-folders"):
        load_dataset("folder", data_dir=tmp_path / "flat")


@pytest.mark.parametrize("image_size", [None, (8, 8)], ids=["header", "decode"])
def test_folder_corrupt_image_names_the_file(tmp_path, image_size):
    root = make_class_tree(tmp_path / "pets")
    bad = root / "dog" / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    with pytest.raises(CorruptDatasetError) as err:
        load_dataset("folder", data_dir=root, image_size=image_size, strict_images=True)
    assert str(bad) in str(err.value)


def test_folder_truncated_image_names_the_file(tmp_path):
    # The header is intact, so only decoding the pixels can tell.
    root = make_class_tree(tmp_path / "pets")
    good = root / "cat" / "0.png"
    write_images(tmp_path / "big", COLOURS["cat"], 1, size=(64, 64))
    data = (tmp_path / "big" / "0.png").read_bytes()
    bad = root / "cat" / "truncated.png"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptDatasetError, match="cannot be decoded") as err:
        load_dataset("folder", data_dir=root, image_size=(10, 12), strict_images=True)
    assert str(bad) in str(err.value) and good.is_file()


# --------------------------------------------------------------------------- synthetic

def test_synthetic_shape_dtype_determinism():
    kw = dict(synthetic_shape=(16, 12, 3), synthetic_classes=4, synthetic_size=(200, 40))
    a, b = load_dataset("synthetic", seed=3, **kw), load_dataset("synthetic", seed=3, **kw)
    assert a.x_train.shape == (200, 16, 12, 3) and a.x_test.shape == (40, 16, 12, 3)
    assert a.x_train.dtype == np.uint8 and a.y_train.dtype == np.int32
    assert a.num_classes == 4 and a.source == "synthetic"
    assert np.bincount(a.y_train).tolist() == [50] * 4  # balanced
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    c = load_dataset("synthetic", seed=4, **kw)
    assert not np.array_equal(a.x_train, c.x_train)


def test_synthetic_labels_are_learnable():
    ds = load_dataset("synthetic", synthetic_size=(500, 200))
    # Nearest class mean, the simplest possible learner, must do far above chance.
    x_tr = ds.x_train.reshape(len(ds.x_train), -1).astype(np.float32)
    x_te = ds.x_test.reshape(len(ds.x_test), -1).astype(np.float32)
    means = np.stack([x_tr[ds.y_train == c].mean(0) for c in range(ds.num_classes)])
    pred = ((x_te[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    assert (pred == ds.y_test).mean() > 0.9


# --------------------------------------------------------------------------- val split

def test_val_fraction_is_stratified_disjoint_and_seeded():
    full = load_dataset("fashion_mnist", data_dir=SAMPLE, download=False)
    ds = load_dataset("fashion_mnist", data_dir=SAMPLE, val_fraction=0.1, seed=7,
                      download=False)
    keep, held = stratified_split(full.y_train, 0.1, seed=7)
    assert len(np.intersect1d(keep, held)) == 0
    assert len(keep) + len(held) == len(full.y_train)
    np.testing.assert_array_equal(ds.x_val, full.x_train[held])
    np.testing.assert_array_equal(ds.x_train, full.x_train[keep])
    per_class_share = np.bincount(ds.y_val, minlength=10) / np.bincount(full.y_train)
    np.testing.assert_allclose(per_class_share, 0.1, atol=0.01)  # ~100 per class
    np.testing.assert_array_equal(ds.x_test, full.x_test)  # the test set is untouched
    again = load_dataset("fashion_mnist", data_dir=SAMPLE, val_fraction=0.1, seed=7,
                         download=False)
    np.testing.assert_array_equal(again.y_val, ds.y_val)


def test_val_fraction_on_synthetic_and_bad_values():
    ds = load_dataset("synthetic", synthetic_size=(100, 10), val_fraction=0.2)
    assert np.bincount(ds.y_val).tolist() == [2] * 10 and len(ds.x_train) == 80
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="val_fraction"):
            load_dataset("synthetic", val_fraction=bad)


# --------------------------------------------------------------------------- hygiene & full data

def test_modules_import_no_deep_learning_framework():
    # Import the modules under stub 'kerasnets' and 'kerasnets.data' packages so the
    # packages' own __init__ (which import keras and the pipelines) do not count.
    root = Path(__file__).resolve().parents[1]
    code = textwrap.dedent(f"""
        import sys, types
        pkg = types.ModuleType("kerasnets"); pkg.__path__ = [{str(root / "kerasnets")!r}]
        sys.modules["kerasnets"] = pkg
        data = types.ModuleType("kerasnets.data")
        data.__path__ = [{str(root / "kerasnets" / "data")!r}]
        sys.modules["kerasnets.data"] = data
        import kerasnets.data.datasets, kerasnets.data.specs  # every reader module too
        bad = sorted(m for m in ("keras", "tensorflow", "torch", "jax", "PIL") if m in sys.modules)
        assert not bad, bad
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.skipif(not (DEBIAN_FASHION / TRAIN_IMAGES).is_file(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_full_debian_fashion_mnist():
    start = time.perf_counter()
    ds = load_dataset("fashion_mnist", data_dir=DEBIAN_FASHION, download=False)
    elapsed = time.perf_counter() - start
    assert ds.x_train.shape == (60000, 28, 28, 1) and ds.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    sample = load_dataset("fashion_mnist", data_dir=SAMPLE, download=False)
    np.testing.assert_array_equal(ds.x_train[:len(sample.x_train)], sample.x_train)  # the sample is its head
    np.testing.assert_array_equal(ds.y_test[:len(sample.y_test)], sample.y_test)
    assert elapsed < 10  # typically ~0.7 s; generous so a busy CI machine does not flake


def test_data_dir_may_name_the_archive_itself(tmp_path):
    write_cifar(tmp_path, "cifar10", np.random.default_rng(5), as_tar=True)
    archive = tmp_path / "cifar-10-python.tar.gz"
    assert load_dataset("cifar10", data_dir=archive, download=False).source == str(archive)


def test_successful_download_is_read(tmp_path, monkeypatch):
    fetched = copy_sample(tmp_path / "fetched")
    monkeypatch.setattr(locate, "download", lambda spec: fetched)
    ds = load_dataset("fashion_mnist", download=True)
    assert ds.source == str(fetched) and len(ds.x_train) == 1000


def test_split_folders_without_train_are_refused(tmp_path):
    make_class_tree(tmp_path / "odd" / "test")
    with pytest.raises(ValueError, match="no train/ folder"):
        load_dataset("folder", data_dir=tmp_path / "odd")


# --------------------------------------------------------------------------- specs

def test_native_size_comes_from_the_spec():
    assert native_size("fashion_mnist") == native_size("mnist") == 28
    assert native_size("cifar10") == native_size("cifar100") == native_size("synthetic") == 32
    assert native_size("cifar10", image_size=64) == 32  # a resize does not change it
    assert native_size("folder") == 224
    assert native_size("folder", image_size=96) == 96
    assert native_size("folder", image_size=(64, 80)) == 80
    with pytest.raises(ValueError, match="unknown data set"):
        native_size("imagenet")


def test_download_checks_a_sha256_for_every_file(monkeypatch, isolated):
    import keras

    fetched = []

    def fake_get_file(fname, origin, file_hash, cache_subdir):
        fetched.append((fname, origin, file_hash))
        return str(isolated / cache_subdir / fname)
    monkeypatch.setattr(keras.utils, "get_file", fake_get_file)
    for name in ("fashion_mnist", "mnist", "cifar10", "cifar100"):
        spec = DATASETS[name]
        fetched.clear()
        path = REAL_DOWNLOAD(spec)
        assert [f for f, _, _ in fetched] == [f.name for f in spec.files] != []
        for fname, origin, file_hash in fetched:
            assert origin.startswith("https://") and origin.endswith(fname)
            assert len(file_hash) == 64 and int(file_hash, 16) >= 0  # a sha256
        expected = path if len(spec.files) == 1 else path / spec.files[0].name
        assert str(expected) == str(isolated / spec.cache_subdir / spec.files[0].name)


def test_every_file_based_spec_says_how_to_get_it():
    for spec in DATASETS.values():
        assert spec.description and str(spec) == spec.description
        if spec.files:
            assert spec.how_to_get and spec.native_size
            assert callable(spec.format.read) and callable(spec.format.find_in)
