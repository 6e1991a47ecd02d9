"""The training loop: folds x per-series models, each fold's best epoch chosen by the official
metric on that fold. Short enough to read in one sitting; config is a plain `TrainConfig`.

RUN/
  config.json                      the resolved config
  prior.json                       training-set label prior (the kernel falls back to it)
  <model>/fold<k>/last.pt          resumable state, rewritten atomically every epoch
  <model>/fold<k>/best.pt          best weights (state dict; load with weights_only=True)
  <model>/fold<k>/done.json        written when the fold has finished: validation studies used
                                   and those left out (no series for this model)
  metrics.csv, curves.png, oof_submission.csv, oof_solution.csv, cv.json
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from train.config import TrainConfig
from train.loss import pooled_weighted_ce
from train.schedule import cosine_with_warmup
from train.tasks import task_for
from zoo.environment import amp_dtype, resolve_device
from zoo.errors import ZooError
from zoo.io import atomic_write, write_json, write_npy
from zoo.models import build_model
from zoo.registry import ModelSpec
from zoo.runinfo import fold_dir
from zoo.stages import StageData

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Where this process trains: device, mixed precision, and its place among DDP ranks."""

    device: torch.device
    amp_dtype: torch.dtype | None
    rank: int = 0
    world: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_runtime(device: str = "auto", amp: str = "auto") -> Runtime:
    """Pick the device and precision; join the process group under torchrun."""
    world, rank = int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("RANK", 0))
    cuda = resolve_device(device) == "cuda"
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", 0))
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Runtime(dev, amp_dtype(amp, dev.type), rank, world)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_torch(path: Path, obj: dict) -> None:
    atomic_write(path, lambda p: torch.save(obj, p))


def make_loader(dataset, batch_size: int, train: bool, cfg: TrainConfig, rt: Runtime, seed: int):
    sampler = None
    if train and rt.world > 1:
        sampler = DistributedSampler(dataset, rt.world, rt.rank, shuffle=True, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train and sampler is None,
        sampler=sampler,
        drop_last=train and len(dataset) > batch_size,
        num_workers=cfg.workers,
        pin_memory=rt.device.type == "cuda",
        generator=generator,
        persistent_workers=cfg.workers > 0,
    )


def train_one_epoch(
    model, loader, optimizer, scheduler, scaler, cfg: TrainConfig, rt: Runtime, desc: str, loss_fn
) -> float:
    model.train()
    total, batches = 0.0, 0
    optimizer.zero_grad(set_to_none=True)
    bar = tqdm(loader, desc=desc, leave=False, disable=not rt.is_main)
    for step, (x, y) in enumerate(bar):
        x, y = x.to(rt.device, non_blocking=True), y.to(rt.device, non_blocking=True)
        with torch.autocast(rt.device.type, dtype=rt.amp_dtype, enabled=rt.amp_dtype is not None):
            loss = loss_fn(model(x), y)
        scaler.scale(loss / cfg.grad_accum).backward()
        if (step + 1) % cfg.grad_accum == 0 or step + 1 == len(loader):
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
        total, batches = total + loss.item(), batches + 1
        bar.set_postfix(loss=f"{total / batches:.4f}")
    return total / max(1, batches)


@torch.no_grad()
def predict(model, loader, rt: Runtime) -> tuple[np.ndarray, np.ndarray]:
    """Raw outputs (N, outputs) in float32 and the targets (N, ...) of a validation loader."""
    model.eval()
    outputs, targets = [], []
    for x, y in loader:
        with torch.autocast(rt.device.type, dtype=rt.amp_dtype, enabled=rt.amp_dtype is not None):
            outputs.append(model(x.to(rt.device)).float().cpu())
        targets.append(y)
    return torch.cat(outputs).numpy(), torch.cat(targets).numpy()


def _load_state(path: Path, model, optimizer, scheduler, scaler) -> dict:
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    return state["progress"]


def split_by_input(
    task, index: np.ndarray, ids: np.ndarray, train: bool
) -> tuple[np.ndarray, np.ndarray]:
    """(studies the model has an input for, studies left out): a study without the model's
    series (or, two-stage, its points) is neither trained nor validated on black images; at
    test time it gets the prior."""
    has = np.array([task.has_input(int(ids[i]), train) for i in index], bool)
    return index[has], index[~has]


def train_fold(
    cfg: TrainConfig,
    spec: ModelSpec,
    fold: int,
    study_ids: list[int],
    labels: np.ndarray,
    folds: list[np.ndarray],
    ctx: StageData,
    rt: Runtime,
) -> dict:
    """Train one model on one fold; returns (and writes) its done record."""
    out = fold_dir(Path(cfg.out), spec.name, fold)
    if (out / "done.json").is_file():
        return json.loads((out / "done.json").read_text())
    task = task_for(spec, ctx)
    ids = np.asarray(study_ids)
    val_idx, val_out = split_by_input(task, folds[fold], ids, train=False)
    train_idx, train_out = split_by_input(
        task, np.setdiff1d(np.arange(len(study_ids)), folds[fold]), ids, train=True
    )
    if rt.is_main and (len(val_out) or len(train_out)):
        log.warning(
            "%s fold %d: %d training and %d validation studies left out: no usable %s%s",
            spec.name,
            fold,
            len(train_out),
            len(val_out),
            " or ".join(spec.plan.series_types),
            "" if spec.kind == "series" else " or no points",
        )
    if not len(train_idx) or not len(val_idx):
        raise ZooError(f"{spec.name} fold {fold}: no study has a usable {spec.plan.series_types}")

    def dataset(index: np.ndarray, train: bool):
        return task.dataset(ids[index].tolist(), labels[index], train)

    train_set, val_set = dataset(train_idx, True), dataset(val_idx, False)
    val_loader = make_loader(val_set, cfg.batch_size, False, cfg, rt, cfg.seed)

    seed_everything(cfg.seed + 1000 * fold)
    model = build_model(spec, cfg.weights, quiet=not rt.is_main).to(rt.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    train_batches = max(1, len(train_set) // (cfg.batch_size * rt.world))
    steps = math.ceil(train_batches / cfg.grad_accum)
    scheduler = cosine_with_warmup(
        optimizer, int(cfg.warmup_epochs * steps), cfg.epochs * steps, min_lr=cfg.min_lr
    )
    scaler = torch.amp.GradScaler(
        rt.device.type, init_scale=4096, enabled=rt.amp_dtype == torch.float16
    )
    progress = {
        "epoch": 0,
        "best_score": math.inf,
        "best_loss": math.inf,
        "best_epoch": -1,
        "bad_epochs": 0,
        "history": [],
    }
    if (out / "last.pt").is_file():
        progress = _load_state(out / "last.pt", model, optimizer, scheduler, scaler)
        if rt.is_main:
            log.warning("%s fold %d: resuming after epoch %d", spec.name, fold, progress["epoch"])
    net = DistributedDataParallel(model) if rt.world > 1 else model

    for epoch in range(progress["epoch"], cfg.epochs):
        if progress["bad_epochs"] >= cfg.patience:
            break
        start = time.perf_counter()
        epoch_seed = cfg.seed + 1000 * fold + epoch
        seed_everything(epoch_seed)
        train_set.epoch_seed = epoch_seed
        train_loader = make_loader(train_set, cfg.batch_size, True, cfg, rt, epoch_seed)
        train_loss = train_one_epoch(
            net,
            train_loader,
            optimizer,
            scheduler,
            scaler,
            cfg,
            rt,
            f"{spec.name} f{fold} e{epoch + 1}/{cfg.epochs}",
            task.loss,
        )
        outputs, y = predict(model, val_loader, rt)
        score, val_loss, kept = task.evaluate(ids[val_idx].tolist(), y, outputs)
        row = {
            "model": spec.name,
            "fold": fold,
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_wll": (
                pooled_weighted_ce(torch.from_numpy(kept), torch.from_numpy(y))
                if spec.targets
                else float("nan")
            ),
            "val_score": score,
            "seconds": round(time.perf_counter() - start, 2),
        }
        progress["history"].append(row)
        improved_score = score < progress["best_score"]
        improved_loss = val_loss < progress["best_loss"]
        if improved_score:
            progress.update(best_score=score, best_epoch=epoch + 1)
            if rt.is_main:
                save_torch(out / "best.pt", {"model": model.state_dict()})
                write_npy(out / task.outputs_file, kept)
        progress["best_loss"] = min(progress["best_loss"], val_loss)
        # The notebooks' patience: an epoch counts as bad when neither val loss nor metric improved.
        progress["bad_epochs"] = (
            0 if improved_score or improved_loss else progress["bad_epochs"] + 1
        )
        progress["epoch"] = epoch + 1
        if rt.is_main:
            tqdm.write(
                f"{spec.name} fold {fold} epoch {epoch + 1}: train {train_loss:.4f} "
                f"val {val_loss:.4f} score {score:.4f}" + (" *" if improved_score else "")
            )
            # last.pt before history.json: history never claims an epoch that cannot resume.
            save_torch(
                out / "last.pt",
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "progress": progress,
                },
            )
            write_json(out / "history.json", progress["history"])
        if rt.world > 1:
            dist.barrier()
    done = {
        "model": spec.name,
        "fold": fold,
        "best_score": progress["best_score"],
        "best_epoch": progress["best_epoch"],
        "epochs_run": progress["epoch"],
        "val_ids": ids[val_idx].tolist(),
        "left_out": {"train": ids[train_out].tolist(), "val": ids[val_out].tolist()},
        "history": progress["history"],
    }
    if rt.is_main:
        write_json(out / "done.json", done)
    if rt.world > 1:
        dist.barrier()
    return done
