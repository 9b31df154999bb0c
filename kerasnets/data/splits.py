"""Seeded, stratified hold-out splits, shared by every data set."""

from __future__ import annotations

import numpy as np

__all__ = ["carve_val", "stratified_split", "stratified_subset", "take"]


def _held_count(n: int, fraction: float) -> int:
    """How many of a class's ``n`` samples to hold out."""
    if fraction <= 0 or n < 2:
        return 0
    # Every class with >= 2 samples gets at least one held out and keeps one.
    return min(max(int(round(n * fraction)), 1), n - 1)


def stratified_split(labels: np.ndarray, fraction: float, seed: int):
    """Split indices per class, seeded: about ``fraction`` of each class is held out.

    Args:
        labels: 1-D class labels.
        fraction: share of each class to hold out.
        seed: the same seed gives the same split.

    Returns:
        ``(kept_indices, held_indices)``, each sorted (original order preserved).
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held = [rng.permutation(np.flatnonzero(labels == c))[:_held_count(int(n), fraction)]
            for c, n in zip(*np.unique(labels, return_counts=True))]
    held = np.sort(np.concatenate(held)) if held else np.empty(0, np.int64)
    keep = np.ones(len(labels), bool)
    keep[held] = False
    return np.flatnonzero(keep), held


def stratified_subset(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """Sorted indices of exactly ``size`` samples, seeded, each class keeping its share
    (largest remainders get the rounding)."""
    labels = np.asarray(labels)
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * size / len(labels)
    quota_floor = np.floor(quota).astype(int)
    quota_floor[np.argsort(quota_floor - quota, kind="stable")[:size - quota_floor.sum()]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:k]
              for c, k in zip(classes, quota_floor)]
    return np.sort(np.concatenate(chosen))


def take(seq, idx):
    """Index an array or a list (of paths) with an index array."""
    return seq[idx] if isinstance(seq, np.ndarray) else [seq[i] for i in idx]


def carve_val(splits: dict, fraction: float, seed: int) -> dict:
    """Move a stratified ``fraction`` of the training split into ``"val"``."""
    if fraction <= 0:
        return splits
    if "val" in splits:
        raise ValueError("the data already has a validation split (a val/ folder); "
                         "val_fraction must be 0")
    x, y = splits["train"]
    keep, held = stratified_split(y, fraction, seed)
    return {**splits, "train": (take(x, keep), y[keep]), "val": (take(x, held), y[held])}
