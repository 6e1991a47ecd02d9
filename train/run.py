"""`zoo train`: prepare (or reuse) the cache, train every model on every chosen fold, report."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from train.config import TrainConfig
from train.folds import kfold, stratified_kfold
from train.loop import Runtime, setup_runtime, train_fold
from train.report import write_report
from zoo.cache import prepared_settings, usable_series
from zoo.competition import encode_labels, load_competition
from zoo.constants import NOTEBOOK_DROPPED_STUDIES, TARGETS
from zoo.errors import ZooError
from zoo.io import write_json
from zoo.locations import default_cache
from zoo.metric import class_prior
from zoo.stages import StageData

log = logging.getLogger(__name__)


def resolve_inputs(cfg: TrainConfig) -> TrainConfig:
    """The data, cache and slice policy a fresh run trains with, recorded in config.json (the
    manifest copies the policy, so `zoo predict` picks slices the same way).

    Policy: --policy, else the variant's. Cache: --cache, else the one beside the runs for this
    data, policy and size (shared by later runs). An existing cache must have been prepared
    with the policy."""
    designed = cfg.variant_obj().models[0].plan.policy
    chosen = cfg.policy or designed
    data = Path(cfg.data).resolve()  # absolute: export and bench run from anywhere
    size = max(s.plan.size for s in dataclasses.replace(cfg, policy=chosen).specs())
    cache = (
        Path(cfg.cache)
        if cfg.cache
        else default_cache(Path(cfg.out).parent, data, chosen, size, cfg.cache_layout)
    )
    made = getattr(prepared_settings(cache), "policy", chosen)
    if made != chosen:
        raise ZooError(
            f"slice policy mismatch: --policy {cfg.policy or '(not given)'}, cache {cache} "
            f"prepared with {made!r}, variant {cfg.variant} designed for {designed!r}; "
            f"pass --policy {made} to train on this cache, or another --cache"
        )
    return dataclasses.replace(cfg, data=str(data), cache=str(cache.resolve()), policy=chosen)


def ensure_cache(cfg: TrainConfig, rt: Runtime) -> tuple[Path, int]:
    """The cache to read: --cache, else the default one, prepared (or finished) by rank 0."""
    from zoo.prepare import prepare

    cache = Path(cfg.cache)
    made = prepared_settings(cache)
    size = made.size if made else max(s.plan.size for s in cfg.specs())
    if rt.is_main:
        layout = made.layout if made else cfg.cache_layout
        summary = prepare(
            Path(cfg.data), cache, size, max(1, cfg.workers), cfg.policy, layout=layout
        )
        print(summary)
    if rt.world > 1:
        dist.barrier()
    return cache, size


# Where and how fast a run trains, not what it trains: --resume may change these.
FREE_ON_RESUME = ("device", "amp", "workers", "cache_layout")


def resume_config(saved: TrainConfig, changes: dict) -> TrainConfig:
    """The saved config with the flags given to --resume: --folds adds folds (said so), the
    free ones apply, any other change is an error naming the flag."""
    for key, value in changes.items():
        old = getattr(saved, key)
        if key in ("data", "cache") and value is not None:
            value = str(Path(value).resolve())
        if value == old or key in FREE_ON_RESUME:
            saved = dataclasses.replace(saved, **{key: value})
        elif key == "folds":
            merged = sorted(set(old) | set(value))
            print(f"--resume: folds {old} of the saved run, now {merged}")
            saved = dataclasses.replace(saved, folds=merged)
        else:
            flag = "--" + key.replace("_", "-")
            raise ZooError(
                f"{flag} {value}: the run in {saved.out} was started with {old}; --resume "
                "continues it unchanged (drop the flag, or start a new run with another --out)"
            )
    return saved


def resolve_config(cfg: TrainConfig, resume: bool, changes: dict | None = None) -> TrainConfig:
    """A fresh run refuses to overwrite one; --resume continues with the saved config, with
    only the `changes` (flags the user gave) that cannot change what is trained."""
    saved = Path(cfg.out) / "config.json"
    if resume:
        if not saved.is_file():
            raise ZooError(f"--resume: no run to resume in {cfg.out} (config.json missing)")
        old = TrainConfig(**json.loads(saved.read_text())["train"])
        if old.variant != cfg.variant:
            raise ZooError(f"--resume: {cfg.out} holds a {old.variant} run, not {cfg.variant}")
        # The run lives where it is now: a copied or moved run folder resumes in place.
        return resume_config(dataclasses.replace(old, out=str(cfg.out)), changes or {})
    if saved.is_file():
        raise ZooError(f"{cfg.out} already holds a run; pass --resume or choose another --out")
    return resolve_inputs(cfg)


def training_studies(data_labels) -> tuple[list[int], np.ndarray]:
    """Study ids and encoded labels the folds are cut from: train.csv without the studies the
    notebooks dropped before splitting, so fold k is the notebooks' fold k."""
    labels, study_ids = encode_labels(data_labels), [int(s) for s in data_labels["study_id"]]
    keep = [i for i, s in enumerate(study_ids) if s not in NOTEBOOK_DROPPED_STUDIES]
    if len(keep) < len(study_ids):
        log.warning(
            "%d studies dropped before the fold split, as the notebooks did: %s",
            len(study_ids) - len(keep),
            sorted(set(study_ids) & set(NOTEBOOK_DROPPED_STUDIES)),
        )
    return [study_ids[i] for i in keep], labels[keep]


def run_training(cfg: TrainConfig, resume: bool = False, changes: dict | None = None) -> dict:
    """Train and report; returns cv.json's content. `changes`: the flags given with --resume."""
    start = time.perf_counter()
    cfg = resolve_config(cfg, resume, changes)
    rt = setup_runtime(cfg.device, cfg.amp)
    out = Path(cfg.out)
    data = load_competition(Path(cfg.data), "train")
    study_ids, labels = training_studies(data.labels)
    if len(study_ids) < cfg.n_folds:
        raise ZooError(f"{cfg.data}: {len(study_ids)} studies cannot make {cfg.n_folds} folds")
    split = stratified_kfold if cfg.stratify else kfold
    folds = split(labels if cfg.stratify else len(study_ids), cfg.n_folds, cfg.fold_seed)
    if rt.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(
            out / "config.json",
            {
                "variant": cfg.variant,
                "train": dataclasses.asdict(cfg),
                "models": [dataclasses.asdict(s) for s in cfg.specs()],
                "versions": {"torch": torch.__version__, "zoo": __import__("zoo").__version__},
            },
        )
        write_json(
            out / "prior.json",
            {"targets": list(TARGETS), "prior": class_prior(labels).round(6).tolist()},
        )
    cache, cache_size = ensure_cache(cfg, rt)
    usable = usable_series(cache)
    specs = cfg.specs()  # every stage-1 model before stage 2: crops need its out-of-fold points
    by_name = {spec.name: spec for spec in specs}
    for spec in specs:
        for fold in cfg.folds:
            ctx = StageData(
                out, fold, cache, cache_size, usable, data.coordinates, by_name, cfg.aug, cfg.seed
            )
            train_fold(cfg, spec, fold, study_ids, labels, folds, ctx, rt)
    cv = {}
    if rt.is_main:
        ctx = StageData(out, 0, cache, cache_size, usable, data.coordinates, by_name)
        cv = write_report(out, specs, folds, cfg.folds, study_ids, labels, ctx)
        cv["seconds"] = round(time.perf_counter() - start, 1)
        write_json(out / "cv.json", cv)
    if rt.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return cv


def format_summary(cv: dict, out: Path) -> str:
    lines = [
        f"CV on {cv['studies']} studies (folds {cv['folds']}), official metric, lower is better:",
        "  "
        + "  ".join(
            f"{k} {cv[k]:.4f}" for k in ("spinal", "foraminal", "subarticular", "any_severe_spinal")
        ),
        f"  score {cv['score']:.4f}   class prior {cv['prior_score']:.4f}   "
        f"pooled weighted CE {cv['pooled_weighted_ce']:.4f}",
        "  per level (model / class prior):",
        *(
            f"    {group:<13}"
            + "  ".join(
                f"{lv} {loss:.3f}/{cv['prior_level_terms'][group][lv]:.3f}"
                for lv, loss in levels.items()
            )
            for group, levels in cv["level_terms"].items()
        ),
        f"  run: {out}  (cv.json, oof_submission.csv, metrics.csv, curves.png)",
    ]
    for name, levels in cv.get("localisation", {}).items():
        lines.insert(-1, f"  {localisation_line(name, levels)}")
    left = {m: c for m, c in cv.get("left_out", {}).items() if c["val"] or c["train"]}
    if left:
        lines.insert(
            -1,
            "  left out (no usable series; OOF takes the prior): "
            + ", ".join(f"{m} {c['val']} val / {c['train']} train" for m, c in left.items()),
        )
    return "\n".join(lines)


def localisation_line(name: str, levels: dict) -> str:
    """One model's out-of-fold localisation: a localiser's point and slice errors, or how the
    geometric axial windows of a crop model sit on the labelled points."""

    def cell(key: str, v: dict) -> str:
        if "median_px" in v:
            return f"{key} {v['median_px']:.1f}px/{v['median_mm']:.1f}mm"
        if "inside_window" in v:
            return (
                f"{key} {v['median_mm']:.1f}mm in {v['inside_window']:.0%} "
                f"(slice cropped {v['slice_cropped']:.0%})"
            )
        return f"{key} {v['median_slices']:.2f}"

    geometric = any("inside_window" in v for v in levels.values())
    title = (
        f"stage 1 {name} (median OOF error)"
        if not geometric
        else f"axial windows of {name} (geometry from stage-1 OOF; label inside the window)"
    )
    return f"{title}: " + "  ".join(cell(k, v) for k, v in levels.items())
