"""Cross-validation folds over studies.

`kfold` reproduces sklearn's KFold(n_splits, shuffle=True, random_state=seed) exactly (a
RandomState permutation cut into n // k sized folds, the first n % k one larger), so fold k
here is fold k of the notebooks without depending on scikit-learn.
"""

from __future__ import annotations

import numpy as np

from zoo.constants import MISSING_LABEL


def kfold(n: int, n_splits: int = 5, seed: int = 8620) -> list[np.ndarray]:
    """Validation indices of each fold, as sklearn's shuffled KFold gives them."""
    if n < n_splits:
        raise ValueError(f"cannot make {n_splits} folds of {n} studies")
    order = np.arange(n)
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(n_splits, n // n_splits)
    sizes[: n % n_splits] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [np.sort(order[bounds[k] : bounds[k + 1]]) for k in range(n_splits)]


def stratified_kfold(labels: np.ndarray, n_splits: int = 5, seed: int = 8620) -> list[np.ndarray]:
    """Folds balanced on each study's worst severity, so rare Severe studies spread evenly.

    Studies are shuffled, sorted by (worst severity, number of severe labels) and dealt to the
    folds in turn.
    """
    known = np.where(labels == MISSING_LABEL, 0, labels)
    key = known.max(axis=1) * 100 + (known == 2).sum(axis=1)
    order = np.random.RandomState(seed).permutation(len(labels))
    order = order[np.argsort(key[order], kind="stable")]
    return [np.sort(order[k::n_splits]) for k in range(n_splits)]
