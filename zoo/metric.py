"""The official LSDC metric (competition.md 2.1), with the local-CV helpers around it.

score = mean(L_spinal, L_foraminal, L_subarticular, L_any_severe_spinal), where each L_g is a
sample-weighted log loss (weights 1/2/4 by true severity) pooled over the rows of a condition
group, and L_any is a weighted binary log loss on the per-study maximum submitted `severe`
probability of the five spinal rows. Rows absent from the solution are not scored.

Probabilities are treated as scikit-learn <= 1.4 did when the competition was scored: clipped to
[eps, 1 - eps] and each row divided by its sum, eps = float64 machine epsilon. The any-severe
term sees the raw `severe` column (clipped only), so un-normalised submissions pay there.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from zoo.constants import (
    CLASS_WEIGHTS,
    LEVELS,
    MISSING_LABEL,
    SUBMISSION_COLUMNS,
    TARGETS,
    row_id,
)
from zoo.errors import ZooError

EPS = float(np.finfo(np.float64).eps)
GROUPS = ("spinal", "foraminal", "subarticular")
TERMS = (*GROUPS, "any_severe_spinal")


def condition_group(row: str) -> str:
    """The metric's grouping rule, applied to a row id exactly as the metric does."""
    if "spinal" in row:
        return "spinal"
    return "foraminal" if "foraminal" in row else "subarticular"


def _weighted_log_loss(onehot: np.ndarray, prob: np.ndarray, weight: np.ndarray) -> float:
    prob = np.clip(prob, EPS, 1 - EPS)
    prob = prob / prob.sum(axis=1, keepdims=True)
    losses = -np.log((onehot * prob).sum(axis=1))
    return float((weight * losses).sum() / weight.sum())


def _binary_log_loss(y: np.ndarray, p: np.ndarray, weight: np.ndarray) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    losses = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    return float((weight * losses).sum() / weight.sum())


def _check_submission(submission: pd.DataFrame) -> None:
    for col in ("row_id", *SUBMISSION_COLUMNS):
        if col not in submission.columns:
            raise ZooError(f"submission: missing column {col!r}")
    values = submission[list(SUBMISSION_COLUMNS)]
    if not all(pd.api.types.is_numeric_dtype(values[c]) for c in values.columns):
        raise ZooError("submission: probability columns must be numeric")
    array = values.to_numpy(dtype=np.float64)
    if not np.isfinite(array).all():
        raise ZooError("submission: probabilities must be finite")
    if (array < 0).any():
        raise ZooError("submission: probabilities must be >= 0")


def _aligned(solution: pd.DataFrame, submission: pd.DataFrame) -> pd.DataFrame:
    """Solution rows with their submitted probabilities beside them, checked as the metric does."""
    for col in ("row_id", *SUBMISSION_COLUMNS, "sample_weight"):
        if col not in solution.columns:
            raise ZooError(f"solution: missing column {col!r}")
    _check_submission(submission)
    duplicated = submission["row_id"][submission["row_id"].duplicated()]
    if len(duplicated):
        raise ZooError(f"submission: duplicate row_id {duplicated.iloc[0]!r}")
    merged = solution.merge(submission, on="row_id", how="left", suffixes=("_true", ""))
    absent = merged[list(SUBMISSION_COLUMNS)].isna().any(axis=1)
    if absent.any():
        raise ZooError(f"submission: missing row_id {merged.loc[absent, 'row_id'].iloc[0]!r}")
    return merged


def _row_arrays(merged: pd.DataFrame) -> tuple[np.ndarray, ...]:
    """(one-hot truth, probabilities, sample weights, condition group) per row."""
    onehot = merged[[f"{c}_true" for c in SUBMISSION_COLUMNS]].to_numpy(np.float64)
    prob = merged[list(SUBMISSION_COLUMNS)].to_numpy(np.float64)
    weight = merged["sample_weight"].to_numpy(np.float64)
    return onehot, prob, weight, merged["row_id"].map(condition_group).to_numpy()


def score_terms(solution: pd.DataFrame, submission: pd.DataFrame) -> dict[str, float]:
    """The four terms and the score.

    Keys: spinal, foraminal, subarticular, any_severe_spinal, score.
    """
    merged = _aligned(solution, submission)
    onehot, prob, weight, group = _row_arrays(merged)

    # A subset of the conditions (one per-series model) scores only the groups it has.
    terms = {
        g: _weighted_log_loss(onehot[group == g], prob[group == g], weight[group == g])
        for g in GROUPS
        if (group == g).any()
    }
    if "spinal" not in terms:
        terms["score"] = float(np.mean(list(terms.values())))
        return terms
    spinal = merged[group == "spinal"].assign(
        study=lambda d: d["row_id"].str.split("_").str[0],
        y=onehot[group == "spinal", 2],
        w=weight[group == "spinal"],
        p=prob[group == "spinal", 2],
    )
    per_study = spinal.groupby("study", sort=False)[["y", "w", "p"]].max()
    terms["any_severe_spinal"] = _binary_log_loss(
        per_study["y"].to_numpy(), per_study["p"].to_numpy(), per_study["w"].to_numpy()
    )
    terms["score"] = float(np.mean([terms[t] for t in TERMS if t in terms]))
    return terms


def score(solution: pd.DataFrame, submission: pd.DataFrame) -> float:
    """The competition score (lower is better)."""
    return score_terms(solution, submission)["score"]


def solution_from_labels(
    study_ids: list[int], labels: np.ndarray, targets: tuple[str, ...] = TARGETS
) -> pd.DataFrame:
    """The metric's solution frame from encoded labels (studies x targets), missing dropped."""
    rows = []
    for study, study_labels in zip(study_ids, labels, strict=True):
        for target, label in zip(targets, study_labels, strict=True):
            if label == MISSING_LABEL:
                continue
            onehot = [float(label == k) for k in range(3)]
            rows.append((row_id(study, target), *onehot, CLASS_WEIGHTS[int(label)]))
    return pd.DataFrame(rows, columns=["row_id", *SUBMISSION_COLUMNS, "sample_weight"])


def submission_from_probs(
    study_ids: list[int], probs: np.ndarray, targets: tuple[str, ...] = TARGETS
) -> pd.DataFrame:
    """Submission frame from probabilities shaped (studies, targets, 3), in `targets` order."""
    probs = np.asarray(probs, dtype=np.float64).reshape(len(study_ids), len(targets), 3)
    ids = [row_id(s, t) for s in study_ids for t in targets]
    return pd.DataFrame(probs.reshape(-1, 3), columns=list(SUBMISSION_COLUMNS)).assign(row_id=ids)[
        ["row_id", *SUBMISSION_COLUMNS]
    ]


def class_prior(labels: np.ndarray) -> np.ndarray:
    """The best constant prediction per target for the weighted metric: (targets, 3).

    Class frequencies times the weights (1, 2, 4), renormalised (design_notes.md), with one
    pseudo-count per class so a class never seen in a small set still gets some mass.
    """
    prior = np.zeros((labels.shape[1], 3))
    for j in range(labels.shape[1]):
        known = labels[:, j][labels[:, j] != MISSING_LABEL]
        counts = np.bincount(known, minlength=3).astype(np.float64) + 1.0
        weighted = counts * np.asarray(CLASS_WEIGHTS)
        prior[j] = weighted / weighted.sum()
    return prior


def score_predictions(
    study_ids: list[int], labels: np.ndarray, probs: np.ndarray, targets: tuple[str, ...] = TARGETS
) -> dict[str, float]:
    """score_terms straight from encoded labels and probabilities (studies, targets, 3)."""
    solution = solution_from_labels(study_ids, labels, targets)
    return score_terms(solution, submission_from_probs(study_ids, probs, targets))


def level_terms(solution: pd.DataFrame, submission: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Each condition group's term on the rows of one disc level: {group: {level: loss}}.

    A diagnostic beside the metric (which pools the levels): it shows a level a model has not
    learnt, e.g. one a reader never shows it.
    """
    merged = _aligned(solution, submission)
    onehot, prob, weight, group = _row_arrays(merged)
    level = merged["row_id"].map(lambda r: "_".join(r.rsplit("_", 2)[-2:])).to_numpy()
    terms: dict[str, dict[str, float]] = {}
    for g in GROUPS:
        for lv in LEVELS:
            rows = (group == g) & (level == lv)
            if rows.any():
                loss = _weighted_log_loss(onehot[rows], prob[rows], weight[rows])
                terms.setdefault(g, {})[lv] = loss
    return terms


GROUP_OF_TARGET = np.array([condition_group(t) for t in TARGETS])


def array_terms(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """score_terms on arrays: encoded labels (studies, 25) and probabilities (studies, 25, 3),
    the same numbers without building frames, for fitting weights and calibrations."""
    known = labels != MISSING_LABEL
    y = np.where(known, labels, 0)
    weight = np.asarray(CLASS_WEIGHTS)[y] * known
    clipped = np.clip(probs, EPS, 1 - EPS)
    normalised = clipped / clipped.sum(axis=-1, keepdims=True)
    true_prob = np.take_along_axis(normalised, y[..., None], axis=-1)[..., 0]
    terms = {}
    for g in GROUPS:
        cols = GROUP_OF_TARGET == g
        if known[:, cols].any():
            w = weight[:, cols]
            terms[g] = float((w * -np.log(true_prob[:, cols])).sum() / w.sum())
    if "spinal" in terms:
        cols = GROUP_OF_TARGET == "spinal"
        k, studies = known[:, cols], known[:, cols].any(axis=1)
        y_any = ((labels[:, cols] == 2) & k).any(axis=1)[studies].astype(np.float64)
        w_any = weight[:, cols].max(axis=1)[studies].astype(np.float64)
        p_any = np.where(k, probs[:, cols, 2], -np.inf).max(axis=1)[studies]
        terms["any_severe_spinal"] = _binary_log_loss(y_any, p_any, w_any)
    terms["score"] = float(np.mean([terms[t] for t in TERMS if t in terms]))
    return terms
