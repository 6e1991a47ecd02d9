"""`zoo package`: a folder ready for `kaggle datasets create -p DIR`, plus DIR/kernel/ ready
for `kaggle kernels push -p DIR/kernel`.

DIR/dataset-metadata.json, manifest.json (only what is shipped), prior.json, the selected
format of every model plus its fallbacks (ONNX, TorchScript and the eager checkpoint; TensorRT
engines and timing caches with --formats all), and wheels/ with this project's wheel so the
kernel installs it with `pip install --no-index`.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import zoo
from export.manifest import read_manifest, verified_path, write_manifest
from zoo.errors import ZooError
from zoo.io import write_json

log = logging.getLogger(__name__)
COMPETITION = "rsna-2024-lumbar-spine-degenerative-classification"
FALLBACKS = ("onnx", "torchscript", "torch")


def project_root() -> Path | None:
    """The source tree this zoo was installed from (an editable or source checkout)."""
    root = Path(zoo.__file__).resolve().parents[1]
    return root if (root / "pyproject.toml").is_file() else None


def build_wheel(out: Path) -> list[Path]:
    root = project_root()
    if root is None:
        log.warning("zoo is not installed from a source tree: no wheel built; add one by hand")
        return []
    out.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(out),
            str(root),
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise ZooError(f"pip wheel failed for {root}: {result.stderr.strip().splitlines()[-1]}")
    return sorted(out.glob("zoo-*.whl"))


def shipped_formats(model: dict, which: str) -> set[str]:
    if which == "all":
        return {
            f
            for fold in model["folds"].values()
            for f, e in fold.items()
            if e.get("status") == "ok"
        }
    selected = (model.get("selected") or {}).get("format")
    return {f for f in (selected, *FALLBACKS) if f}


def copy_artifacts(export_dir: Path, manifest: dict, out: Path, which: str) -> dict:
    """Copy the shipped files (sha256 checked) and return the manifest that describes them."""
    shipped = copy.deepcopy(manifest)
    for model in shipped["models"].values():
        keep = shipped_formats(model, which)
        for fold in model["folds"].values():
            for fmt in list(fold):
                entry = fold[fmt]
                if fmt not in keep or entry.get("status") != "ok":
                    del fold[fmt]
                    continue
                src = verified_path(export_dir, entry)
                dst = out / entry["path"]
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                cache = src.parent / "timing.cache"
                if fmt in ("tensorrt", "onnx") and cache.is_file():
                    shutil.copyfile(cache, dst.parent / "timing.cache")
    return shipped


def package(
    run: Path,
    out: Path,
    which: str = "selected",
    title: str | None = None,
    dataset_id: str | None = None,
) -> dict:
    """Write the dataset folder and its kernel; returns a small summary."""
    run, out = Path(run), Path(out)
    export_dir = run / "export"
    manifest = read_manifest(export_dir)
    missing = [n for n, m in manifest["models"].items() if not m.get("selected")]
    if which == "selected" and missing:
        log.warning("no selected format for %s (run `zoo bench`): shipping the fallbacks", missing)
    if not (run / "prior.json").is_file():
        raise ZooError(f"{run / 'prior.json'} missing: the kernel needs the label prior")
    out.mkdir(parents=True, exist_ok=True)
    write_manifest(out, copy_artifacts(export_dir, manifest, out, which))
    shutil.copyfile(run / "prior.json", out / "prior.json")
    wheels = build_wheel(out / "wheels")
    user = os.environ.get("KAGGLE_USERNAME", "your-kaggle-username")
    slug = f"zoo-{manifest['variant'].replace('_', '-')}"
    dataset_id = dataset_id or f"{user}/{slug}"
    title = title or f"zoo {manifest['variant']} models"
    write_json(
        out / "dataset-metadata.json",
        {"title": title, "id": dataset_id, "licenses": [{"name": "CC0-1.0"}]},
    )
    write_kernel(out / "kernel", dataset_id, manifest["variant"])
    return {
        "out": str(out),
        "dataset_id": dataset_id,
        "wheels": [w.name for w in wheels],
        "bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
    }


def write_kernel(kernel_dir: Path, dataset_id: str, variant: str) -> None:
    kernel_dir.mkdir(parents=True, exist_ok=True)
    user, slug = dataset_id.split("/", 1)
    script = (Path(__file__).parent / "kernel.py").read_text()
    script = script.replace(
        'DATASET = "/kaggle/input/zoo-models"', f'DATASET = "/kaggle/input/{slug}"'
    )
    (kernel_dir / "kernel.py").write_text(script)
    write_json(
        kernel_dir / "kernel-metadata.json",
        {
            "id": f"{user}/{slug}-submission",
            "title": f"zoo {variant} submission",
            "code_file": "kernel.py",
            "language": "python",
            "kernel_type": "script",
            "is_private": True,
            "enable_gpu": True,
            "enable_internet": False,
            "dataset_sources": [dataset_id],
            "competition_sources": [COMPETITION],
            "kernel_sources": [],
        },
    )
