"""Image folders streamed from disk: equal to the in-memory reader, bad files skipped and
named (or an error with --strict-images), colour modes, the CSV layout, the cache and
mid-epoch resume."""

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from kerasnets.data import (CorruptDatasetError, DatasetNotFoundError, Preprocessing,
                            Preprocessor, channel_statistics, load_dataset, make_pipeline)
from kerasnets.data.export import write_image_folder
from kerasnets.data.streamed import FolderImages
from kerasnets.training.cli import main

KINDS = ["tfdata", "pydataset"]


def noise_folder(root: Path, per_class=12, classes=("cat", "dog", "eel"), seed=0) -> Path:
    """JPEGs and PNGs of random sizes (9-20 px) and random pixels, one folder per class."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (per_class * len(classes), 12, 12, 3), dtype=np.uint8)
    y = np.repeat(np.arange(len(classes)), per_class)
    write_image_folder(x[::2], y[::2], root, class_names=classes, size_range=(9, 20),
                       seed=seed, csv_name=None)
    write_image_folder(x[1::2], y[1::2], root / "png", class_names=classes, fmt="png",
                       size_range=(9, 20), seed=seed + 1, csv_name=None)
    for png in sorted((root / "png").rglob("*.png")):  # beside the JPEGs, other names
        png.rename(root / png.parent.name / f"p{png.name}")
    for folder in sorted((root / "png").iterdir()):
        folder.rmdir()
    (root / "png").rmdir()
    return root


def batches(kind, x, y, *, training, count=None, **kwargs):
    pre = Preprocessor(Preprocessing(channels=3), tuple(x.shape[1:3]))
    data = make_pipeline(kind, x, y, num_classes=3, batch_size=5, preprocessor=pre,
                         training=training, seed=3, **kwargs)
    if kind == "tfdata":
        iterator = iter(data)
        return [tuple(np.asarray(t) for t in next(iterator)) for _ in range(count or 100)] \
            if training else [tuple(np.asarray(t) for t in b) for b in data]
    out = []
    while len(out) < (count or len(data)):
        data.on_epoch_begin()
        out += [data[i] for i in range(len(data))]
        data.on_epoch_end()
    return out[:count] if count else out


def assert_same(a, b):
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


@pytest.mark.parametrize("kind", KINDS)
def test_streamed_batches_equal_in_memory_batches(tmp_path, kind):
    root = noise_folder(tmp_path / "noise")
    streamed = load_dataset("folder", data_dir=root, image_size=(10, 8), val_fraction=0.25)
    memory = load_dataset("folder", data_dir=root, image_size=(10, 8), val_fraction=0.25,
                          streamed=False)
    assert isinstance(streamed.x_train, FolderImages) and isinstance(memory.x_train,
                                                                     np.ndarray)
    assert streamed.x_train.shape == memory.x_train.shape == (27, 10, 8, 3)
    np.testing.assert_array_equal(streamed.y_test, memory.y_test)
    np.testing.assert_array_equal(streamed.x_test[np.arange(len(memory.x_test))],
                                  memory.x_test)
    # --normalize standardize: a seeded sample of 1,000, here all of them
    np.testing.assert_allclose(channel_statistics(streamed.x_train, 3),
                               channel_statistics(memory.x_train, 3), rtol=1e-12)
    for training in (False, True):  # training: shuffled, 2 epochs, no augmentation
        count = 12 if training else None
        a = batches(kind, streamed.x_train, streamed.y_train, training=training, count=count)
        b = batches(kind, memory.x_train, memory.y_train, training=training, count=count)
        assert_same(a, b)
        assert a[0][0].shape == (5, 10, 8, 3) and a[0][0].max() <= 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_resume_mid_epoch_on_a_streamed_folder_gives_the_same_batches(tmp_path, kind):
    root = noise_folder(tmp_path / "noise", per_class=6)
    data = load_dataset("folder", data_dir=root, image_size=8, val_fraction=0.2)
    per_epoch = -(-len(data.x_train) // 5)
    full = batches(kind, data.x_train, data.y_train, training=True, count=2 * per_epoch)
    resumed = batches(kind, data.x_train, data.y_train, training=True, initial_epoch=1,
                      initial_step=2, count=per_epoch - 2)
    assert_same(full[per_epoch + 2:], resumed)


@pytest.mark.parametrize("cache", ["memory", "dir"])
def test_cached_images_are_the_decoded_ones(tmp_path, cache):
    root = noise_folder(tmp_path / "noise", per_class=4)
    where = "memory" if cache == "memory" else str(tmp_path / "cache")
    if cache == "dir":
        (tmp_path / "cache").mkdir()
    plain = load_dataset("folder", data_dir=root, image_size=8)
    cached = load_dataset("folder", data_dir=root, image_size=8, image_cache=where)
    first = batches("pydataset", cached.x_train, cached.y_train, training=True, count=6)
    for path in root.rglob("*.*"):  # later epochs must not need the files
        path.write_bytes(b"")
    again = batches("pydataset", cached.x_train, cached.y_train, training=True, count=6)
    assert_same(first, again)
    assert cached.skipped_images == {}
    if cache == "dir":
        assert list((tmp_path / "cache").iterdir()) == []  # the mapped file is unlinked
    with pytest.raises(ValueError, match="neither 'memory' nor an existing directory"):
        FolderImages(plain.x_train.paths, (8, 8), cache=str(tmp_path / "nowhere"))


def test_colour_modes_are_converted_consistently(tmp_path):
    from PIL import Image
    root = tmp_path / "modes"
    (root / "a").mkdir(parents=True)
    (root / "b").mkdir()
    red = Image.new("RGB", (6, 4), (200, 30, 30))
    red.save(root / "a" / "rgb.png")
    red.convert("CMYK").save(root / "a" / "cmyk.jpg", quality=100)
    red.convert("P").save(root / "a" / "palette.png")
    Image.new("RGBA", (6, 4), (200, 30, 30, 0)).save(root / "a" / "rgba.png")
    Image.new("L", (6, 4), 90).save(root / "b" / "grey.png")
    sixteen = np.full((4, 6), 90 * 256 + 200, np.uint16)  # 16-bit: scaled, not clipped
    Image.fromarray(sixteen).save(root / "b" / "sixteen.png")
    Image.new("LA", (6, 4), (90, 255)).save(root / "b" / "grey-alpha.png")
    palette = Image.new("P", (6, 4), 0)
    palette.putpalette([90, 90, 90] * 256)
    palette.info["transparency"] = 0
    palette.save(root / "b" / "palette-transparent.png")
    data = load_dataset("folder", data_dir=root, val_fraction=0.5, strict_images=True)
    assert data.input_shape == (4, 6, 3) and data.skipped_images == {}
    x = np.concatenate([data.x_train[np.arange(len(data.x_train))],
                        data.x_test[np.arange(len(data.x_test))]])
    y = np.concatenate([data.y_train, data.y_test])
    assert len(x) == 8
    np.testing.assert_allclose(x[y == 0].reshape(-1, 3).mean(0), (200, 30, 30), atol=3)
    np.testing.assert_array_equal(np.unique(x[y == 1]), [90])


def truncated(path: Path, fmt="JPEG") -> Path:
    from PIL import Image
    noise = np.random.default_rng(0).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path, fmt)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def huge_png(path: Path, side=14000) -> Path:
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(
            ">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return path


BAD_FILES = {
    "zero-byte": (lambda p: (p.write_bytes(b""), p)[1], "empty file (0 bytes)"),
    "text": (lambda p: (p.write_text("not an image"), p)[1], "cannot be read as an image"),
    "truncated-jpeg": (truncated, "cannot be decoded"),
    "truncated-png": (lambda p: truncated(p.with_suffix(".png"), "PNG"), "cannot be decoded"),
    "bomb": (lambda p: huge_png(p.with_suffix(".png")), "MAX_IMAGE_PIXELS"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_files_are_skipped_and_named_or_an_error_when_strict(tmp_path, case):
    root = noise_folder(tmp_path / "noise", per_class=4)
    make, why = BAD_FILES[case]
    bad = make(root / "dog" / "bad.jpg")
    data = load_dataset("folder", data_dir=root, image_size=8)
    assert list(data.skipped_images) == [str(bad)] and why in data.skipped_images[str(bad)]
    assert len(data.x_train) + len(data.x_test) == 12  # the good ones, all there
    assert str(bad) not in data.x_train.paths + data.x_test.paths
    memory = load_dataset("folder", data_dir=root, image_size=8, streamed=False)
    assert memory.skipped_images == data.skipped_images
    with pytest.raises(CorruptDatasetError) as err:
        load_dataset("folder", data_dir=root, image_size=8, strict_images=True)
    assert str(bad) in str(err.value) and why in str(err.value)
    assert str(err.value).startswith("1 image file is unusable")


@pytest.mark.parametrize("kind", KINDS)
def test_a_file_gone_bad_while_streaming_is_skipped_and_named(tmp_path, kind, capsys):
    root = noise_folder(tmp_path / "noise", per_class=4)
    data = load_dataset("folder", data_dir=root, image_size=8, val_fraction=0.25)
    strict = load_dataset("folder", data_dir=root, image_size=8, val_fraction=0.25,
                          strict_images=True)
    assert data.skipped_images == {}
    victim = Path(data.x_test.paths[0])
    victim.write_bytes(victim.read_bytes()[:40])  # after the up-front check
    out = batches(kind, data.x_test, data.y_test, training=False)
    assert sum(len(x) for x, _ in out) == len(data.x_test) - 1  # its batch is shorter
    assert list(data.skipped_images) == [str(victim)]
    assert f"kerasnets: skipping {victim}" in capsys.readouterr().out
    with pytest.raises(Exception, match=f"{victim}.*--strict-images"):
        batches(kind, strict.x_test, strict.y_test, training=False)


def test_empty_class_and_one_class_are_errors(tmp_path):
    root = noise_folder(tmp_path / "one", per_class=3, classes=("cat",))
    with pytest.raises(CorruptDatasetError, match=r"only one class sub-folder \(cat/\)"):
        load_dataset("folder", data_dir=root)
    root = noise_folder(tmp_path / "empty", per_class=3, classes=("cat", "dog"))
    (root / "eel").mkdir()
    with pytest.raises(CorruptDatasetError, match="eel has no images"):
        load_dataset("folder", data_dir=root)
    for path in (root / "dog").iterdir():  # a class whose every file is bad
        path.write_bytes(b"")
    (root / "eel").rmdir()
    with pytest.raises(CorruptDatasetError, match="class dog has no usable training image"):
        load_dataset("folder", data_dir=root, image_size=8)


def write_csv(path: Path, rows, header="path,label"):
    path.write_text("\n".join([header, *rows]) + "\n" if header else "\n".join(rows) + "\n")
    return path


def test_csv_layout_equals_the_folder_layout(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (20, 6, 6, 3), dtype=np.uint8)
    y = np.repeat([0, 1], 10)
    root = write_image_folder(x, y, tmp_path / "pets", class_names=["cat", "dog"], fmt="png")
    by_folder = load_dataset("folder", data_dir=root, streamed=False)
    by_csv = load_dataset("folder", data_dir=root / "labels.csv", streamed=False)
    assert by_csv.class_names == by_folder.class_names == ["cat", "dog"]
    assert by_csv.source == str(root / "labels.csv")
    np.testing.assert_array_equal(by_csv.x_train, by_folder.x_train)  # rows in folder order
    np.testing.assert_array_equal(by_csv.y_test, by_folder.y_test)
    # train.csv takes val.csv and test.csv beside it; absolute paths work as well
    rows = [line for line in (root / "labels.csv").read_text().splitlines()[1:]]
    write_csv(root / "train.csv", rows[2:8] + rows[12:18])
    write_csv(root / "val.csv", [rows[0], rows[10]])
    write_csv(root / "test.csv", [f"{root / rows[1].split(',')[0]},cat", rows[11], rows[19]])
    split = load_dataset("folder", data_dir=root / "train.csv")
    assert (len(split.x_train), len(split.x_val), len(split.x_test)) == (12, 2, 3)
    assert split.y_test.tolist() == [0, 1, 1]
    np.testing.assert_array_equal(split.x_test[np.arange(3)][0], x[1])


def test_csv_errors_name_the_line(tmp_path):
    root = write_image_folder(np.zeros((4, 5, 5, 3), np.uint8), np.array([0, 0, 1, 1]),
                              tmp_path / "d", class_names=["a", "b"], fmt="png")
    rows = (root / "labels.csv").read_text().splitlines()[1:]
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_dataset("folder", data_dir=root / "nope.csv")
    with pytest.raises(CorruptDatasetError, match="line 1: the header row must name"):
        load_dataset("folder", data_dir=write_csv(root / "x.csv", rows, header=None))
    bad = write_csv(root / "bad.csv", [*rows, "a/000000.png,", "b/missing.png,b", "only-one",
                                       ",a"])
    with pytest.raises(CorruptDatasetError) as err:
        load_dataset("folder", data_dir=bad)
    message = str(err.value)
    assert "line 6: empty label" in message and "line 8: 1 field(s), expected 2" in message
    assert "line 9: empty path" in message
    assert f"1 listed file(s) do not exist (line 7: {root / 'b/missing.png'})" in message
    assert len(message.splitlines()) == 1
    with pytest.raises(CorruptDatasetError, match=r"only one class \('a'\)"):
        load_dataset("folder", data_dir=write_csv(root / "one.csv", rows[:2]))
    write_csv(root / "train.csv", rows)
    write_csv(root / "test.csv", ["a/000000.png,zebra"])
    with pytest.raises(CorruptDatasetError, match="test.csv: line 2: label 'zebra' is not a "
                                                  "training class"):
        load_dataset("folder", data_dir=root / "train.csv")


def test_export_sizes_are_seeded_and_in_range(tmp_path):
    from PIL import Image
    x = np.zeros((6, 4, 4, 1), np.uint8)
    y = np.array([0, 1, 2, 0, 1, 2])
    sizes = []
    for run in ("a", "b"):
        root = write_image_folder(x, y, tmp_path / run, class_names=["T-shirt/top", "b", "c"],
                                  size_range=(20, 30), seed=4)
        files = sorted(p.relative_to(root) for p in root.rglob("*.jpg"))
        sizes.append([Image.open(root / f).size for f in files])
    assert sizes[0] == sizes[1] and len(set(sizes[0])) > 1
    assert all(20 <= d <= 30 for size in sizes[0] for d in size)
    assert (tmp_path / "a" / "T-shirt_top").is_dir()


def test_training_run_names_the_skipped_files(tmp_path, capsys):
    root = noise_folder(tmp_path / "noise", per_class=3, classes="abcdef")  # top-5: >= 5
    bad = root / "a" / "empty.jpg"
    bad.write_bytes(b"")
    common = ["lenet5", "--dataset", "folder", "--data-dir", str(root), "--image-size", "16",
              "--recipe", "none", "--epochs", "1", "--batch-size", "8", "--verbose", "0",
              "--output-dir", str(tmp_path / "runs")]
    assert main(common) == 0
    out = capsys.readouterr().out
    assert f"skipped 1 unusable image file (all listed in config.json; --strict-images " \
           f"makes them an error): {bad}" in out
    run = next((tmp_path / "runs").iterdir())
    for name in ("config.json", "metrics.json"):
        recorded = json.loads((run / name).read_text())["skipped_images"]
        assert recorded == {str(bad): "empty file (0 bytes): not an image"}
    assert main([*common, "--strict-images", "--run-name", "strict"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kerasnets: error: 1 image file is unusable") and str(bad) in err
    assert not (tmp_path / "runs" / "strict").exists()


def test_grayscale_is_resized_before_it_becomes_rgb_with_the_same_pixels(tmp_path):
    from PIL import Image

    from kerasnets.data.images import decode_image
    noise = np.random.default_rng(2).integers(0, 256, (13, 11), dtype=np.uint8)
    Image.fromarray(noise).save(tmp_path / "grey.png")
    expected = Image.open(tmp_path / "grey.png").convert("RGB").resize((5, 7), Image.BILINEAR)
    np.testing.assert_array_equal(decode_image(tmp_path / "grey.png", (7, 5)),
                                  np.asarray(expected))
