"""The two input pipelines that feed ``model.fit``: tf.data and ``keras.utils.PyDataset``.

Both take ``uint8`` images, in memory or streamed from an image folder
(:class:`~kerasnets.data.streamed.FolderImages`: decoded batch by batch, in
parallel map calls or workers; a file that fails to decode leaves its batch one
image shorter), share the preprocessing of
:mod:`kerasnets.data.preprocess`, and give identical batches when nothing
random is involved (``tests/test_pipelines.py``). Training order is a seeded
shuffle per epoch, and the augmentation of a batch a function of (seed, the
batch's index in the stream) alone: after ``--resume`` the stream continues at
the epoch and step where the run stopped, so a resumed run sees the batches an
uninterrupted one would, augmentation included.

A training pipeline yields ``steps`` batches per epoch, forever (``model.fit``
is given ``steps_per_epoch``): with the default steps the last batch of an
epoch may be short, with ``--steps-per-epoch`` every batch is full.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from kerasnets.backends import tf_graph
from kerasnets.data.preprocess import Preprocessor, load_batch_numpy
from kerasnets.data.streamed import FolderImages, gather_images

PIPELINES = ("tfdata", "pydataset")


def steps_per_epoch(num_examples, batch_size, steps=None) -> int:
    return int(steps) if steps else math.ceil(num_examples / batch_size)


def _outputs(images, labels, label_copies, weights=None):
    """The (x, y[, sample_weight]) a model with ``label_copies`` outputs trains on
    (GoogLeNet's aux heads)."""
    copies = (lambda t: tuple([t] * label_copies)) if label_copies > 1 else (lambda t: t)
    if weights is None:
        return images, copies(labels)
    return images, copies(labels), copies(weights)


def pad_and_shard(x, y, multiple, index=0, count=1):
    """An evaluation set padded to a multiple of ``multiple`` examples (the global batch)
    and this process' shard of it, every ``count``-th example from ``index``: returns
    ``(x, y, sample_weight)`` where the padding has weight 0, so that data-parallel
    evaluation gets only full batches and counts each real example once."""
    n = len(x)
    padded = -(-n // multiple) * multiple
    order = np.arange(padded)[index::count]
    weights = (order < n).astype("float32")
    order = np.where(order < n, order, 0)
    rows = x.subset(order) if isinstance(x, FolderImages) else x[order]  # nothing decoded
    return rows, y[order], weights


# --- tf.data ------------------------------------------------------------------------


def tf_dataset(x, y, *, num_classes, batch_size, preprocessor: Preprocessor, training,
               seed=0, steps=None, initial_epoch=0, initial_step=0, label_copies=1,
               data_format="channels_last", sample_weight=None):
    """A ``tf.data.Dataset`` of preprocessed ``(images, one-hot labels)`` batches.

    Training: ``steps`` batches per epoch (default: every image once), forever,
    starting after ``initial_epoch`` epochs and ``initial_step`` batches of the
    next (a resumed run).

    In-memory uint8 images are held once as a tensor; streamed ones
    (``FolderImages``) are decoded per batch by ``tf.numpy_function`` (PIL, which
    releases the GIL, so the parallel map calls decode in parallel). Each epoch
    shuffles indices with a seeded, per-epoch reshuffle, batches them, and a
    parallel map gathers and augments the batch; prefetch overlaps it with training.
    """
    import tensorflow as tf  # tf.data is TensorFlow's, on every Keras backend

    n = len(x)
    streamed = isinstance(x, FolderImages)
    images = None if streamed else tf.convert_to_tensor(x)
    labels = tf.convert_to_tensor(y)
    weights = None if sample_weight is None else tf.convert_to_tensor(sample_weight)
    if training:
        # Epoch k's order is a stateless function of (seed, k): the same whatever
        # tf.distribute or a resumed run does to the dataset graph (a seeded
        # Dataset.shuffle is not, once a strategy rewrites the graph).
        def permutation(epoch):
            keys = tf.random.stateless_uniform([n], seed=tf.stack([tf.cast(seed, tf.int64),
                                                                    epoch]))
            return tf.data.Dataset.from_tensor_slices(tf.argsort(keys, stable=True))

        epochs = tf.data.Dataset.counter()
        if steps:  # fixed-size batches streaming across epochs
            order = epochs.flat_map(permutation).batch(batch_size, drop_remainder=True)
        else:  # one permutation per epoch, the last batch may be short
            order = epochs.flat_map(lambda k: permutation(k).batch(batch_size))
        # (global batch index, indices): the index seeds the batch's augmentation.
        order = order.enumerate().skip(
            initial_epoch * steps_per_epoch(n, batch_size, steps) + initial_step)
    else:
        order = tf.data.Dataset.range(n).batch(batch_size).enumerate()

    prep = preprocessor.preprocessing
    pad = prep.crop_padding if training else 0
    to_rgb = x.shape[-1] == 1 and prep.channels == 3

    def gather(indices):  # (images, the indices kept): a bad file leaves its batch
        if not streamed:
            return tf.gather(images, indices), indices
        batch, kept = tf.numpy_function(x.load, [indices], [tf.uint8, tf.int64])
        batch.set_shape([None, *x.shape[1:]])
        return batch, tf.ensure_shape(kept, [None])

    def load(position, indices):  # the tf twin of preprocess.load_batch_numpy
        batch, indices = gather(indices)
        if pad:
            batch = tf.pad(batch, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
        if to_rgb:
            batch = tf.repeat(batch, 3, axis=-1)
        onehot = tf.one_hot(tf.gather(labels, indices), num_classes)
        batch_seed = tf.stack([tf.constant(seed, tf.int64), position])
        if weights is None:
            return tf.cast(batch, tf.float32), onehot, batch_seed
        return tf.cast(batch, tf.float32), onehot, batch_seed, tf.gather(weights, indices)

    def transform(batch, onehot, batch_seed, weight=None):
        batch, onehot = preprocessor(batch, onehot, training=training, batch_seed=batch_seed)
        if data_format == "channels_first":
            batch = tf.transpose(batch, (0, 3, 1, 2))
        return _outputs(batch, onehot, label_copies, weight)

    autotune = tf.data.AUTOTUNE
    return (order.map(load, num_parallel_calls=autotune)
            .map(transform, num_parallel_calls=autotune)
            .prefetch(autotune))


# --- PyDataset ----------------------------------------------------------------------


class ArrayDataset(keras.utils.PyDataset):
    """A ``keras.utils.PyDataset`` over in-memory images; see :func:`tf_dataset`.

    ``workers`` threads (or processes with ``use_multiprocessing``) prepare
    batches ahead of ``model.fit``.
    """

    def __init__(self, x, y, *, num_classes, batch_size, preprocessor: Preprocessor, training,
                 seed=0, steps=None, initial_epoch=0, initial_step=0, label_copies=1,
                 data_format="channels_last", workers=1, use_multiprocessing=False,
                 max_queue_size=10, sample_weight=None):
        super().__init__(workers=workers, use_multiprocessing=use_multiprocessing,
                         max_queue_size=max_queue_size)
        self.x, self.y, self.sample_weight = x, y, sample_weight
        self.num_classes, self.batch_size = num_classes, batch_size
        self.preprocessor, self.training = preprocessor, training
        self.seed, self.steps = seed, steps
        self.initial_epoch, self.initial_step = initial_epoch, initial_step
        self._begun = self._ended = 0  # epochs begun and ended (model.fit: one each)
        self.label_copies, self.data_format = label_copies, data_format
        # The same layers as tf.data runs, as a TF graph when TF is installed (faster).
        self._apply = tf_graph.numpy_function(
            lambda images, labels, batch_seed: preprocessor(images, labels,
                                                            training=training,
                                                            batch_seed=batch_seed))

    def __len__(self):
        if not self.training:
            return math.ceil(len(self.x) / self.batch_size)
        return self._steps - self._start

    @property
    def _steps(self):  # batches in a whole training epoch
        return steps_per_epoch(len(self.x), self.batch_size, self.steps)

    @property
    def _start(self):  # batches of this epoch done before a resumed run started
        return self.initial_step if self.epoch == self.initial_epoch else 0

    def _permutation(self, k):
        return np.random.default_rng([self.seed, k]).permutation(len(self.x))

    def batch_indices(self, index):
        n, size = len(self.x), self.batch_size
        if not self.training:
            return np.arange(index * size, min((index + 1) * size, n))
        if not self.steps:  # one permutation per epoch, last batch may be short
            return self._permutation(self.epoch)[index * size:(index + 1) * size]
        start = (self.epoch * self.steps + index) * size  # a stream of permutations
        positions = np.arange(start, start + size)
        return np.concatenate([self._permutation(k)[positions[positions // n == k] % n]
                               for k in np.unique(positions // n)])

    def __getitem__(self, index):
        if index >= len(self):
            raise IndexError(index)
        position = index + self._start if self.training else index
        images, indices = gather_images(self.x, self.batch_indices(position))
        images, labels = load_batch_numpy(images, self.y[indices], slice(None),
                                          preprocessing=self.preprocessor.preprocessing,
                                          num_classes=self.num_classes, training=self.training)
        batch_seed = np.array([self.seed, self.epoch * self._steps + position], np.int64)
        images, labels = self._apply(images, labels, batch_seed)
        if self.data_format == "channels_first":
            images = np.ascontiguousarray(np.transpose(images, (0, 3, 1, 2)))
        weights = None if self.sample_weight is None else self.sample_weight[indices]
        return _outputs(images, labels, self.label_copies, weights)

    @property
    def epoch(self) -> int:
        """The epoch being served: ``initial_epoch`` plus the epochs ended so far.

        ``model.fit`` calls ``on_epoch_begin``, serves the batches, then
        ``on_epoch_end`` (iterating by hand, do the same). Keras' PyDataset adapter
        starts its prefetching workers *before* calling ``on_epoch_begin`` and stops them
        before ``on_epoch_end``, so the count moves at an epoch's end; and only for an
        epoch that began: Keras' TensorFlow trainer also calls ``on_epoch_end`` once
        before the first epoch (after peeking at batches)."""
        return self.initial_epoch + self._ended

    def on_epoch_begin(self):
        self._begun += 1

    def on_epoch_end(self):
        if self._begun > self._ended:
            self._ended += 1


def make_pipeline(kind, x, y, **kwargs):
    """``"tfdata"`` or ``"pydataset"``; PyDataset-only arguments are ignored by tf.data."""
    if kind == "tfdata":
        for key in ("workers", "use_multiprocessing", "max_queue_size"):
            kwargs.pop(key, None)
        return tf_dataset(x, y, **kwargs)
    if kind == "pydataset":
        return ArrayDataset(x, y, **kwargs)
    raise ValueError(f"pipeline must be one of {PIPELINES}, not {kind!r}.")
