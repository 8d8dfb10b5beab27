"""How far an exported model's outputs are from the source model's."""

from __future__ import annotations

import numpy as np


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got − want| / max |want|: scale-free and robust to outputs near zero.

    A shape mismatch or a non-finite value where the source is finite is an infinite error.
    """
    if got.shape != want.shape:
        return float("inf")
    got64 = np.asarray(got, dtype=np.float64)
    want64 = np.asarray(want, dtype=np.float64)
    if not np.array_equal(np.isfinite(got64), np.isfinite(want64)):
        return float("inf")
    finite = np.isfinite(want64)
    if not finite.any():
        return 0.0
    diff = np.abs(got64[finite] - want64[finite]).max()
    scale = max(float(np.abs(want64[finite]).max()), 1e-12)
    return float(diff / scale)
