"""The two input pipelines and the preprocessing they share."""

import numpy as np
import pytest

from kerasnets.data import (ArrayDataset, Preprocessing, Preprocessor, load_dataset,
                            make_pipeline, tf_dataset)
from tests.conftest import SAMPLE_DIR


@pytest.fixture(scope="module")
def sample():
    return load_dataset("fashion_mnist", data_dir=SAMPLE_DIR, download=False)


def _pipelines(sample, preprocessing, training, **kwargs):
    pre = Preprocessor(preprocessing, (28, 28), seed=1)
    common = dict(num_classes=10, batch_size=96, preprocessor=pre, training=training, seed=5,
                  **kwargs)
    return (tf_dataset(sample.x_train, sample.y_train, **common),
            ArrayDataset(sample.x_train, sample.y_train, **common))


@pytest.mark.parametrize("channels,normalize", [(1, "unit"), (3, "standardize")])
def test_both_pipelines_give_the_same_batches_without_augmentation(sample, channels,
                                                                   normalize):
    prep = Preprocessing(channels=channels, normalize=normalize, mean=(0.28,) * channels,
                         std=(0.35,) * channels)
    tfdata, pydataset = _pipelines(sample, prep, training=False)
    batches = list(tfdata)
    assert len(batches) == len(pydataset) == 11  # 1000 images, the last batch short
    for i, (x, y) in enumerate(batches):
        xb, yb = pydataset[i]
        assert x.shape == xb.shape and x.shape[-1] == channels
        np.testing.assert_allclose(np.asarray(x), xb, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(np.asarray(y), yb)
    x0 = np.asarray(batches[0][0])
    expected = sample.x_train[:96].astype(np.float32) / 255.0
    if normalize == "standardize":
        expected = (expected - 0.28) / 0.35
    np.testing.assert_allclose(x0, np.broadcast_to(expected, x0.shape), atol=1e-5)


def test_training_order_is_a_seeded_shuffle_per_epoch(sample):
    prep = Preprocessing(channels=1)
    for kind in ("tfdata", "pydataset"):
        tfdata, pydataset = _pipelines(sample, prep, training=True)
        data = tfdata if kind == "tfdata" else pydataset
        epochs = []
        iterator = iter(data) if kind == "tfdata" else None
        for epoch in range(2):
            if not iterator:
                pydataset.on_epoch_begin()  # as model.fit does around each epoch
            labels = [np.asarray(next(iterator)[1]) if iterator else pydataset[i][1]
                      for i in range(11)]
            if not iterator:
                pydataset.on_epoch_end()
            epochs.append(np.concatenate(labels).argmax(-1))
        for labels in epochs:  # every image once per epoch
            np.testing.assert_array_equal(np.bincount(labels, minlength=10),
                                          np.bincount(sample.y_train, minlength=10))
        assert not np.array_equal(epochs[0], epochs[1])
        assert not np.array_equal(epochs[0], sample.y_train)


@pytest.mark.parametrize("steps", [None, 4])
def test_a_resumed_pipeline_continues_the_same_stream(sample, steps):
    prep = Preprocessing(channels=1)
    for kind in ("tfdata", "pydataset"):
        pre = Preprocessor(prep, (28, 28))
        common = dict(num_classes=10, batch_size=96, preprocessor=pre, training=True, seed=3,
                      steps=steps)
        per_epoch = steps or 11

        def take(data, n):
            if kind == "tfdata":
                iterator = iter(data)
                return [np.asarray(next(iterator)[1]) for _ in range(n)]
            out = []
            while len(out) < n:
                data.on_epoch_begin()
                out += [data[i][1] for i in range(len(data))]
                data.on_epoch_end()
            return out[:n]

        full = take(make_pipeline(kind, sample.x_train, sample.y_train, **common),
                    3 * per_epoch)
        resumed = take(make_pipeline(kind, sample.x_train, sample.y_train, initial_epoch=2,
                                     **common), per_epoch)
        for a, b in zip(full[2 * per_epoch:], resumed):
            np.testing.assert_array_equal(a, b)


def test_augmentation_changes_training_batches_only(sample):
    prep = Preprocessing(channels=3, crop_padding=3, flip=True, random_erasing=0.5, mixup=0.4)
    tfdata, pydataset = _pipelines(sample, prep, training=True)
    x, y = next(iter(tfdata))
    xb, yb = pydataset[0]
    for images, labels in ((np.asarray(x), np.asarray(y)), (xb, yb)):
        assert images.shape == (96, 28, 28, 3)
        assert np.isfinite(images).all()
        np.testing.assert_allclose(labels.sum(-1), 1.0, atol=1e-5)
        assert (labels.max(-1) < 1).any()  # MixUp made soft labels
    _, plain = _pipelines(sample, prep, training=False)
    xe, ye = plain[0]
    np.testing.assert_allclose(xe, np.repeat(sample.x_train[:96], 3, -1) / 255.0, atol=1e-6)
    assert set(np.unique(ye)) == {0.0, 1.0}


def test_randaugment_and_cutmix_run_in_both_pipelines(sample):
    prep = Preprocessing(channels=3, randaugment=True, cutmix=1.0)
    tfdata, pydataset = _pipelines(sample, prep, training=True)
    for images, _ in (next(iter(tfdata)), pydataset[0]):
        assert np.asarray(images).shape == (96, 28, 28, 3)


def test_channels_first_and_auxiliary_outputs(sample):
    prep = Preprocessing(channels=1)
    tfdata, pydataset = _pipelines(sample, prep, training=False, data_format="channels_first",
                                   label_copies=3)
    x, y = next(iter(tfdata))
    xb, yb = pydataset[0]
    assert np.asarray(x).shape == xb.shape == (96, 1, 28, 28)
    assert len(y) == len(yb) == 3
    np.testing.assert_allclose(np.asarray(x), xb, atol=1e-6)


def test_bad_preprocessing_is_refused():
    with pytest.raises(ValueError, match="either MixUp or CutMix"):
        Preprocessing(channels=3, mixup=0.2, cutmix=1.0)
    with pytest.raises(ValueError, match="RandAugment.*--to-rgb"):
        Preprocessing(channels=1, randaugment=True)
    with pytest.raises(ValueError, match="normalize must be"):
        Preprocessing(channels=1, normalize="zscore")
    with pytest.raises(ValueError, match="pipeline must be one of"):
        make_pipeline("torchdata", np.zeros((2, 8, 8, 1), np.uint8), np.zeros(2, np.int32))


@pytest.mark.parametrize("kind", ["tfdata", "pydataset"])
def test_augmentation_is_a_function_of_the_seed_and_the_batch_index(sample, kind):
    """Same seed, same batches (tf.data's parallel map included); a pipeline resumed at
    (epoch 1, step 2) continues with the very batch an uninterrupted one gives there."""
    prep = Preprocessing(channels=1, crop_padding=4, flip=True, random_erasing=0.5,
                         mixup=0.2)

    def batches(count, **kwargs):
        pre = Preprocessor(prep, (28, 28), seed=1)
        data = make_pipeline(kind, sample.x_train, sample.y_train, num_classes=10,
                             batch_size=96, preprocessor=pre, training=True, seed=5,
                             workers=2, **kwargs)
        if kind == "tfdata":
            return [tuple(np.asarray(t) for t in b) for b in data.take(count)]
        out = []
        while len(out) < count:
            data.on_epoch_begin()
            out += [data[i] for i in range(len(data))]
            data.on_epoch_end()
        return out[:count]

    first, second = batches(14), batches(14)
    for (xa, ya), (xb, yb) in zip(first, second):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    resumed = batches(1, initial_epoch=1, initial_step=2)[0]
    np.testing.assert_array_equal(resumed[0], first[11 + 2][0])
    np.testing.assert_array_equal(resumed[1], first[11 + 2][1])
    assert not np.array_equal(first[0][0], first[11][0])  # each batch its own draw
    assert len({np.asarray(x).tobytes() for x, _ in first}) == 14
