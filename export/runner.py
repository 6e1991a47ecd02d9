"""What every format's loader returns: a callable from a float32 NCHW batch to logits."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Runner = Callable[[np.ndarray], np.ndarray]


def softmax_groups(logits: np.ndarray) -> np.ndarray:
    """(batch, 3T) logits -> (batch, T, 3) probabilities, in float64 for stable metrics."""
    z = logits.astype(np.float64).reshape(len(logits), -1, 3)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)
