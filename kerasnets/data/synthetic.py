"""Random but learnable images for smoke tests: no files needed."""

from __future__ import annotations

import numpy as np

__all__ = ["make_synthetic"]


def make_synthetic(shape=(32, 32, 3), num_classes: int = 10, sizes=(512, 128), seed: int = 0):
    """Random images whose class is learnable: a per-class pattern plus noise.

    Each class gets its own coarse 4x4 brightness pattern (per channel), upsampled
    to the image size; samples add Gaussian noise. Convolutions plus pooling pick
    this up within a few steps, so a smoke run shows the loss going down.

    Args:
        shape: ``(height, width, channels)``.
        num_classes: number of classes (>= 2).
        sizes: ``(n_train, n_test)``.
        seed: the same seed gives the same data.

    Returns:
        ``({"train": (x, y), "test": (x, y)}, class_names)``.
    """
    shape, sizes = tuple(shape), tuple(sizes)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"synthetic_shape must be (height, width, channels), got {shape}")
    if num_classes < 2:
        raise ValueError(f"synthetic_classes must be >= 2, got {num_classes}")
    if len(sizes) != 2 or sizes[0] < 1 or sizes[1] < 0:
        raise ValueError(f"synthetic_size must be (n_train >= 1, n_test >= 0), got {sizes}")
    height, width, channels = shape
    rng = np.random.default_rng(seed)
    grid = rng.uniform(30, 225, (num_classes, 4, 4, channels)).astype(np.float32)
    rows, cols = np.arange(height) * 4 // height, np.arange(width) * 4 // width
    patterns = grid[:, rows][:, :, cols]  # (classes, height, width, channels)

    def draw(n):
        y = rng.permutation(np.arange(n) % num_classes).astype(np.int32)  # balanced
        noise = rng.standard_normal((n, *shape), dtype=np.float32) * 40
        return np.clip(patterns[y] + noise, 0, 255).round().astype(np.uint8), y

    splits = {"train": draw(sizes[0]), "test": draw(sizes[1])}
    return splits, [f"class_{i}" for i in range(num_classes)]
