"""Which runtime each model runs in: proven on this machine, then the fastest.

A runtime is trusted only after it has run the model's shipped reference input at batch 1 and
at the kernel's batch and reproduced eager PyTorch's logits (`export.runner.prove`): loading is
not proof (a TorchScript traced on the CPU loads on CUDA and fails on its first batch; ONNX
Runtime falls back to the CPU without a word).

--runtime auto: every runtime of the chain (`export.formats.CHAIN`, the manifest's `selected`
first) that is available here is built for the first fold, proven and timed for a few batches
at the kernel's batch; the fastest wins (`selected` wins near-ties, within 5 %), then its other
folds are built and proven. The table is logged. --runtime NAME: that runtime, then the chain.
A runtime that fails anywhere is logged with why, and the next one is tried.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from export.bench import time_runner
from export.formats import Format, chain_for, precision_of
from export.manifest import verified_path
from export.runner import KERNEL_BATCH, Runner, prove, reference_batch
from zoo.registry import ModelSpec
from zoo.runinfo import spec_from_dict

log = logging.getLogger(__name__)
NEAR_TIE = 1.05  # `selected` keeps its place unless another runtime is more than 5 % faster


@dataclass
class LoadedModel:
    name: str
    format: str
    reason: str
    runners: list[Runner]  # one per fold
    entry: dict  # the manifest's model entry
    spec: ModelSpec  # built from entry once, at load


class ModelRuntimes:
    """Builds and proves one model's runners from a package (or export) folder."""

    def __init__(self, entry: dict, base: Path, device: str, work: Path):
        self.entry, self.base, self.device, self.work = entry, base, device, work
        self.spec = spec_from_dict(entry["spec"])
        self.folds = sorted(entry["folds"], key=int)
        self.image = np.load(verified_path(base, entry["reference"]))

    def expected(self, fold: str) -> np.ndarray:
        return np.asarray(self.entry["folds"][fold]["torch"]["reference_logits"], np.float32)

    def proven(self, fmt: Format, fold: str) -> tuple[Runner, str]:
        """A runner for one fold that has passed the proof; raises with why not."""
        entries = self.entry["folds"][fold]
        runner, note = fmt.load_shipped(self.base, entries, self.spec, self.device, self.work)
        precision = precision_of(fmt, entries.get(fmt.artifact))
        failed = prove(runner, self.image, self.expected(fold), precision, self.spec.kind)
        if failed:
            raise RuntimeError(f"fold {fold} failed its first batches: {failed}")
        return runner, note

    def all_folds(
        self, fmt: Format, first: tuple[Runner, str] | None = None
    ) -> tuple[list[Runner], str]:
        """Every fold's proven runner (the first may be built already) and how it was made."""
        runners, note = ([first[0]], first[1]) if first else ([], "")
        for fold in self.folds[len(runners) :]:
            runner, note = self.proven(fmt, fold)
            runners.append(runner)
        return runners, note


def load_model(
    name: str,
    entry: dict,
    base: Path,
    runtime: str,
    device: str,
    work: Path,
    batch: int = KERNEL_BATCH,
) -> LoadedModel:
    """The proven runtime for every fold of one model; raises only if none is proven."""
    model = ModelRuntimes(entry, base, device, work)
    selected = (entry.get("selected") or {}).get("format")
    chain = chain_for(selected if runtime == "auto" else runtime)
    failures: dict[str, str] = {}
    available = []
    for fmt in chain:
        why = fmt.impl().unavailable(device)
        if why:
            failures[fmt.name] = why
        else:
            available.append(fmt)
    if runtime == "auto":
        order, first_runner, timings = time_candidates(model, available, batch, failures)
        log.info(
            "model %s on %s, ms per batch of %d: %s",
            name,
            device,
            batch,
            "; ".join(f"{k} {v}" for k, v in timings.items()),
        )
    else:
        order, first_runner = available, {}
    for fmt in order:
        try:
            runners, note = model.all_folds(fmt, first_runner.get(fmt.name))
        except Exception as err:  # noqa: BLE001 - the next runtime
            failures[fmt.name] = f"{type(err).__name__}: {err}"
            continue
        why = (
            "fastest proven here"
            if runtime == "auto"
            else (f"requested --runtime {runtime}" if fmt.name == runtime else "fallback")
        )
        skipped = [f"{k}: {v}" for k, v in failures.items()]
        reason = f"{why}; {note}; proven on the reference input" + (
            f" (not used: {'; '.join(skipped)})" if skipped else ""
        )
        return LoadedModel(name, fmt.name, reason, runners, entry, model.spec)
    raise RuntimeError(f"{name}: no runtime could be proven: {failures}")


def time_candidates(
    model: ModelRuntimes, candidates: list[Format], batch: int, failures: dict[str, str]
) -> tuple[list[Format], dict[str, tuple[Runner, str]], dict[str, str]]:
    """Build, prove and time each candidate on the first fold, as `zoo bench` times them (one
    after another), so the kernel and the bench it re-checks measure alike; fastest first."""
    x = reference_batch(model.image, batch)
    measured, runners, timings = [], {}, {}
    selected = (model.entry.get("selected") or {}).get("format")
    for fmt in candidates:
        try:
            runner, note = model.proven(fmt, model.folds[0])
            ms = time_runner(runner, x, runs=5, warmup=2)[0]
        except Exception as err:  # noqa: BLE001 - not a candidate here
            failures[fmt.name] = f"{type(err).__name__}: {err}"
            timings[fmt.name] = f"failed ({failures[fmt.name][:120]})"
            continue
        measured.append((ms, fmt))
        runners[fmt.name] = (runner, note)
        timings[fmt.name] = f"{ms:.2f}"
    fastest = min((ms for ms, _ in measured), default=0.0)

    def rank(item: tuple[float, Format]) -> tuple[float, int]:
        ms, fmt = item
        near = fmt.name == selected and ms <= fastest * NEAR_TIE
        return (fastest if near else ms, 0 if fmt.name == selected else 1)

    return [fmt for _, fmt in sorted(measured, key=rank)], runners, timings
