"""The two errors every reader raises, and the label checks the array formats share.

Readers validate what they read and raise :class:`CorruptDatasetError` naming the
file and the problem, rather than returning garbage.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CorruptDatasetError", "DatasetNotFoundError", "check_counts", "check_labels"]


class DatasetNotFoundError(FileNotFoundError):
    """The data set's files are nowhere to be found (the message says where we looked)."""


class CorruptDatasetError(ValueError):
    """A data file exists but is truncated, malformed or inconsistent."""


def check_labels(y: np.ndarray, num_classes: int, where: str) -> np.ndarray:
    """Return ``y`` as int32 after checking every label is in ``[0, num_classes)``."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise CorruptDatasetError(f"{where}: labels have shape {y.shape}, expected 1-D")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise CorruptDatasetError(
            f"{where}: labels outside the class range 0..{num_classes - 1} "
            f"(found {int(y.min())}..{int(y.max())})")
    return y.astype(np.int32)


def check_counts(x: np.ndarray, y: np.ndarray, x_where: str, y_where: str) -> None:
    """One label per image."""
    if len(x) != len(y):
        raise CorruptDatasetError(
            f"{x_where} has {len(x)} images but {y_where} has {len(y)} labels")
