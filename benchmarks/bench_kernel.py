"""Seconds per study of `zoo predict` end to end (DICOM decode + every fold of every model),
split into decoding, stage 1 (localise), cutting crops and classifying, for the one-stage
tiny_split and edgenext_split shapes, the two-stage two_stage_tiny shape, and an ensemble of
tiny_split and two_stage_tiny (one decode, both members, average and calibration) on this CPU:
what an ensemble member costs per study.

Models are random-init (weights do not change the cost) exported to ONNX and packaged like
`zoo package` does, so predict runs its real path: reader, DataLoader, runtime choice, runners.
With --workers 0 decoding and models run one after the other, which gives the split; the
workers run shows how much of the decoding the DataLoader hides behind the models.

    .venv/bin/python benchmarks/bench_kernel.py [--studies 6] [--size 256] [--folds 1]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from export import onnx as onnx_format
from export.manifest import FORMAT_VERSION, artifact_entry, write_manifest
from export.run import REFERENCE_INPUT, model_entry
from export.runner import reference_batch
from kaggle_kernel.predict import predict
from zoo.constants import TARGETS
from zoo.ensemble import ENSEMBLE_FILE
from zoo.io import write_json
from zoo.metric import GROUPS
from zoo.models import build_model
from zoo.registry import get_variant
from zoo.synth import make_synthetic_dataset

ENSEMBLE = "tiny_split+two_stage_tiny"  # both members, one shared decode, then the average


def package_random(variant: str, out: Path, folds: int, cache_size: int) -> None:
    """A package folder as `zoo package` writes it, of random-init models (the weights do not
    change the cost): the checkpoint, ONNX selected, a reference input with eager's outputs
    for the kernel's proof, and a flat prior."""
    manifest = {"format_version": FORMAT_VERSION, "variant": variant, "models": {}}
    rng = np.random.default_rng(0)
    for spec in get_variant(variant).models:
        entry = model_entry(spec, variant, cache_size)
        image = rng.integers(0, 256, size=spec.input_shape, dtype=np.uint8)
        reference = out / spec.name / REFERENCE_INPUT
        reference.parent.mkdir(parents=True, exist_ok=True)
        np.save(reference, image)
        entry["reference"] = artifact_entry(out, reference)
        for fold in range(folds):
            torch.manual_seed(fold)
            model = build_model(spec, quiet=True).eval()
            folder = out / spec.name / f"fold{fold}"
            folder.mkdir(parents=True, exist_ok=True)
            torch.save({"model": model.state_dict()}, folder / "model.pt")
            with torch.no_grad():
                logits = model(torch.from_numpy(reference_batch(image))).numpy()
            example = torch.from_numpy(reference_batch(image, 2))
            facts = onnx_format.export(model, example, folder / "model.onnx", {}, {})
            facts.pop("variants")
            entry["folds"][str(fold)] = {
                "torch": {
                    **artifact_entry(out, folder / "model.pt"),
                    "status": "ok",
                    "precision": "fp32",
                    "reference_logits": logits.tolist(),
                },
                "onnx": {**artifact_entry(out, folder / "model.onnx"), **facts, "status": "ok"},
            }
        entry["selected"] = {"format": "onnx", "device": "cpu"}
        manifest["models"][spec.name] = entry
    write_manifest(out, manifest)
    write_json(
        out / "prior.json", {"targets": list(TARGETS), "prior": np.full((25, 3), 1 / 3).tolist()}
    )


def package_ensemble(variants: tuple[str, ...], out: Path, folds: int, cache_size: int) -> None:
    """An ensemble package as `zoo package RUN RUN` writes it: each member in members/, equal
    weights and a calibration (so its cost is counted too)."""
    members = []
    for i, variant in enumerate(variants):
        folder = out / "members" / f"{i}-{variant}"
        package_random(variant, folder, folds, cache_size)
        members.append(
            {
                "name": variant,
                "variant": variant,
                "manifest": artifact_entry(out, folder / "manifest.json"),
                "prior": artifact_entry(out, folder / "prior.json"),
            }
        )
    calibration = {"temperature": dict.fromkeys(GROUPS, 0.9), "any_severe_scale": 1.25}
    write_json(
        out / ENSEMBLE_FILE,
        {
            "format_version": FORMAT_VERSION,
            "members": members,
            "weights": {g: [1 / len(variants)] * len(variants) for g in GROUPS},
            "calibration": calibration,
        },
    )


def run_once(model_dir: Path, data: Path, workers: int) -> dict:
    summary = predict(
        model_dir,
        data,
        model_dir / "submission.csv",
        runtime="onnx",
        workers=workers,
        progress=False,
    )
    return {"studies": summary.studies, "decode": summary.decode_seconds, **summary.stage_seconds}


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
            f"{'variant':<26}{'workers':>8}{'s/study':>9}{'decode':>8}{'localise':>10}"
            f"{'crops':>7}{'classify':>10}{'decode share':>14}"
        )
        for variant, cache_size in (
            ("tiny_split", 128),
            ("two_stage_tiny", 128),
            (ENSEMBLE, 128),
            ("edgenext_split", 512),
        ):
            model_dir = root / variant
            if variant == ENSEMBLE:
                package_ensemble(ENSEMBLE.split("+"), model_dir, args.folds, cache_size)
            else:
                package_random(variant, model_dir, args.folds, cache_size)
            for workers in (0, args.workers):
                start = time.perf_counter()
                s = run_once(model_dir, data, workers)
                n = s["studies"]
                per_study = (time.perf_counter() - start) / n
                models = s["localise"] + s["crops"] + s["classify"]
                share = s["decode"] / (s["decode"] + models)
                print(
                    f"{variant:<26}{workers:>8}{per_study:>9.2f}{s['decode'] / n:>8.2f}"
                    f"{s['localise'] / n:>10.3f}{s['crops'] / n:>7.3f}{s['classify'] / n:>10.3f}"
                    f"{share:>13.0%}"
                )
        print(
            "\nseconds per study; decode share = decode / (decode + models), both summed over "
            "studies; with workers > 0 decoding overlaps the models, so s/study drops below "
            "their sum."
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
