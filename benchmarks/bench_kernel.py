"""Seconds per study of `zoo predict` end to end (DICOM decode + every fold of every model),
and the share of it spent decoding, for the tiny_split and edgenext_split shapes on this CPU.

Models are random-init (weights do not change the cost) exported to ONNX and packaged like
`zoo package` does, so predict runs its real path: reader, DataLoader, runtime choice, runners.
With --workers 0 decoding and models run one after the other, which gives the split; the
workers run shows how much of the decoding the DataLoader hides behind the models.

    .venv/bin/python benchmarks/bench_kernel.py [--studies 6] [--size 256] [--folds 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from export import onnx as onnx_format
from export.manifest import artifact_entry, write_manifest
from export.run import model_entry
from kaggle_kernel.predict import predict
from zoo.constants import TARGETS
from zoo.io import write_json
from zoo.models import build_model
from zoo.registry import get_variant
from zoo.synth import make_synthetic_dataset


def package_random(variant: str, out: Path, folds: int, cache_size: int) -> None:
    """A package folder with random-init ONNX models, selected = onnx, plus a flat prior."""
    manifest = {"variant": variant, "models": {}}
    for spec in get_variant(variant).models:
        entry = model_entry(spec, variant, cache_size)
        model = build_model(spec, quiet=True).eval()
        for fold in range(folds):
            path = out / spec.name / f"fold{fold}" / "model.onnx"
            path.parent.mkdir(parents=True, exist_ok=True)
            example = torch.randn(2, spec.plan.in_chans, spec.plan.size, spec.plan.size)
            facts = onnx_format.export(model, example, path, {"variant": variant}, {})
            entry["folds"][str(fold)] = {
                "onnx": {**artifact_entry(out, path), **facts, "status": "ok"}
            }
        entry["selected"] = {"format": "onnx", "device": "cpu"}
        manifest["models"][spec.name] = entry
    write_manifest(out, manifest)
    write_json(
        out / "prior.json", {"targets": list(TARGETS), "prior": np.full((25, 3), 1 / 3).tolist()}
    )


def run_once(model_dir: Path, data: Path, workers: int) -> dict:
    summary = predict(
        model_dir, data, model_dir / "submission.csv", workers=workers, progress=False
    )
    return dataclasses.asdict(summary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=6, help="test studies")
    parser.add_argument("--size", type=int, default=256, help="DICOM pixels per side")
    parser.add_argument("--folds", type=int, default=1, help="folds per model (5 on Kaggle)")
    parser.add_argument("--workers", type=int, default=2, help="decode workers for run 2")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    root = Path(tempfile.mkdtemp(prefix="bench_kernel_"))
    try:
        data = root / "data"
        make_synthetic_dataset(
            data, studies=1, test_studies=args.studies, size=args.size, progress=False
        )
        print(
            f"{args.studies} synthetic test studies at {args.size} px, {args.folds} fold(s) "
            f"per model, ONNX Runtime on CPU ({torch.get_num_threads()} threads)\n"
        )
        print(
            f"{'variant':<16}{'workers':>8}{'s/study':>9}{'decode s':>10}{'model s':>9}"
            f"{'decode share':>14}"
        )
        for variant, cache_size in (("tiny_split", 128), ("edgenext_split", 512)):
            model_dir = root / variant
            package_random(variant, model_dir, args.folds, cache_size)
            for workers in (0, args.workers):
                start = time.perf_counter()
                s = run_once(model_dir, data, workers)
                per_study = (time.perf_counter() - start) / s["studies"]
                share = s["decode_seconds"] / (s["decode_seconds"] + s["model_seconds"])
                print(
                    f"{variant:<16}{workers:>8}{per_study:>9.2f}{s['decode_seconds']:>10.2f}"
                    f"{s['model_seconds']:>9.2f}{share:>13.0%}"
                )
        print(
            "\ndecode share = decode / (decode + models), both summed over studies; with "
            "workers > 0 decoding overlaps the models, so s/study drops below their sum."
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
