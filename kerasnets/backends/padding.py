"""Window geometry shared by the kernels of every backend: Keras' "same" padding and
output sizes, in plain Python (no backend import)."""

from __future__ import annotations


def pair(value) -> tuple:
    """``(value, value)`` for an int, else ``tuple(value)``."""
    return (value,) * 2 if isinstance(value, int) else tuple(value)


def same_padding(size, k, stride, dilation) -> tuple[int, int]:
    """(before, after) that Keras/TF ``padding="same"`` adds along one axis."""
    effective = (k - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def output_size(size, k, stride, padding):
    """Output length along one axis of a ``k``-wide window (no dilation); None if unknown."""
    if size is None:
        return None
    return -(-size // stride) if padding == "same" else (size - k) // stride + 1


def is_explicit(padding) -> bool:
    """True for torch-style explicit zero padding ``((top, bottom), (left, right))``,
    False for Keras' ``"valid"`` / ``"same"``."""
    return not isinstance(padding, str)


def padded_size(size, before_after):
    """Length along one axis after adding ``(before, after)`` zeros; None if unknown."""
    return None if size is None else size + before_after[0] + before_after[1]
