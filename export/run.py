"""`zoo export`: every model and fold of a run, in every requested format, each verified.

For each (model, fold): load the best checkpoint, write the eager state dict, then for each
format export, reload in its own runtime and compare with eager PyTorch on that fold's
validation studies. A failure becomes a manifest row with its reason; the rest go on.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from export.formats import FORMATS, Format
from export.manifest import FORMAT_VERSION, artifact_entry, read_manifest, write_manifest
from export.parity import compare, run_batched, validation_batch
from export.runner import prove, reference_batch
from zoo import runinfo
from zoo.environment import machine_facts, resolve_device
from zoo.errors import ZooError
from zoo.io import write_npy
from zoo.models import load_trained
from zoo.registry import ModelSpec
from zoo.runinfo import RunInfo, export_fold_dir, read_run

log = logging.getLogger(__name__)
NORMALISATION = {"mean": 0.5, "std": 0.5, "max_pixel_value": 255.0}
REFERENCE_INPUT = "reference_input.npy"  # per model: the input every runtime must reproduce


def model_entry(spec: ModelSpec, variant: str, cache_px: int) -> dict:
    """Everything a loader needs besides the files: the spec and how inputs are made."""
    return {
        "variant": variant,
        "backbone": spec.backbone,
        "head": spec.head,
        "spec": dataclasses.asdict(spec),
        "cache_size": cache_px,
        "input_shape": list(spec.input_shape),
        "normalisation": NORMALISATION,
        "labels": list(spec.targets),
        "plan": {
            "series_types": list(spec.plan.series_types),
            "slices": list(spec.plan.slices),
            "size": spec.plan.size,
            "policy": spec.plan.policy,
        },
        "folds": {},
    }


def export_one(
    fmt: Format,
    model,
    example,
    path: Path,
    export_dir: Path,
    meta: dict,
    options: dict,
) -> dict:
    """Export one format and describe it (its variants too); never raises."""
    start = time.perf_counter()
    try:
        facts = fmt.impl().export(model, example, path, meta, options)
    except Exception as err:  # noqa: BLE001 - one format failing must not stop the others
        log.warning("%s export of %s failed: %s", fmt.name, path.parent, err)
        return {"status": "export_failed", "reason": f"{type(err).__name__}: {err}"}
    variants = {
        name: {**artifact_entry(export_dir, Path(file)), "precision": name, "status": "exported"}
        for name, file in facts.pop("variants", {}).items()
    }
    entry = {
        **artifact_entry(export_dir, path),
        **facts,
        "status": "exported",
        "export_seconds": round(time.perf_counter() - start, 2),
    }
    return {**entry, "variants": variants} if variants else entry


def verify(
    fmt: Format,
    entry: dict,
    spec: ModelSpec,
    export_dir: Path,
    reference: np.ndarray,
    batch: tuple,
    proof: tuple[np.ndarray, np.ndarray],
    device: str,
) -> dict:
    """Reload an artifact (and each variant) in its runtime: parity with eager PyTorch on the
    fold's validation studies, and the kernel's proof on the reference input."""
    x, labels, ids = batch
    precision = entry.get("precision", "fp32")
    try:
        runner = fmt.impl().load(export_dir / entry["path"], device, spec, entry)
        parity = compare(reference, run_batched(runner, x), labels, ids, spec, precision)
        failed_proof = prove(runner, *proof, precision, spec.kind)
    except Exception as err:  # noqa: BLE001
        return {**entry, "status": "run_failed", "reason": f"{type(err).__name__}: {err}"}
    status, reason = "ok", None
    if not parity["passed"]:
        status, reason = (
            "parity_failed",
            (
                f"max |dp| {parity['max_abs_prob_diff']:.2e}, |d score| {parity['score_diff']:.2e} "
                f"over tolerance {parity['tolerance']}"
            ),
        )
    elif failed_proof:
        status, reason = "proof_failed", failed_proof
    variants = {
        name: verify(fmt, variant, spec, export_dir, reference, batch, proof, device)
        for name, variant in entry.get("variants", {}).items()
    }
    out = {**entry, "status": status, "reason": reason, "parity": parity}
    return {**out, "variants": variants} if variants else out


def artifact_name(fmt: Format, options: dict) -> str:
    """model<suffix>, unless the format names its file itself (TensorRT: by GPU and source)."""
    named = getattr(fmt.impl(), "artifact_name", None)
    return named(options) if named else "model" + fmt.suffix


def write_reference(export_dir: Path, spec: ModelSpec, x: np.ndarray) -> tuple[dict, np.ndarray]:
    """The model's reference input for the kernel's proof (the first validation study, uint8),
    written once per model; returns its manifest entry and the array."""
    path = export_dir / spec.name / REFERENCE_INPUT
    if not path.is_file():
        image = np.rint((x + 1.0) * 127.5).clip(0, 255).astype(np.uint8)  # undo normalise()
        write_npy(path, image)
    return artifact_entry(export_dir, path), np.load(path)


def export_fold(
    run: RunInfo,
    spec: ModelSpec,
    fold: int,
    formats: list[Format],
    export_dir: Path,
    options: dict,
    device: str,
) -> tuple[dict, dict]:
    """Every format of one fold; returns (its manifest entries, the model's reference entry)."""
    out = export_fold_dir(run.root, spec.name, fold)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = run.fold_dir(spec, fold) / "best.pt"
    model = load_trained(spec, checkpoint)
    batch = validation_batch(run, spec, fold)

    def eager(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    reference = run_batched(eager, batch[0])
    reference_entry, image = write_reference(export_dir, spec, batch[0][0])
    proof = (image, eager(reference_batch(image)))
    shutil.copyfile(checkpoint, out / "model.pt")
    entries = {
        "torch": {
            **artifact_entry(export_dir, out / "model.pt"),
            "status": "ok",
            "precision": "fp32",
            "reference_logits": proof[1].tolist(),
        }
    }
    meta = {
        "variant": run.variant,
        "model": spec.name,
        "fold": str(fold),
        "input_shape": list(spec.input_shape),
        "labels": list(spec.targets),
        "normalisation": NORMALISATION,
    }
    example = torch.from_numpy(batch[0][:2]).float()
    if len(example) < 2:  # a dynamic batch axis needs batch >= 2 when traced
        example = example.repeat(2, 1, 1, 1)
    for fmt in formats:
        dev = "cuda" if fmt.gpu_only or (device == "cuda" and fmt.name == "torchscript") else "cpu"
        reason = fmt.impl().unavailable(dev)
        if reason:
            entries[fmt.name] = {"status": "unavailable", "reason": reason}
            continue
        # A format may build on this fold's earlier artifacts (TensorRT on the ONNX).
        fmt_options = {**options, "export_dir": export_dir, "fold_entries": entries}
        path = out / artifact_name(fmt, fmt_options)
        fmt_model = load_trained(spec, checkpoint).to(dev)
        entry = export_one(fmt, fmt_model, example.to(dev), path, export_dir, meta, fmt_options)
        if entry["status"] == "exported":
            entry = verify(fmt, entry, spec, export_dir, reference, batch, proof, dev)
        entries[fmt.name] = entry
    return entries, reference_entry


def export_run(
    run_dir: Path,
    formats: list[Format],
    half: bool = False,
    opset: int | None = None,
    batch_max: int = 16,
    dynamo: bool = False,
    device: str = "auto",
) -> dict:
    """Export every finished fold of every model; returns the manifest."""
    run = read_run(run_dir)
    export_dir = runinfo.export_dir(run.root)
    device = resolve_device(device)
    options = {"half": half, "opset": opset, "batch_max": batch_max, "dynamo": dynamo}
    # A format built from another's artifact (TensorRT from the ONNX) brings it along, after.
    wanted = {f.name for f in formats} | {f.builds_from for f in formats if f.builds_from}
    ordered = [f for name, f in FORMATS.items() if name in wanted]
    try:
        manifest = read_manifest(export_dir)
    except ZooError:  # the first export of this run
        if (export_dir / "manifest.json").exists():
            raise  # unreadable: never overwrite what an earlier export recorded
        manifest = {}
    manifest.update(
        format_version=FORMAT_VERSION,
        variant=run.variant,
        exported_on=machine_facts(),
        export_options=options,
    )
    models = manifest.setdefault("models", {})
    jobs = [(spec, fold) for spec in run.specs for fold in run.finished_folds(spec)]
    cache_px = run.cache_settings.size
    for spec, fold in tqdm(jobs, desc="export", unit="fold"):
        entry = models.setdefault(spec.name, model_entry(spec, run.variant, cache_px))
        entries, entry["reference"] = export_fold(
            run, spec, fold, ordered, export_dir, options, device
        )
        entry["folds"].setdefault(str(fold), {}).update(entries)
        write_manifest(export_dir, manifest)  # after each fold: an interruption loses little
    for fmt in ordered:  # files a format shares between folds get their final sha256
        finalize = getattr(fmt.impl(), "finalize", None)
        for name in {spec.name for spec, _ in jobs} if finalize else ():
            finalize(export_dir, models[name])
    write_manifest(export_dir, manifest)
    return manifest
