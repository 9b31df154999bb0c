"""Image folders streamed from disk: paths in memory, pixels decoded per batch.

:class:`FolderImages` stands where the in-memory readers put a ``uint8`` NHWC array
(``shape``, ``dtype``, ``len``, slicing), so ``Dataset``, the trainer and both
pipelines take it unchanged; the pipelines call :meth:`FolderImages.load` for each
batch (tf.data through ``tf.numpy_function`` in parallel map calls, PyDataset in its
workers), which decodes with :func:`kerasnets.data.images.decode_image`, the in-memory
reader's decoder, so streamed and in-memory batches are the same pixels.

Memory stays bounded by the batches in flight, whatever the folder's size, unless a
cache is asked for: ``"memory"`` (decoded images kept in RAM, allocated as they come)
or a directory (a memory-mapped file there, unlinked at once, so nothing is left
behind; the OS pages it in and out).

A file found unusable only when decoded (a truncated JPEG whose end marker happens to be
there) is dropped from its batch (the batch is one image shorter), added to the
``skipped`` dict that the ``Dataset`` and the run's ``metrics.json`` report, and printed
once; with ``strict`` it is an error instead. (PyDataset workers as processes,
``--use-multiprocessing``, each keep their own cache and their own record of such files:
the parent then does not see them.)
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from kerasnets.data.errors import CorruptDatasetError
from kerasnets.data.images import decode_image

__all__ = ["FolderImages", "gather_images"]

# Cache states of each image.
_UNKNOWN, _DECODED, _BAD = 0, 1, 2
# The seeded sample of a streamed training split that per-channel statistics are
# computed on (--normalize standardize): 1,000 images pin the means to ~0.5%.
STATISTICS_SAMPLE = 1000


class FolderImages:
    """The images of one split of an image folder, decoded when a batch asks for them.

    Args:
        paths: the image files, in the split's order.
        image_size: ``(height, width)`` every image is resized to.
        skipped: ``{path: what is wrong}``, shared with the data set: files met bad here
            are added to it.
        strict: a file that fails to decode is an error, not skipped.
        cache: ``None``, ``"memory"`` or a directory for a memory-mapped cache file.
    """

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(self, paths, image_size, *, skipped=None, strict=False, cache=None):
        self.paths = [str(p) for p in paths]
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.skipped = {} if skipped is None else skipped
        self.strict, self.cache = strict, cache
        if cache not in (None, "memory") and not os.path.isdir(cache):
            raise ValueError(f"image cache {cache!r} is neither 'memory' nor an existing "
                             f"directory: create it, or pass 'memory'")
        self._pixels = self._state = None  # the cache, made on first use

    @property
    def shape(self) -> tuple:
        return (len(self.paths), *self.image_size, 3)

    def __len__(self):
        return len(self.paths)

    def __repr__(self):
        return f"FolderImages({len(self)} files at {self.image_size}, cache={self.cache!r})"

    def subset(self, indices) -> "FolderImages":
        """The images at ``indices`` (nothing decoded; its own cache, if any)."""
        return FolderImages([self.paths[i] for i in np.asarray(indices, np.int64)],
                            self.image_size, skipped=self.skipped, strict=self.strict,
                            cache=self.cache)

    def __getitem__(self, key):
        """A slice gives a :meth:`subset`; an index array the decoded images (every one
        must be usable), as a numpy array would."""
        if isinstance(key, slice):
            return self.subset(np.arange(len(self))[key])
        indices = np.atleast_1d(np.asarray(key, np.int64))
        images, kept = self.load(indices)
        if len(kept) < len(indices):
            bad = [self.paths[i] for i in np.setdiff1d(indices, kept)]
            raise CorruptDatasetError(f"cannot decode {', '.join(bad)}: "
                                      f"{self.skipped.get(bad[0], 'unusable')}")
        return images if np.ndim(key) else images[0]

    def load(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Decode the images at ``indices``: ``(uint8 (k, H, W, 3), the k indices kept)``;
        a file that fails to decode is left out (and recorded), or raises if ``strict``."""
        indices = np.asarray(indices, np.int64).reshape(-1)
        out = np.empty((len(indices), *self.image_size, 3), np.uint8)
        keep = np.ones(len(indices), bool)
        self._ensure_cache()
        for row, i in enumerate(indices):
            state = _UNKNOWN if self._state is None else self._state[i]
            if state == _DECODED:
                out[row] = self._pixels[i]
                continue
            if state == _BAD or self.paths[i] in self.skipped:
                keep[row] = False
                continue
            try:
                out[row] = decode_image(self.paths[i], self.image_size)
            except CorruptDatasetError as error:
                self._met_bad(i, error)
                keep[row] = False
                continue
            if self._state is not None:
                self._pixels[i] = out[row]
                self._state[i] = _DECODED
        return out[keep], indices[keep]

    def sample(self, count: int = STATISTICS_SAMPLE, seed: int = 0) -> np.ndarray:
        """A seeded sample of up to ``count`` decoded images (the usable ones), decoded
        on every core (PIL releases the GIL)."""
        from concurrent.futures import ThreadPoolExecutor

        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.permutation(len(self))[:count])
        with ThreadPoolExecutor(os.cpu_count() or 1) as pool:
            parts = list(pool.map(lambda part: self.load(part)[0],
                                  np.array_split(chosen, max(1, len(chosen) // 32))))
        return np.concatenate(parts) if parts else self.load(chosen)[0]

    def _met_bad(self, i, error):
        path = self.paths[i]
        why = str(error).removeprefix(f"{path}: ")
        if self.strict:
            raise CorruptDatasetError(f"{path}: {why} (--strict-images; without it the "
                                      f"file would be skipped)")
        if self._state is not None:
            self._state[i] = _BAD
        if path not in self.skipped:
            self.skipped[path] = why
            print(f"kerasnets: skipping {path}: {why}", flush=True)

    def _ensure_cache(self):
        if self.cache is None or self._state is not None:
            return
        shape = self.shape
        if self.cache == "memory":  # np.zeros: pages are taken as images arrive
            pixels = np.zeros(shape, np.uint8)
        else:
            with tempfile.NamedTemporaryFile(dir=self.cache, prefix="kerasnets-images-",
                                             suffix=".uint8", delete=False) as f:
                name = f.name
            pixels = np.memmap(name, np.uint8, "w+", shape=shape)
            os.unlink(name)  # the mapping keeps it alive; nothing left after the run
        self._state = np.zeros(len(self), np.uint8)
        self._pixels = pixels


def gather_images(x, indices) -> tuple[np.ndarray, np.ndarray]:
    """``(images, indices kept)`` of a batch from an array or a :class:`FolderImages`."""
    if isinstance(x, FolderImages):
        return x.load(indices)
    return x[indices], np.asarray(indices)
