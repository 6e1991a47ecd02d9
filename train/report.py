"""What a finished run reports: metrics.csv, curves.png, out-of-fold predictions and cv.json."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from train.loss import pooled_weighted_ce
from zoo.constants import TARGETS
from zoo.io import atomic_write, write_csv, write_json
from zoo.metric import (
    class_prior,
    level_terms,
    score_terms,
    solution_from_labels,
    submission_from_probs,
)
from zoo.registry import ModelSpec
from zoo.runinfo import fold_dir


def collect_metrics(out: Path, specs: list[ModelSpec], folds: list[int]) -> pd.DataFrame:
    rows = []
    for spec in specs:
        for fold in folds:
            path = fold_dir(out, spec.name, fold) / "history.json"
            if path.is_file():
                rows += json.loads(path.read_text())
    return pd.DataFrame(rows)


def plot_curves(metrics: pd.DataFrame, path: Path) -> None:
    """One column per model: losses on top, the official metric below, a line per fold."""
    models = list(dict.fromkeys(metrics["model"]))
    fig, axes = plt.subplots(2, len(models), figsize=(4.5 * len(models), 6), squeeze=False)
    for j, name in enumerate(models):
        for fold, rows in metrics[metrics["model"] == name].groupby("fold"):
            axes[0, j].plot(rows["epoch"], rows["train_loss"], "--", label=f"train f{fold}")
            axes[0, j].plot(rows["epoch"], rows["val_loss"], label=f"val f{fold}")
            axes[1, j].plot(rows["epoch"], rows["val_score"], marker="o", label=f"fold {fold}")
        axes[0, j].set_title(f"{name}: weighted CE")
        axes[1, j].set_title(f"{name}: official metric (val)")
        axes[1, j].set_xlabel("epoch")
        for ax in axes[:, j]:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=90))
    plt.close(fig)


def out_of_fold(
    out: Path,
    specs: list[ModelSpec],
    folds: list[np.ndarray],
    done_folds: list[int],
    study_ids: list[int],
    labels: np.ndarray,
) -> dict:
    """Assemble OOF predictions of finished folds, score them and the class prior beside them.

    A study a model left out (no usable series) takes the fold's training prior for that
    model's targets, exactly what `zoo predict` gives it, so CV scores the submission path.
    """
    oof = np.full((len(study_ids), len(TARGETS), 3), np.nan)
    prior_oof = np.full_like(oof, np.nan)
    covered = np.zeros(len(study_ids), bool)
    row_of = {s: i for i, s in enumerate(study_ids)}
    per_model: dict[str, dict[int, float]] = {}
    left_out: dict[str, dict[str, int]] = {}
    for fold in done_folds:
        val = folds[fold]
        train = np.setdiff1d(np.arange(len(study_ids)), val)
        prior_oof[val] = class_prior(labels[train])
        for spec in specs:
            fdir = fold_dir(out, spec.name, fold)
            if not (fdir / "done.json").is_file():
                continue
            done = json.loads((fdir / "done.json").read_text())
            rows = [row_of[int(s)] for s in done["val_ids"]]
            oof[np.ix_(rows, spec.target_index)] = np.load(fdir / "val_probs.npy")
            per_model.setdefault(spec.name, {})[fold] = done["best_score"]
            counts = left_out.setdefault(spec.name, {"val": 0, "train": 0})
            for part in counts:  # summed over folds
                counts[part] += len(done.get("left_out", {}).get(part, []))
            covered[val] = True
    oof = np.where(np.isnan(oof), prior_oof, oof)  # left out, or a model not trained: the prior
    ids = [s for s, c in zip(study_ids, covered, strict=True) if c]
    solution = solution_from_labels(ids, labels[covered])
    submission = submission_from_probs(ids, oof[covered])
    prior_submission = submission_from_probs(ids, prior_oof[covered])
    write_csv(out / "oof_solution.csv", solution)
    write_csv(out / "oof_submission.csv", submission)
    terms = score_terms(solution, submission)
    prior_terms = score_terms(solution, prior_submission)
    pooled = pooled_weighted_ce(torch.from_numpy(oof[covered]), torch.from_numpy(labels[covered]))
    return {
        **terms,
        "pooled_weighted_ce": pooled,
        "prior_score": prior_terms["score"],
        "prior_terms": prior_terms,
        "level_terms": level_terms(solution, submission),
        "prior_level_terms": level_terms(solution, prior_submission),
        "studies": len(ids),
        "folds": done_folds,
        "fold_scores": per_model,
        "left_out": left_out,
    }


def write_report(
    out: Path,
    specs: list[ModelSpec],
    folds: list[np.ndarray],
    done_folds: list[int],
    study_ids: list[int],
    labels: np.ndarray,
) -> dict:
    metrics = collect_metrics(out, specs, done_folds)
    write_csv(out / "metrics.csv", metrics)
    if len(metrics):
        plot_curves(metrics, out / "curves.png")
    cv = out_of_fold(out, specs, folds, done_folds, study_ids, labels)
    write_json(out / "cv.json", cv)
    return cv
