"""RUN/export/manifest.json: every artifact with its sha256, status and parity figures.

The kernel reads only this file to decide what to load, and checks each artifact's sha256
before loading it. Paths are relative to the manifest, so the folder can be copied anywhere.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from zoo.errors import ZooError
from zoo.io import write_json

MANIFEST = "manifest.json"
FORMAT_VERSION = 2  # 2: reference inputs, variants, proofs; the kernel refuses older


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(export_dir: Path) -> dict:
    path = Path(export_dir) / MANIFEST
    if not path.is_file():
        raise ZooError(f"no manifest at {path}; run `zoo export` first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ZooError(f"{path}: not valid JSON ({err})") from None


def write_manifest(export_dir: Path, manifest: dict) -> None:
    write_json(Path(export_dir) / MANIFEST, manifest)


def artifact_entry(export_dir: Path, path: Path) -> dict:
    return {
        "path": str(path.relative_to(export_dir)),
        "sha256": sha256(path),
        "bytes": path.stat().st_size,
    }


def entry_files(entry: dict) -> list[dict]:
    """Every file an entry names ({path, sha256, ...}): its artifact, its variants', its
    weights file (OpenVINO's model.bin) and any file it builds with (a TensorRT timing cache),
    so a package can carry all of them."""
    files = [entry] if "path" in entry else []
    files += [v for v in entry.get("variants", {}).values() if "path" in v]
    files += [entry["weights"]] if isinstance(entry.get("weights"), dict) else []
    extra = entry.get("timing_cache")
    return files + ([extra] if isinstance(extra, dict) and "sha256" in extra else [])


def onnx_source(fold_entries: dict, precision: str, builder: str) -> dict:
    """The ONNX entry a runtime that builds from ONNX converts (the fp16 twin for fp16)."""
    onnx = fold_entries.get("onnx") or {}
    source = onnx.get("variants", {}).get("fp16") if precision == "fp16" else onnx
    if not source or source.get("status") != "ok":
        raise RuntimeError(f"{builder} builds from the {precision} ONNX, which is not ok here")
    return source


def verified_path(export_dir: Path, entry: dict) -> Path:
    """The artifact's path after checking it exists and its sha256 matches the manifest."""
    path = Path(export_dir) / entry["path"]
    if not path.is_file():
        raise ZooError(f"{path}: artifact missing")
    actual = sha256(path)
    if actual != entry["sha256"]:
        raise ZooError(
            f"{path}: sha256 {actual[:12]}... does not match the manifest "
            f"({entry['sha256'][:12]}...): corrupt or replaced"
        )
    return path
