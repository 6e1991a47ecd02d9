"""Does an exported artifact predict what eager PyTorch predicts, on real validation inputs?

Inputs are the fold's own validation studies from the cache, so the official metric can be
computed for both: a format passes when the probabilities agree within the precision's
tolerance and the metric moves by no more than its tolerance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from export.runner import TOLERANCE, Runner, softmax_groups
from zoo.augment import build_transform
from zoo.cache import usable_series
from zoo.competition import encode_labels, read_csv
from zoo.data import CacheDataset
from zoo.metric import score_predictions
from zoo.registry import ModelSpec


def validation_batch(
    spec: ModelSpec, cache: Path, cache_size: int, data: Path, val_ids: list[int], limit: int = 32
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Up to `limit` validation studies as the model sees them, with their labels."""
    ids = val_ids[:limit]
    train = read_csv(Path(data) / "train.csv")
    labels_all = encode_labels(train)
    row = {int(s): i for i, s in enumerate(train["study_id"])}
    labels = labels_all[[row[s] for s in ids]]
    transform = build_transform("none", spec.plan.size, train=False)
    dataset = CacheDataset(cache, ids, labels, spec, transform, cache_size, usable_series(cache))
    items = [dataset[i] for i in range(len(dataset))]
    x = np.stack([item[0].numpy() for item in items]).astype(np.float32)
    y = np.stack([item[1].numpy() for item in items])
    return x, y, ids


def run_batched(runner: Runner, x: np.ndarray, batch: int = 8) -> np.ndarray:
    return np.concatenate([runner(x[i : i + batch]) for i in range(0, len(x), batch)])


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    labels: np.ndarray,
    ids: list[int],
    spec: ModelSpec,
    precision: str,
) -> dict:
    """Parity figures of one artifact against the eager reference logits."""
    p_ref, p_new = softmax_groups(reference), softmax_groups(candidate)
    score_ref = score_predictions(ids, labels, p_ref, spec.targets)["score"]
    score_new = score_predictions(ids, labels, p_new, spec.targets)["score"]
    prob_tol, metric_tol = TOLERANCE[precision]
    max_diff = float(np.abs(p_ref - p_new).max())
    return {
        "studies": len(ids),
        "precision": precision,
        "max_abs_prob_diff": max_diff,
        "score_eager": score_ref,
        "score_artifact": score_new,
        "score_diff": abs(score_new - score_ref),
        "tolerance": [prob_tol, metric_tol],
        "passed": bool(max_diff <= prob_tol and abs(score_new - score_ref) <= metric_tol),
    }
