"""What happens to a batch between the stored ``uint8`` images and the model.

Two stages, shared by both input pipelines so they have the same semantics:

1. *Loading* (:func:`load_batch_numpy`, and its tf.data twin in
   :mod:`kerasnets.data.pipelines`): gather the batch, zero-pad training batches
   for random cropping, repeat a grayscale channel to RGB when the model wants three, cast
   to float32 in [0, 255] and one-hot the labels. Resizing is done once, when
   the data set is loaded (``load_dataset(image_size=...)``), as torchvision's
   ``Resize`` would, so no pipeline spends time on it.
2. *Keras layers* (:class:`Preprocessor`): Keras 3's own preprocessing layers,
   ``RandomCrop``, ``RandomFlip``, ``RandAugment``, ``RandomErasing``, then the
   normalisation (``Rescaling``), then ``MixUp``/``CutMix`` on the batch. Inside
   tf.data Keras runs them as TensorFlow graphs on any backend; the PyDataset
   pipeline calls the very same layers.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import asdict, dataclass, field

import keras
import numpy as np

from kerasnets.backends import keras_patches

NORMALIZATIONS = ("unit", "standardize", "imagenet")


@dataclass(frozen=True)
class Preprocessing:
    """Preprocessing and augmentation settings (everything a run must record to
    feed its model again).

    Attributes:
        channels: channels the model takes; grayscale data are repeated to 3.
        normalize: ``"unit"`` (x / 255, as d2l's ``ToTensor``) or ``"standardize"``
            ((x / 255 - mean) / std with the training split's statistics) or
            ``"imagenet"`` (the same with ImageNet's, for ImageNet weights).
        mean, std: per-channel statistics in [0, 1] units (not for ``unit``).
        crop_padding: zero-pad by this many pixels, then crop back at random (0: off).
        flip: random horizontal flips.
        randaugment: RandAugment with ``randaugment_ops`` ops of ``randaugment_magnitude``.
        random_erasing: probability of erasing a random rectangle (0: off).
        mixup, cutmix: alpha of MixUp / CutMix on each training batch (0: off).
    """

    channels: int
    normalize: str = "unit"
    mean: tuple = (0.0,)
    std: tuple = (1.0,)
    crop_padding: int = 0
    flip: bool = False
    randaugment: bool = False
    randaugment_ops: int = 2
    randaugment_magnitude: float = 0.5
    random_erasing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0

    def __post_init__(self):
        if self.normalize not in NORMALIZATIONS:
            raise ValueError(f"normalize must be one of {NORMALIZATIONS}, "
                             f"not {self.normalize!r}.")
        if self.channels not in (1, 3):
            raise ValueError(f"models here take 1 or 3 channels, not {self.channels}.")
        if self.mixup and self.cutmix:
            raise ValueError("Use either MixUp or CutMix, not both.")
        if self.randaugment and self.channels != 3:
            raise ValueError("RandAugment's colour operations need RGB images: add --to-rgb.")
        for name in ("crop_padding", "random_erasing", "mixup", "cutmix"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}.")
        if self.random_erasing > 1:
            raise ValueError("random_erasing is a probability in [0, 1].")

    @property
    def augments(self) -> bool:
        return bool(self.crop_padding or self.flip or self.randaugment or self.random_erasing
                    or self.mixup or self.cutmix)

    def without_augmentation(self) -> "Preprocessing":
        return Preprocessing(channels=self.channels, normalize=self.normalize,
                             mean=self.mean, std=self.std)

    def to_dict(self) -> dict:
        return asdict(self)


def channel_statistics(x_uint8: np.ndarray, channels: int) -> tuple[tuple, tuple]:
    """Per-channel mean and std of ``uint8`` NHWC images, in [0, 1] units (of a seeded
    sample of a streamed folder's images, which are not all in memory)."""
    if hasattr(x_uint8, "sample"):  # kerasnets.data.streamed.FolderImages
        x_uint8 = x_uint8.sample()
    x = x_uint8.reshape(-1, x_uint8.shape[-1]).astype(np.float64) / 255.0
    mean, std = x.mean(axis=0), x.std(axis=0)
    if x_uint8.shape[-1] == 1 and channels == 3:
        mean, std = np.repeat(mean, 3), np.repeat(std, 3)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def load_batch_numpy(x_uint8, y, indices, *, preprocessing, num_classes, training):
    """Stage 1 in numpy: the batch as float32 [0, 255] NHWC and one-hot labels."""
    images = x_uint8[indices]
    pad = preprocessing.crop_padding if training else 0
    if pad:
        images = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    if images.shape[-1] == 1 and preprocessing.channels == 3:
        images = np.repeat(images, 3, axis=-1)
    labels = np.eye(num_classes, dtype=np.float32)[y[indices]]
    return images.astype(np.float32), labels


@dataclass
class Preprocessor:
    """Stage 2: Keras preprocessing layers, the same for tf.data and PyDataset.

    ``image_size`` is the (height, width) the model takes (the random crop
    returns padded images to it).
    """

    preprocessing: Preprocessing
    image_size: tuple
    seed: int = 0
    _layers: dict = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self):
        p, (height, width), seed = self.preprocessing, self.image_size, self.seed
        augment = []
        if p.crop_padding:
            augment.append(keras.layers.RandomCrop(height, width, seed=seed))
        if p.flip:
            augment.append(keras.layers.RandomFlip("horizontal", seed=seed + 1))
        if p.randaugment:
            augment.append(keras.layers.RandAugment(
                value_range=(0, 255), num_ops=p.randaugment_ops,
                factor=p.randaugment_magnitude, seed=seed + 2))
        if p.random_erasing:
            augment.append(keras.layers.RandomErasing(
                factor=p.random_erasing, value_range=(0, 255), seed=seed + 3))
        if p.normalize == "unit":
            scale, offset = 1.0 / 255.0, 0.0
        else:
            std = np.asarray(p.std, np.float32)
            scale = (1.0 / (255.0 * std)).tolist()
            offset = (-np.asarray(p.mean, np.float32) / std).tolist()
        mix = None
        if p.mixup:
            mix = keras.layers.MixUp(alpha=p.mixup, seed=seed + 4)
        elif p.cutmix:
            mix = keras.layers.CutMix(factor=p.cutmix, seed=seed + 5)
        self._layers = {"augment": augment, "normalize": keras.layers.Rescaling(scale, offset),
                        "mix": mix}

    def __call__(self, images, labels, training: bool, batch_seed=None):
        """Augment (if ``training``) and normalise a float [0, 255] batch.

        ``batch_seed``: an integer pair, (seed, global batch index) as the pipelines
        give it (a tf tensor in a graph, a numpy array otherwise). With it the
        augmentation is a function of the pair alone, whatever order parallel
        workers run in and wherever a resumed run starts: same seed, same run.
        Without it the layers draw from their own (stateful) seed generators.
        """
        with self._lock:  # the layers' seeds are swapped while a batch is drawn
            return self._apply(images, labels, training, batch_seed)

    def _apply(self, images, labels, training, batch_seed):
        def seeded(layer, salt):
            if batch_seed is None:
                return contextlib.nullcontext()
            return keras_patches.batch_seeded(layer, batch_seed, salt)

        if training:
            for salt, layer in enumerate(self._layers["augment"], start=1):
                with seeded(layer, salt):
                    images = layer(images, training=True)
        images = self._layers["normalize"](images)
        if training and self._layers["mix"] is not None:
            with seeded(self._layers["mix"], len(self._layers["augment"]) + 1):
                mixed = self._layers["mix"]({"images": images, "labels": labels},
                                            training=True)
            images, labels = mixed["images"], mixed["labels"]
        return images, labels
