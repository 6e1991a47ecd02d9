"""`zoo package`: a folder for `kaggle datasets create -p DIR --dir-mode zip`, plus DIR/kernel/
for `kaggle kernels push -p DIR/kernel`.

DIR/dataset-metadata.json, manifest.json (only what is shipped, and any calibration),
prior.json, every model's reference input, the selected runtime's files plus what every
runtime of the kernel's chain is built from (`export.formats.SHIPPED`: ONNX with its fp16
twin, TorchScript, the checkpoint), and wheels/ with this project's wheel and any extra wheels
from --wheelhouse (onnxruntime-gpu, tensorrt, pylibjpeg...), which the kernel installs with
`pip install --no-index`. An ensemble (several runs, or a `zoo ensemble` folder) puts each
run's files in DIR/members/I-RUN/ and writes DIR/ensemble.json: the weights, the calibration,
each member's manifest and prior by sha256.

The Kaggle CLI (2.2.5) uploads only the top level of DIR unless `--dir-mode zip|tar` is given;
ids are OWNER/SLUG with a 6-50 character slug, titles 6-50 characters, and a kernel's slug is
its title lowercased with dashes. The folder is written beside DIR and renamed into place, so a
failed `zoo package` leaves nothing half-written.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import zoo
from export.formats import SHIPPED
from export.manifest import (
    FORMAT_VERSION,
    artifact_entry,
    entry_files,
    read_manifest,
    verified_path,
    write_manifest,
)
from zoo.ensemble import ENSEMBLE_FILE, read_ensemble
from zoo.errors import ZooError
from zoo.io import write_json
from zoo.locations import COMPETITION

log = logging.getLogger(__name__)
SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
OWNER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
KERNEL_SUFFIX = "-submission"


def kaggle_username() -> str | None:
    """$KAGGLE_USERNAME, else the username in kaggle.json ($KAGGLE_CONFIG_DIR or ~/.kaggle)."""
    if os.environ.get("KAGGLE_USERNAME"):
        return os.environ["KAGGLE_USERNAME"]
    folder = Path(os.environ.get("KAGGLE_CONFIG_DIR", Path.home() / ".kaggle"))
    try:
        return json.loads((folder / "kaggle.json").read_text()).get("username") or None
    except (OSError, ValueError):
        return None


def dataset_id_for(variant: str, given: str | None) -> str:
    """OWNER/SLUG, checked as Kaggle checks it; the default slug is zoo-VARIANT."""
    if given is None:
        owner = kaggle_username()
        if owner is None:
            raise ZooError(
                "--id: cannot tell your Kaggle username; pass --id OWNER/SLUG, or set "
                "KAGGLE_USERNAME, or put kaggle.json in ~/.kaggle"
            )
        given = f"{owner}/zoo-{variant.replace('_', '-')}"
    owner, _, slug = given.partition("/")
    if not OWNER.fullmatch(owner) or not slug:
        raise ZooError(
            f"--id {given!r}: expected OWNER/SLUG, e.g. you/zoo-{variant.replace('_', '-')}"
        )
    if not (6 <= len(slug) <= 50 and SLUG.fullmatch(slug)):
        raise ZooError(
            f"--id {given!r}: the slug must be 6-50 characters of a-z, 0-9 and single dashes"
        )
    return given


def check_title(title: str) -> str:
    if not 6 <= len(title) <= 50:
        raise ZooError(f"--title {title!r}: Kaggle titles are 6-50 characters, not {len(title)}")
    return title


def kernel_slug(dataset_slug: str) -> str:
    """The kernel's slug (at most 50 characters), whose title spells it with spaces."""
    return dataset_slug[: 50 - len(KERNEL_SUFFIX)].rstrip("-") + KERNEL_SUFFIX


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


def extra_wheels(wheelhouse: Path | None, out: Path) -> list[Path]:
    """Every wheel in --wheelhouse, copied beside zoo's for the kernel's offline install."""
    if wheelhouse is None:
        return []
    found = sorted(Path(wheelhouse).glob("*.whl"))
    if not found:
        raise ZooError(f"--wheelhouse {wheelhouse}: no .whl files there")
    out.mkdir(parents=True, exist_ok=True)
    for wheel in found:
        shutil.copyfile(wheel, out / wheel.name)
    return [out / w.name for w in found]


def shipped_formats(model: dict, which: str) -> set[str]:
    if which == "all":
        return {
            f
            for fold in model["folds"].values()
            for f, e in fold.items()
            if e.get("status") == "ok"
        }
    selected = (model.get("selected") or {}).get("format")
    return {f for f in (selected, *SHIPPED) if f}


def copy_artifacts(export_dir: Path, manifest: dict, out: Path, which: str) -> dict:
    """Copy the shipped files (sha256 checked) and return the manifest that describes them."""
    shipped = copy.deepcopy(manifest)
    for model in shipped["models"].values():
        keep = shipped_formats(model, which)
        files = [model["reference"]]
        for fold in model["folds"].values():
            for fmt in list(fold):
                if fmt not in keep or fold[fmt].get("status") != "ok":
                    del fold[fmt]
                    continue
                files += entry_files(fold[fmt])
        # every fold's TensorRT engine names the model's one timing cache: checked, copied once
        for entry in {(e["path"], e.get("sha256")): e for e in files}.values():
            if entry.get("status", "ok") != "ok":
                continue
            dst = out / entry["path"]
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(verified_path(export_dir, entry), dst)
    return shipped


@dataclass
class PackagePlan:
    """What one package ships: runs, and for several, their weights; any calibration."""

    runs: list[Path]
    weights: dict[str, list[float]] | None  # per condition group, one per run
    calibration: dict | None  # calibration.json's content
    name: str  # the variant, or "ensemble": default id and title


def plan_package(sources: list[Path]) -> PackagePlan:
    """One run; one `zoo ensemble` folder (its runs, weights, and calibration.json if made);
    or several runs, whose weights are fitted here on their out-of-fold predictions."""
    from zoo.ensemble import fit_ensemble, read_oof

    calibration = None
    if len(sources) == 1:
        source = Path(sources[0])
        if (source / "calibration.json").is_file():
            calibration = json.loads((source / "calibration.json").read_text())
        saved = read_ensemble(source)
        if saved is None:
            return PackagePlan(
                [source], None, calibration, read_manifest(source / "export")["variant"]
            )
        runs = [Path(m["run"]) for m in saved["members"]]
        return PackagePlan(runs, saved["weights"], calibration, "ensemble")
    fit = fit_ensemble([read_oof(r) for r in sources])
    log.warning(
        "weights fitted on the runs' out-of-fold predictions (`zoo ensemble` shows the scores; "
        "`zoo calibrate` on its folder adds a calibration)"
    )
    weights = {g: [float(x) for x in w] for g, w in fit.weights.items()}
    return PackagePlan([Path(r) for r in sources], weights, None, "ensemble")


def checked_export(run: Path) -> tuple[Path, dict]:
    export_dir = Path(run) / "export"
    manifest = read_manifest(export_dir)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ZooError(f"{export_dir}: exported by an older zoo; run `zoo export` again")
    if not (Path(run) / "prior.json").is_file():
        raise ZooError(f"{Path(run) / 'prior.json'} missing: the kernel needs the label prior")
    missing = [n for n, m in manifest["models"].items() if not m.get("selected")]
    if missing:
        log.warning("%s: no selected format for %s (run `zoo bench`)", run, missing)
    return export_dir, manifest


def write_members(plan: PackagePlan, staging: Path, which: str) -> None:
    """One run: its models at the top (manifest.json, prior.json). Several: each run in
    members/I-NAME/, and ensemble.json with the weights and each member's manifest and prior
    by sha256, which the kernel checks before trusting them."""
    calibration = (plan.calibration or {}).get("params")
    if plan.weights is None:
        export_dir, manifest = checked_export(plan.runs[0])
        shipped = copy_artifacts(export_dir, manifest, staging, which)
        shipped["calibration"] = calibration
        write_manifest(staging, shipped)
        shutil.copyfile(plan.runs[0] / "prior.json", staging / "prior.json")
        return
    members = []
    for i, run in enumerate(plan.runs):
        export_dir, manifest = checked_export(run)
        folder = staging / "members" / f"{i}-{Path(run).name}"
        folder.mkdir(parents=True)
        write_manifest(folder, copy_artifacts(export_dir, manifest, folder, which))
        shutil.copyfile(run / "prior.json", folder / "prior.json")
        members.append(
            {
                "name": Path(run).name,
                "variant": manifest["variant"],
                "manifest": artifact_entry(staging, folder / "manifest.json"),
                "prior": artifact_entry(staging, folder / "prior.json"),
            }
        )
    write_json(
        staging / ENSEMBLE_FILE,
        {
            "format_version": FORMAT_VERSION,
            "members": members,
            "weights": plan.weights,
            "calibration": calibration,
            "calibration_report": {
                k: plan.calibration.get(k) for k in ("family", "before", "after", "notes")
            }
            if plan.calibration
            else None,
        },
    )


def package(
    runs: Path | list[Path],
    out: Path,
    which: str = "selected",
    title: str | None = None,
    dataset_id: str | None = None,
    wheelhouse: Path | None = None,
) -> dict:
    """Write the dataset folder and its kernel; returns a small summary. All or nothing."""
    out = Path(out)
    plan = plan_package([Path(r) for r in ([runs] if isinstance(runs, (str, Path)) else runs)])
    dataset_id = dataset_id_for(plan.name, dataset_id)
    title = check_title(title or f"zoo {plan.name} models")
    if out.exists() and not (out / "dataset-metadata.json").is_file():
        raise ZooError(f"--out {out} exists and is not a zoo package: choose another folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write_members(plan, staging, which)
        wheels = build_wheel(staging / "wheels") + extra_wheels(wheelhouse, staging / "wheels")
        write_json(
            staging / "dataset-metadata.json",
            {"title": title, "id": dataset_id, "licenses": [{"name": "CC0-1.0"}]},
        )
        write_kernel(staging / "kernel", dataset_id)
        if out.exists():
            shutil.rmtree(out)  # an earlier package: replaced whole
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return {
        "out": str(out),
        "dataset_id": dataset_id,
        "runs": [str(r) for r in plan.runs],
        "calibrated": bool(plan.calibration),
        "wheels": [w.name for w in wheels],
        "bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
    }


def upload_steps(out: Path, dataset_id: str) -> str:
    """What to type next, as the Kaggle CLI behaves (sub-folders only go up with --dir-mode)."""
    return "\n".join(
        [
            f"  kaggle datasets create -p {out} --dir-mode zip",
            f'  (an update: kaggle datasets version -p {out} --dir-mode zip -m "MESSAGE")',
            f"  wait until `kaggle datasets status {dataset_id}` says ready, then:",
            f"  kaggle kernels push -p {out / 'kernel'}",
        ]
    )


def write_kernel(kernel_dir: Path, dataset_id: str) -> None:
    kernel_dir.mkdir(parents=True, exist_ok=True)
    owner, slug = dataset_id.split("/", 1)
    script = (Path(__file__).parent / "kernel.py").read_text()
    script = script.replace('DATASET_SLUG = "zoo-models"', f'DATASET_SLUG = "{slug}"')
    (kernel_dir / "kernel.py").write_text(script)
    kernel = kernel_slug(slug)
    write_json(
        kernel_dir / "kernel-metadata.json",
        {
            "id": f"{owner}/{kernel}",
            "title": kernel.replace("-", " "),  # Kaggle derives the slug from the title
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
