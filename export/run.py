"""`zoo export`: every model and fold of a run, in every requested format, each verified.

For each (model, fold): load the best checkpoint, write the eager state dict, then for each
format export, reload in its own runtime and compare with eager PyTorch on that fold's
validation studies. A failure becomes a manifest row with its reason; the rest go on.
"""

from __future__ import annotations

import dataclasses
import logging
import platform
import shutil
import time
from pathlib import Path

import torch
from tqdm import tqdm

from export.formats import FORMATS, Format
from export.manifest import FORMAT_VERSION, artifact_entry, read_manifest, write_manifest
from export.parity import compare, run_batched, validation_batch
from zoo import runinfo
from zoo.errors import ZooError
from zoo.models import load_trained
from zoo.registry import ModelSpec
from zoo.runinfo import RunInfo, export_fold_dir, read_run

log = logging.getLogger(__name__)
NORMALISATION = {"mean": 0.5, "std": 0.5, "max_pixel_value": 255.0}


def library_versions() -> dict:
    versions = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("timm", "onnx", "onnxruntime", "tensorrt"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            versions[name] = None
    return versions


def model_entry(spec: ModelSpec, variant: str, cache_px: int) -> dict:
    """Everything a loader needs besides the files: the spec and how inputs are made."""
    return {
        "variant": variant,
        "backbone": spec.backbone,
        "head": spec.head,
        "spec": dataclasses.asdict(spec),
        "cache_size": cache_px,
        "input_shape": [spec.plan.in_chans, spec.plan.size, spec.plan.size],
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
    device: str,
) -> dict:
    """Export one format and describe it; never raises."""
    start = time.perf_counter()
    try:
        facts = fmt.impl().export(model, example, path, meta, options)
    except Exception as err:  # noqa: BLE001 - one format failing must not stop the others
        log.warning("%s export of %s failed: %s", fmt.name, path.parent, err)
        return {"status": "export_failed", "reason": f"{type(err).__name__}: {err}"}
    return {
        **artifact_entry(export_dir, path),
        **facts,
        "status": "exported",
        "export_seconds": round(time.perf_counter() - start, 2),
    }


def verify(
    fmt: Format, entry: dict, spec: ModelSpec, export_dir: Path, reference, batch, device: str
) -> dict:
    """Reload an exported artifact in its runtime and record parity with eager PyTorch."""
    x, labels, ids = batch
    try:
        runner = fmt.impl().load(export_dir / entry["path"], device, spec)
        parity = compare(
            reference, run_batched(runner, x), labels, ids, spec, entry.get("precision", "fp32")
        )
    except Exception as err:  # noqa: BLE001
        return {**entry, "status": "run_failed", "reason": f"{type(err).__name__}: {err}"}
    status = "ok" if parity["passed"] else "parity_failed"
    reason = (
        None
        if parity["passed"]
        else (
            f"max |dp| {parity['max_abs_prob_diff']:.2e}, |d score| {parity['score_diff']:.2e} "
            f"over tolerance {parity['tolerance']}"
        )
    )
    return {**entry, "status": status, "reason": reason, "parity": parity}


def export_fold(
    run: RunInfo,
    spec: ModelSpec,
    fold: int,
    formats: list[Format],
    export_dir: Path,
    options: dict,
    device: str,
) -> dict:
    out = export_fold_dir(run.root, spec.name, fold)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = run.fold_dir(spec, fold) / "best.pt"
    model = load_trained(spec, checkpoint)
    batch = validation_batch(
        spec, run.cache, run.cache_settings.size, Path(run.train["data"]), run.val_ids(spec, fold)
    )
    reference = run_batched(lambda x: model(torch.from_numpy(x)).detach().numpy(), batch[0])
    shutil.copyfile(checkpoint, out / "model.pt")
    entries = {
        "torch": {
            **artifact_entry(export_dir, out / "model.pt"),
            "status": "ok",
            "precision": "fp32",
        }
    }
    meta = {
        "variant": run.variant,
        "model": spec.name,
        "fold": str(fold),
        "input_shape": [spec.plan.in_chans, spec.plan.size, spec.plan.size],
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
        path = out / ("model" + fmt.suffix)
        if fmt.name == "tensorrt":
            path = out / fmt.impl().engine_name(options.get("half", False))
            options = {**options, "onnx_path": out / "model.onnx"}
        fmt_model = load_trained(spec, checkpoint).to(dev)
        entry = export_one(fmt, fmt_model, example.to(dev), path, export_dir, meta, options, dev)
        if entry["status"] == "exported":
            entry = verify(fmt, entry, spec, export_dir, reference, batch, dev)
        entries[fmt.name] = entry
    return entries


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
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    options = {"half": half, "opset": opset, "batch_max": batch_max, "dynamo": dynamo}
    # TensorRT builds from the ONNX file, so ONNX is exported first whenever TensorRT is asked.
    ordered = sorted(formats, key=lambda f: list(FORMATS).index(f.name))
    if any(f.name == "tensorrt" for f in ordered) and all(f.name != "onnx" for f in ordered):
        ordered.insert(0, FORMATS["onnx"])
    try:
        manifest = read_manifest(export_dir)
    except ZooError:  # the first export of this run
        if (export_dir / "manifest.json").exists():
            raise  # unreadable: never overwrite what an earlier export recorded
        manifest = {}
    manifest.update(
        format_version=FORMAT_VERSION,
        variant=run.variant,
        versions=library_versions(),
        export_options=options,
    )
    models = manifest.setdefault("models", {})
    jobs = [(spec, fold) for spec in run.specs for fold in run.finished_folds(spec)]
    for spec, fold in tqdm(jobs, desc="export", unit="fold"):
        entry = models.setdefault(
            spec.name, model_entry(spec, run.variant, run.cache_settings.size)
        )
        entry["folds"].setdefault(str(fold), {}).update(
            export_fold(run, spec, fold, ordered, export_dir, options, device)
        )
        write_manifest(export_dir, manifest)  # after each fold: an interruption loses little
    return manifest
