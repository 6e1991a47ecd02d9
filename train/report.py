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
from zoo.crops import CropUnavailable, canal_error, decode, split_side
from zoo.ensemble import PRIOR_ROWS_FILE, write_prior_rows
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
from zoo.stages import StageData, localiser_oof


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
        for spec in (s for s in specs if s.targets):  # localisers grade nothing
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
    predicted = ~np.isnan(oof).any(axis=-1)
    oof = np.where(np.isnan(oof), prior_oof, oof)  # left out, or a model not trained: the prior
    ids = [s for s, c in zip(study_ids, covered, strict=True) if c]
    write_prior_rows(out / PRIOR_ROWS_FILE, ids, predicted[covered])  # for `zoo ensemble`
    solution = solution_from_labels(ids, labels[covered])
    submission = submission_from_probs(ids, oof[covered])
    prior_submission = submission_from_probs(ids, prior_oof[covered])
    write_csv(out / "oof_solution.csv", solution)
    write_csv(out / "oof_submission.csv", submission)
    fold_of = {int(study_ids[i]): fold for fold in done_folds for i in folds[fold]}
    write_csv(  # what `zoo ensemble` and `zoo calibrate` cross-fit on
        out / "oof_folds.csv",
        pd.DataFrame({"study_id": ids, "fold": [fold_of[s] for s in ids]}),
    )
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


def localisation(out: Path, specs: list[ModelSpec], done_folds: list[int], ctx: StageData) -> dict:
    """Out-of-fold error of every localiser against the label coordinates: per level, the
    median distance in cache pixels and in millimetres, and the median slice error."""
    report = {}
    for spec in (s for s in specs if s.kind == "localiser"):
        series, rows = spec.plan.series_types[0], {}
        for study, output in localiser_oof(out, spec.name, done_folds):
            view = ctx.views(study)[series]
            truth, size = ctx.target(spec, study), ctx.cache_size
            mm = view.mm_per_pixel() if any(p.get("world") for p in view.picked) else np.nan
            for k, point in enumerate(spec.points):
                d = np.hypot(*((output[2 * k : 2 * k + 2] - truth[2 * k : 2 * k + 2]) * size))
                if np.isfinite(d):
                    rows.setdefault(split_side(point)[1], []).append((d, d * mm))
            for k, name in enumerate(spec.slice_points):
                j = 2 * len(spec.points) + k
                e = abs(output[j] - truth[j]) * (view.count - 1)
                if np.isfinite(e):
                    rows.setdefault(f"{name}_slice", []).append((e, np.nan))
        report[spec.name] = {
            key: (
                {"median_slices": round(float(np.median([e for e, _ in v])), 3), "n": len(v)}
                if key.endswith("_slice")
                else {
                    "median_px": round(float(np.median([e for e, _ in v])), 3),
                    "median_mm": round(float(np.nanmedian([m for _, m in v])), 3),
                    "n": len(v),
                }
            )
            for key, v in rows.items()
        }
    return report


def canal_localisation(
    out: Path, specs: list[ModelSpec], done_folds: list[int], ctx: StageData
) -> dict:
    """The geometric axial windows (no axial localiser) against the labelled subarticular
    points, placed from stage 1's out-of-fold level points: per level, the median distance in
    mm, the share of points inside the crop window and of label slices among the cropped ones."""
    report = {}
    for spec in (s for s in specs if s.crop is not None and s.crop.centre == "canal"):
        localiser, rows = ctx.specs[spec.crop.localiser], {}
        series = localiser.plan.series_types[0]
        for study, output in localiser_oof(out, localiser.name, done_folds):
            views = ctx.views(study)
            if not {series, spec.crop.source} <= set(views):
                continue
            located = decode(localiser, output, ctx.cache_size, views[series].count)
            try:
                errors = canal_error(spec, views, located, ctx.label_rows(study, spec.crop.source))
            except CropUnavailable:
                continue
            for level, mm, inside, slice_hit in errors:
                rows.setdefault(level, []).append((mm, inside, slice_hit))
        report[spec.name] = {
            level: {
                "median_mm": round(float(np.median([r[0] for r in v])), 3),
                "inside_window": round(float(np.mean([r[1] for r in v])), 3),
                "slice_cropped": round(float(np.mean([r[2] for r in v])), 3),
                "n": len(v),
            }
            for level, v in sorted(rows.items())
        }
    return report


def write_report(
    out: Path,
    specs: list[ModelSpec],
    folds: list[np.ndarray],
    done_folds: list[int],
    study_ids: list[int],
    labels: np.ndarray,
    ctx: StageData,
) -> dict:
    metrics = collect_metrics(out, specs, done_folds)
    write_csv(out / "metrics.csv", metrics)
    if len(metrics):
        plot_curves(metrics, out / "curves.png")
    cv = out_of_fold(out, specs, folds, done_folds, study_ids, labels)
    located = localisation(out, specs, done_folds, ctx)
    located.update(canal_localisation(out, specs, done_folds, ctx))
    if located:  # two stages: the crops of stage 2 were cut at stage 1's out-of-fold points
        cv["localisation"] = located
        cv["stages"] = {
            "1 localisation": "out-of-fold error per level, in localisation",
            "2 classification": "the official metric above, on crops of stage-1 OOF points",
        }
    write_json(out / "cv.json", cv)
    return cv
