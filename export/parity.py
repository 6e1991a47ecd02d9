"""Does an exported artifact predict what eager PyTorch predicts, on real validation inputs?

Inputs are the fold's own validation studies from the cache, so the official metric can be
computed for both: a format passes when the probabilities (a localiser: its coordinates) agree
within the precision's tolerance and the metric (its mean error) moves by no more than its
tolerance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from export.runner import TOLERANCE, Runner, softmax_groups
from zoo.cache import usable_series
from zoo.competition import encode_labels, read_csv
from zoo.metric import score_predictions
from zoo.registry import ModelSpec
from zoo.runinfo import RunInfo
from zoo.stages import StageData


def validation_batch(
    run: RunInfo, spec: ModelSpec, fold: int, limit: int = 32
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Up to `limit` of the fold's validation studies as the model sees them (a crop model:
    the crops of stage 1's out-of-fold points), with their labels or targets."""
    ids = run.val_ids(spec, fold)[:limit]
    data = Path(run.train["data"])
    train = read_csv(data / "train.csv")
    row = {int(s): i for i, s in enumerate(train["study_id"])}
    labels = encode_labels(train)[[row[s] for s in ids]]
    coords = data / "train_label_coordinates.csv"
    stages = StageData(
        run.root,
        fold,
        run.cache,
        run.cache_settings.size,
        usable_series(run.cache),
        read_csv(coords) if coords.is_file() else None,
        {s.name: s for s in run.specs},
    )
    dataset = stages.dataset(spec, ids, labels, train=False)
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
    """Parity figures of one artifact against the eager reference outputs: probabilities and
    the official metric for a classifier; coordinates and their mean error for a localiser."""
    prob_tol, metric_tol = TOLERANCE[precision]
    if spec.kind == "localiser":
        known = np.isfinite(labels)

        def score(out: np.ndarray) -> float:
            return float(np.abs(out - np.nan_to_num(labels))[known].mean()) if known.any() else 0.0

        max_diff = float(np.abs(reference - candidate).max())
        score_ref, score_new = score(reference), score(candidate)
    else:
        p_ref, p_new = softmax_groups(reference), softmax_groups(candidate)
        score_ref = score_predictions(ids, labels, p_ref, spec.targets)["score"]
        score_new = score_predictions(ids, labels, p_new, spec.targets)["score"]
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
