"""Training on the CPU: does tiny_split learn, and is its training step input-bound?

(a) synthesises a small competition dataset, prepares its PNG cache and trains tiny_split on
    fold 0 with `run_training`: the learning curve of each per-series model, then the fold's
    official score against the class-prior score (lower is better; the prior is what a model
    that learnt nothing scores).
(b) times the two halves of a training step separately, in alternating rounds of the same run:
    the cache reader alone (DataLoader over CacheDataset, validation transform, workers 0) and
    the model step alone (forward, weighted CE, backward, AdamW) of the axial model on random
    tensors of the same shape. reader/model > 1 means the reader outpaces the model, so
    training is compute-bound; < 1 means it is input-bound. Read the ratio, not the samples/s:
    other work may share the CPU.

(c) the two cache layouts side by side: the same studies prepared at --reader-size px (512,
    the default `zoo prepare` size) as PNGs and as npy arrays, and the samples/s of
    CacheDataset over each for edgenext_split's axial model (20 slices -> 224 px), with the
    validation transform and with training augmentation (same seeds); every tensor of the
    two must be identical.

    .venv/bin/python benchmarks/bench_train.py                # 60 studies, 20 epochs
    .venv/bin/python benchmarks/bench_train.py --json out.json
    .venv/bin/python benchmarks/bench_train.py --epochs 5 --studies 30
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from _common import load_note  # benchmarks/ is on sys.path when run as a script
from torch.utils.data import DataLoader

from export.bench import time_interleaved
from train.config import TrainConfig
from train.loss import weighted_ce
from train.run import run_training
from zoo.augment import build_transform
from zoo.cache import usable_series
from zoo.competition import encode_labels, load_competition
from zoo.data import CacheDataset
from zoo.environment import machine_facts
from zoo.io import write_json
from zoo.models import build_model
from zoo.prepare import prepare
from zoo.registry import ModelSpec, get_variant
from zoo.synth import make_synthetic_dataset

VARIANT = "tiny_split"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--studies", type=int, default=60, help="synthetic studies (default 60)")
    p.add_argument("--size", type=int, default=128, help="DICOM and cache size (default 128)")
    p.add_argument("--epochs", type=int, default=None, help="default: the variant's (20)")
    p.add_argument("--batch", type=int, default=8, help="batch for part (b) (default 8)")
    p.add_argument("--rounds", type=int, default=7, help="alternating rounds in (b) (default 7)")
    p.add_argument("--seed", type=int, default=0, help="synthetic dataset seed")
    p.add_argument("--reader-size", type=int, default=512, help="cache px for (c) (default 512)")
    p.add_argument("--json", type=Path, help="also write the figures and the summary here")
    return p.parse_args()


# --- (a) learning curve ----------------------------------------------------------------------


def train_fold0(data: Path, cache: Path, out: Path, epochs: int | None) -> dict:
    """tiny_split, fold 0, in this process (workers 0), on the prepared cache."""
    cfg = TrainConfig.for_variant(
        VARIANT, data, out, cache=str(cache), folds=[0], workers=0, epochs=epochs
    )
    # The loop prints a line per epoch: keep it as progress on stderr, the table below says it all.
    with contextlib.redirect_stdout(sys.stderr):
        return run_training(cfg)


def print_curves(metrics: pd.DataFrame) -> None:
    print(f"\n{'model':<18}{'epoch':>6}{'train_loss':>12}{'val_loss':>10}{'val_score':>11}{'s':>6}")
    for r in metrics.itertuples():
        print(
            f"{r.model:<18}{r.epoch:>6}{r.train_loss:>12.4f}{r.val_loss:>10.4f}"
            f"{r.val_score:>11.4f}{r.seconds:>6.1f}"
        )


# --- (b) reader against model step -----------------------------------------------------------


def axial_spec() -> ModelSpec:
    """The variant's widest input (20 channels): the heaviest read and the heaviest step."""
    return max(get_variant(VARIANT).models, key=lambda s: s.plan.in_chans)


def reader_round(loader: DataLoader) -> tuple[int, float]:
    """One pass over the cache: (samples, seconds)."""
    start, n = time.perf_counter(), 0
    for x, _ in loader:
        n += len(x)
    return n, time.perf_counter() - start


def model_round(model: torch.nn.Module, optimizer, x: torch.Tensor, y: torch.Tensor, steps: int):
    """`steps` training steps on fixed tensors: (samples, seconds)."""
    start = time.perf_counter()
    for _ in range(steps):
        loss = weighted_ce(model(x), y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return steps * len(x), time.perf_counter() - start


def axial_dataset(competition, cache: Path, spec: ModelSpec, transform, size: int) -> CacheDataset:
    """CacheDataset of the studies whose Axial T2 the cache holds usable."""
    usable = usable_series(cache)
    ids = [s for s in competition.study_ids if "Axial T2" in usable.get(s, set())]
    rows = [competition.study_ids.index(s) for s in ids]
    labels = encode_labels(competition.labels)[rows]
    return CacheDataset(cache, ids, labels, spec, transform, size, usable)


def reader_vs_model(
    data: Path, cache: Path, size: int, batch: int, rounds: int
) -> tuple[ModelSpec, dict[str, float]]:
    """Median samples/s of each, measured in alternating rounds of about equal sample counts."""
    spec = axial_spec()
    competition = load_competition(data, "train")
    transform = build_transform("none", spec.plan.size, train=False)
    dataset = axial_dataset(competition, cache, spec, transform, size)
    loader = DataLoader(dataset, batch_size=batch, num_workers=0)
    torch.manual_seed(0)
    model = build_model(spec, quiet=True).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch, spec.plan.in_chans, spec.plan.size, spec.plan.size)
    y = torch.randint(0, 3, (batch, len(spec.targets)))
    steps = max(1, len(dataset) // batch)
    model_round(model, optimizer, x, y, 2)  # warm-up: allocator, AdamW state
    reader_round(loader)  # warm-up: the page cache
    rates: dict[str, list[float]] = {"reader": [], "model step": []}
    for _ in range(rounds):
        n, s = reader_round(loader)
        rates["reader"].append(n / s)
        n, s = model_round(model, optimizer, x, y, steps)
        rates["model step"].append(n / s)
    return spec, {name: statistics.median(r) for name, r in rates.items()}


# --- (c) PNG against npy cache layout --------------------------------------------------------


def layout_datasets(data: Path, work: Path, size: int, augment: str) -> dict[str, CacheDataset]:
    """CacheDataset over the PNG and the npy cache of the same studies, at the same settings."""
    spec = next(m for m in get_variant("edgenext_split").models if m.name == "axial_t2")
    competition = load_competition(data, "train")
    datasets = {}
    for layout in ("png", "npy"):
        cache = work / f"cache_{layout}_{size}"
        if not (cache / "index.csv").is_file():
            prepare(data, cache, size, workers=2, progress=False, layout=layout)
        transform = build_transform(augment, spec.plan.size, train=augment != "none")
        datasets[layout] = axial_dataset(competition, cache, spec, transform, size)
        datasets[layout].epoch_seed = 1 if augment != "none" else None
    return datasets


def layout_rates(datasets: dict[str, CacheDataset], rounds: int) -> tuple[dict, bool]:
    """Median samples/s of each layout's reader in alternating rounds; whether every item was
    the same tensor in both."""
    items = range(len(datasets["png"]))
    identical = all(
        torch.equal(datasets["png"][i][0], datasets["npy"][i][0]) for i in items
    )  # also the warm-up: both caches are in the page cache now
    passes = {name: lambda _, d=d: [d[i] for i in items] for name, d in datasets.items()}
    ms = time_interleaved(passes, None, rounds, warmup=0)  # median ms of one pass over items
    return {name: len(items) / (t / 1000) for name, t in ms.items()}, identical


# --- main ------------------------------------------------------------------------------------


def main() -> None:
    args = parse_args()
    print(f"start: {load_note()}")
    logging.basicConfig(level=logging.ERROR)  # random-init warnings are expected here
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        work = Path(tmp)
        data, cache = work / "data", work / "cache"
        make_synthetic_dataset(data, args.studies, 0, args.seed, args.size, progress=False)
        prepared = prepare(data, cache, args.size, workers=2, progress=False)
        print(f"{prepared.studies} studies prepared at {args.size} px")
        cv = train_fold0(data, cache, work / "run", args.epochs)
        print_curves(pd.read_csv(work / "run" / "metrics.csv"))
        print(
            f"\nfold 0 score {cv['score']:.4f}  class prior {cv['prior_score']:.4f}  "
            f"(lower is better; {cv['seconds']:.0f} s in all)"
        )
        spec, rates = reader_vs_model(data, cache, args.size, args.batch, args.rounds)
        layouts = {}
        for augment in ("none", "seed0828"):
            datasets = layout_datasets(data, work, args.reader_size, augment)
            layouts[augment] = layout_rates(datasets, args.rounds)
    ratio = rates["reader"] / rates["model step"]
    print(
        f"\n{spec.name} ({spec.plan.in_chans} x {spec.plan.size} px, batch {args.batch}), "
        f"median of {args.rounds} alternating rounds:"
    )
    for name, rate in rates.items():
        print(f"  {name:<12}{rate:>9.1f} samples/s")
    verdict = "compute-bound" if ratio > 1 else "input-bound"
    print(
        f"\ncache layouts, edgenext_split axial_t2 (20 slices of {args.reader_size} px -> 224 px), "
        f"CacheDataset samples/s, median of {args.rounds} alternating rounds:"
    )
    speedups = {}
    for augment, (layout_rate, identical) in layouts.items():
        speedups[augment] = layout_rate["npy"] / layout_rate["png"]
        print(
            f"  transform {augment:<9} png {layout_rate['png']:>7.1f}  npy "
            f"{layout_rate['npy']:>7.1f}  npy/png {speedups[augment]:.1f}x  "
            f"identical tensors: {identical}"
        )
    summary = (
        f"score {cv['score']:.4f} vs prior {cv['prior_score']:.4f} "
        f"({cv['score'] / cv['prior_score']:.2f}x of prior); reader/model {ratio:.1f}x, "
        f"so training is {verdict} on this CPU; npy reader {speedups['none']:.1f}x the PNG "
        f"reader ({speedups['seed0828']:.1f}x with augmentation)"
    )
    print(f"\nend: {load_note()}")
    print(f"summary: {summary}")
    if args.json:
        write_json(
            args.json,
            {
                "script": "bench_train",
                "studies": args.studies,
                "machine": machine_facts(),
                "score": cv["score"],
                "prior_score": cv["prior_score"],
                "reader_vs_model": {**rates, "ratio": ratio},
                "layouts": {
                    augment: {**rate, "npy_over_png": rate["npy"] / rate["png"], "identical": same}
                    for augment, (rate, same) in layouts.items()
                },
                "summary": summary,
            },
        )


if __name__ == "__main__":
    main()
