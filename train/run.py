"""`zoo train`: prepare (or reuse) the cache, train every model on every chosen fold, report."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import torch
import torch.distributed as dist

from train.config import TrainConfig
from train.folds import kfold, stratified_kfold
from train.loop import Runtime, setup_runtime, train_fold
from train.report import write_report
from zoo.competition import encode_labels, load_competition
from zoo.constants import TARGETS
from zoo.errors import ZooError
from zoo.io import write_json
from zoo.metric import class_prior

log = logging.getLogger(__name__)


def ensure_cache(cfg: TrainConfig, rt: Runtime) -> tuple[Path, int]:
    """The PNG cache to read: --cache, else RUN/cache, prepared (or finished) by rank 0."""
    from zoo.prepare import prepare

    cache = Path(cfg.cache) if cfg.cache else Path(cfg.out) / "cache"
    specs = cfg.specs()
    settings = {"size": max(s.plan.size for s in specs), "policy": specs[0].plan.policy}
    if (cache / "cache.json").is_file():
        made = json.loads((cache / "cache.json").read_text())
        settings = {"size": made["size"], "policy": made["policy"]}
        if made["policy"] != specs[0].plan.policy:
            log.warning(
                "cache %s uses slice policy %r but %s was designed for %r",
                cache,
                made["policy"],
                cfg.variant,
                specs[0].plan.policy,
            )
    if rt.is_main:
        summary = prepare(Path(cfg.data), cache, workers=max(1, cfg.workers), **settings)
        print(summary)
    if rt.world > 1:
        dist.barrier()
    return cache, settings["size"]


def resolve_config(cfg: TrainConfig, resume: bool) -> TrainConfig:
    """A fresh run refuses to overwrite one; --resume continues with the saved config."""
    saved = Path(cfg.out) / "config.json"
    if resume:
        if not saved.is_file():
            raise ZooError(f"--resume: no run to resume in {cfg.out} (config.json missing)")
        fields = json.loads(saved.read_text())["train"]
        return TrainConfig(**fields)
    if saved.is_file():
        raise ZooError(f"{cfg.out} already holds a run; pass --resume or choose another --out")
    # Absolute, so export and bench find the data and cache from any working directory.
    cfg.data = str(Path(cfg.data).resolve())
    cfg.cache = str(Path(cfg.cache).resolve()) if cfg.cache else None
    return cfg


def run_training(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train and report; returns cv.json's content."""
    start = time.perf_counter()
    rt = setup_runtime(cfg.device, cfg.amp)
    cfg = resolve_config(cfg, resume)
    out = Path(cfg.out)
    data = load_competition(Path(cfg.data), "train")
    labels, study_ids = encode_labels(data.labels), data.study_ids
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
    specs = cfg.specs()
    for spec in specs:
        for fold in cfg.folds:
            train_fold(cfg, spec, fold, study_ids, labels, folds, cache, cache_size, rt)
    cv = {}
    if rt.is_main:
        cv = write_report(out, specs, folds, cfg.folds, study_ids, labels)
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
        f"  run: {out}  (cv.json, oof_submission.csv, metrics.csv, curves.png)",
    ]
    return "\n".join(lines)
