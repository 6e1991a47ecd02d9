"""Ensembles fitted on out-of-fold predictions, and the cross-fitting that keeps them honest.

A run's (or an ensemble's) out-of-fold predictions are files its report writes:
oof_submission.csv (probabilities), oof_solution.csv (labels, rows without one left out),
oof_folds.csv (each study's validation fold) and oof_prior_rows.csv (the rows its models could
not predict, which took the prior). An ensemble is a weighted average of its members'
probabilities, one set of non-negative weights summing to 1 per condition group, fitted to
minimise the official metric: spinal weights minimise the spinal and the any-severe terms
together (the any-severe term reads the spinal rows), the others their own term. A row one
member could not predict is carried by the members that did (`carry_weights`), in the fit as in
the kernel.

Cross-fitting: the weights applied to fold k are fitted on the other folds only, so the score
of the cross-fitted predictions is an honest estimate; the weights shipped are fitted on all
folds. The same `cross_fit` serves the calibration (`zoo.calibration`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

from zoo.constants import MISSING_LABEL, SUBMISSION_COLUMNS, TARGETS
from zoo.errors import ZooError
from zoo.io import atomic_write, write_csv, write_json
from zoo.metric import (
    GROUP_OF_TARGET,
    GROUPS,
    TERMS,
    array_terms,
    solution_from_labels,
    submission_from_probs,
)

log = logging.getLogger(__name__)

OOF_FILES = ("oof_submission.csv", "oof_solution.csv", "oof_folds.csv")
PRIOR_ROWS_FILE = "oof_prior_rows.csv"
P = TypeVar("P")


@dataclass
class OutOfFold:
    """One source's out-of-fold predictions, studies in a fixed order."""

    name: str
    folder: Path
    study_ids: np.ndarray  # (studies,)
    folds: np.ndarray  # (studies,) validation fold of each study
    labels: np.ndarray  # (studies, 25) encoded, MISSING_LABEL where unlabelled
    probs: np.ndarray  # (studies, 25, 3)
    predicted: np.ndarray | None = None  # (studies, 25) bool, False where the row is the prior

    def __post_init__(self) -> None:
        if self.predicted is None:
            self.predicted = np.ones(self.labels.shape, bool)


def _cells(path: Path, row: dict[int, int]) -> tuple[pd.DataFrame, tuple[list, list]]:
    """A file's rows, and the (study row, target index) of each row id '<study>_<target>': an
    index into (studies, 25) arrays; a clear error for a row id of no study in `row`."""
    frame = pd.read_csv(path, dtype={"row_id": str})
    if "row_id" not in frame.columns:
        raise ZooError(f"{path}: no row_id column")
    index = {t: j for j, t in enumerate(TARGETS)}
    rows, targets = [], []
    for row_id in frame["row_id"].astype(str):
        study, _, target = row_id.partition("_")
        if not study.isdigit() or int(study) not in row or target not in index:
            raise ZooError(
                f"{path}: row_id {row_id!r} is not '<study>_<target>' of a study in oof_folds.csv"
            )
        rows.append(row[int(study)])
        targets.append(index[target])
    return frame, (rows, targets)


def read_oof(folder: Path) -> OutOfFold:
    """A run's or an ensemble's out-of-fold predictions; a clear error when they are missing."""
    folder = Path(folder)
    for name in OOF_FILES:
        if not (folder / name).is_file():
            raise ZooError(
                f"{folder / name} missing: not a finished run or ensemble (a run made by an "
                "older zoo: `zoo train VARIANT --resume --out RUN` rewrites its report)"
            )
    fold_of = pd.read_csv(folder / "oof_folds.csv")
    ids = fold_of["study_id"].to_numpy(np.int64)
    row = {s: i for i, s in enumerate(ids)}
    probs = np.full((len(ids), len(TARGETS), 3), np.nan)
    labels = np.full((len(ids), len(TARGETS)), MISSING_LABEL, np.int64)
    sub, at = _cells(folder / "oof_submission.csv", row)
    probs[at] = sub[list(SUBMISSION_COLUMNS)].to_numpy()
    sol, at = _cells(folder / "oof_solution.csv", row)
    labels[at] = sol[list(SUBMISSION_COLUMNS)].to_numpy().argmax(1)
    if np.isnan(probs).any():
        raise ZooError(f"{folder / 'oof_submission.csv'}: rows missing for some studies")
    predicted = np.ones(labels.shape, bool)
    if (folder / PRIOR_ROWS_FILE).is_file():
        predicted[_cells(folder / PRIOR_ROWS_FILE, row)[1]] = False
    else:
        log.warning(
            "%s missing (a run made by an older zoo): its prior-filled rows count as predicted "
            "in the fit, unlike in the kernel; `zoo train VARIANT --resume --out %s` writes it",
            folder / PRIOR_ROWS_FILE,
            folder,
        )
    folds = fold_of["fold"].to_numpy()
    return OutOfFold(folder.name, folder, ids, folds, labels, probs, predicted)


def write_prior_rows(path: Path, study_ids: list[int], predicted: np.ndarray) -> None:
    """The row ids of the rows not predicted (they took the prior)."""
    rows = [f"{study_ids[i]}_{TARGETS[j]}" for i, j in zip(*np.nonzero(~predicted), strict=True)]
    write_csv(path, pd.DataFrame({"row_id": rows}, dtype=str))


def align(sources: list[OutOfFold]) -> list[OutOfFold]:
    """Every source restricted to the studies all of them predicted, in the first's order;
    an error when they do not share the fold split or the labels."""
    common = set(sources[0].study_ids)
    for s in sources[1:]:
        common &= set(s.study_ids)
    if not common:
        raise ZooError(f"{', '.join(s.name for s in sources)}: no study in common")
    order = [s for s in sources[0].study_ids if s in common]
    aligned = []
    for s in sources:
        index = {sid: i for i, sid in enumerate(s.study_ids)}
        rows = [index[sid] for sid in order]
        aligned.append(
            OutOfFold(
                s.name,
                s.folder,
                np.array(order),
                s.folds[rows],
                s.labels[rows],
                s.probs[rows],
                s.predicted[rows],
            )
        )
    first = aligned[0]
    for s in aligned[1:]:
        differ = np.flatnonzero(s.folds != first.folds)
        if len(differ):
            k = differ[0]
            raise ZooError(
                f"{first.name} and {s.name} do not share the fold split: study "
                f"{first.study_ids[k]} is in fold {first.folds[k]} of one and fold {s.folds[k]} "
                "of the other (train both on the same data, with --stratify for both or neither)"
            )
        if (s.labels != first.labels).any():
            raise ZooError(f"{first.name} and {s.name} were trained on different labels")
    return aligned


def carry_weights(weights: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Each row's member weights (members, ..., 25), summing to 1 over members, from the
    per-target weights (members, 25) and which rows each member predicted (members, ..., 25).
    A row a member could not predict is carried by those that did, by weight, or equally where
    their weights are all 0 (a member fitted to 0 still beats a prior); a row none predicted
    mixes their priors by weight."""
    carriers = np.where(predicted.any(axis=0), predicted, True)
    per_row = weights.reshape(weights.shape[0], *[1] * (predicted.ndim - 2), weights.shape[1])
    carried = per_row * carriers
    carried = np.where(carried.sum(axis=0) > 0, carried, carriers.astype(float))
    return carried / carried.sum(axis=0, keepdims=True)


def mix(
    probs: np.ndarray, weights: dict[str, np.ndarray], predicted: np.ndarray | None = None
) -> np.ndarray:
    """Weighted average of members' probabilities (members, studies, 25, 3), per group; with
    `predicted` (members, studies, 25), rows a member did not predict are carried by others."""
    per_target = np.stack([weights[g] for g in GROUP_OF_TARGET], axis=1)  # (members, 25)
    if predicted is None:
        return np.einsum("mt,mstc->stc", per_target, probs)
    return np.einsum("mst,mstc->stc", carry_weights(per_target, predicted), probs)


def group_loss(group: str, labels: np.ndarray, probs: np.ndarray) -> float:
    """The metric's terms that a group's predictions move: spinal also moves any-severe."""
    terms = array_terms(labels, probs)
    return terms[group] + (terms["any_severe_spinal"] if group == "spinal" else 0.0)


def fit_weights(
    probs: np.ndarray, labels: np.ndarray, predicted: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Non-negative weights summing to 1 per group that minimise the metric on these rows
    (mixed with the carry rule where `predicted` says a member left a row to the prior)."""
    from scipy.optimize import minimize

    members = probs.shape[0]
    uniform = np.full(members, 1.0 / members)
    weights = {g: uniform.copy() for g in GROUPS}
    if members == 1:
        return weights
    for g in GROUPS:

        def loss(w: np.ndarray, g: str = g) -> float:
            w = np.clip(w, 0, None)
            return group_loss(g, labels, mix(probs, {**weights, g: w}, predicted))

        found = minimize(
            loss,
            uniform,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * members,
            constraints=({"type": "eq", "fun": lambda w: w.sum() - 1.0},),
        )
        w = np.where(found.x > 1e-6, found.x, 0.0)  # no 1e-16 dust from the solver
        weights[g] = w / w.sum() if loss(w / w.sum()) <= loss(uniform) else uniform
    return weights


def cross_fit(
    folds: np.ndarray,
    fit: Callable[[np.ndarray], P],
    apply: Callable[[P, np.ndarray], np.ndarray],
) -> tuple[np.ndarray, dict[int, P]]:
    """Held-out predictions: for each fold k, `fit` sees only the rows of the other folds (a
    boolean mask) and `apply` transforms fold k's rows with what it fitted."""
    if len(set(folds.tolist())) < 2:
        raise ZooError(
            f"cross-fitting needs out-of-fold predictions of at least 2 folds, not "
            f"{sorted(set(folds.tolist()))}: train more folds (zoo train ... --folds all)"
        )
    out, fitted = None, {}
    for k in sorted(set(folds.tolist())):
        held_out = folds == k
        fitted[k] = fit(~held_out)
        part = apply(fitted[k], held_out)
        if out is None:
            out = np.zeros((len(folds), *part.shape[1:]), part.dtype)
        out[held_out] = part
    return out, fitted


@dataclass
class EnsembleFit:
    members: list[OutOfFold]
    weights: dict[str, np.ndarray]  # fitted on every fold: what is shipped
    fold_weights: dict[int, dict[str, np.ndarray]]
    cross_fitted: np.ndarray  # (studies, 25, 3) held-out ensemble predictions
    terms: dict[str, dict[str, float]]  # member name, "uniform", "ensemble" -> metric terms


def fit_ensemble(members: list[OutOfFold]) -> EnsembleFit:
    members = align(members)
    names = [m.name for m in members]
    for i, m in enumerate(members):  # two runs/NAME folders from different places
        if names.count(m.name) > 1:
            m.name = f"{m.name}#{i + 1}"
    labels, folds = members[0].labels, members[0].folds
    probs = np.stack([m.probs for m in members])
    predicted = np.stack([m.predicted for m in members])
    cross, fold_weights = cross_fit(
        folds,
        lambda rows: fit_weights(probs[:, rows], labels[rows], predicted[:, rows]),
        lambda w, rows: mix(probs[:, rows], w, predicted[:, rows]),
    )
    uniform = {g: np.full(len(members), 1 / len(members)) for g in GROUPS}
    terms = {m.name: array_terms(labels, m.probs) for m in members}
    terms["uniform"] = array_terms(labels, mix(probs, uniform, predicted))
    terms["ensemble"] = array_terms(labels, cross)
    shipped = fit_weights(probs, labels, predicted)
    return EnsembleFit(members, shipped, fold_weights, cross, terms)


ENSEMBLE_FILE = "ensemble.json"


def read_ensemble(folder: Path) -> dict | None:
    """A `zoo ensemble` folder's ensemble.json (its member runs and weights); None for a run."""
    path = Path(folder) / ENSEMBLE_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def run_variant(folder: Path) -> str | None:
    try:
        return json.loads((Path(folder) / "config.json").read_text())["variant"]
    except (OSError, KeyError, ValueError):
        return None


def write_ensemble(fit: EnsembleFit, out: Path) -> dict:
    """ensemble.json, the cross-fitted OOF files (so `zoo calibrate` reads an ensemble as it
    reads a run) and ensemble.png; returns ensemble.json's content."""
    first = fit.members[0]
    out.mkdir(parents=True, exist_ok=True)
    ids = [int(s) for s in first.study_ids]
    write_csv(out / "oof_submission.csv", submission_from_probs(ids, fit.cross_fitted))
    write_csv(out / "oof_solution.csv", solution_from_labels(ids, first.labels))
    write_csv(out / "oof_folds.csv", pd.DataFrame({"study_id": ids, "fold": first.folds}))
    predicted = np.stack([m.predicted for m in fit.members]).any(axis=0)
    write_prior_rows(out / PRIOR_ROWS_FILE, ids, predicted)
    content = {
        "members": [
            {"name": m.name, "run": str(m.folder.resolve()), "variant": run_variant(m.folder)}
            for m in fit.members
        ],
        "studies": len(ids),
        "folds": sorted(int(k) for k in set(first.folds.tolist())),
        "weights": {g: [round(float(x), 6) for x in w] for g, w in fit.weights.items()},
        "fold_weights": {
            str(k): {g: [round(float(x), 6) for x in w] for g, w in ws.items()}
            for k, ws in fit.fold_weights.items()
        },
        "terms": fit.terms,
        "fitted": "per condition group, non-negative weights summing to 1 minimising the "
        "official metric; 'ensemble' terms are cross-fitted (fold k weighted by weights fitted "
        "on the other folds), the shipped weights are fitted on every fold",
    }
    write_json(out / ENSEMBLE_FILE, content)
    plot_terms(fit.terms, out / "ensemble.png")
    return content


def plot_terms(terms: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = (*TERMS, "score")
    fig, ax = plt.subplots(figsize=(8, 3.2))
    width = 0.8 / len(terms)
    for i, (name, t) in enumerate(terms.items()):
        ax.bar(
            np.arange(len(keys)) + i * width, [t.get(k, np.nan) for k in keys], width, label=name
        )
    ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, keys)
    ax.set_ylabel("OOF metric (lower is better)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=90))
    plt.close(fig)


def format_terms(terms: dict[str, dict[str, float]]) -> str:
    """One row per source: the four terms and the score."""
    keys = (*TERMS, "score")
    width = max(len(n) for n in terms) + 2
    lines = [f"{'':<{width}}" + "".join(f"{k:>19}" for k in keys)]
    for name, t in terms.items():
        lines.append(f"{name:<{width}}" + "".join(f"{t.get(k, np.nan):>19.4f}" for k in keys))
    return "\n".join(lines)
