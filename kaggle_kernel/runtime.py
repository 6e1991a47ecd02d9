"""Which format each model runs in, with the fallback chain and the reason logged.

auto: the manifest's `selected` format when its runtime is installed, every fold's sha256
matches and (TensorRT) the engine was built for this GPU's compute capability and this
TensorRT version; else a TensorRT engine rebuilt from the shipped ONNX with the shipped timing
cache; else ONNX Runtime (CUDA provider on GPU); else TorchScript; else the eager checkpoint.
"""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from export.formats import FORMATS
from export.manifest import verified_path
from export.runner import Runner
from zoo.runinfo import spec_from_dict

log = logging.getLogger(__name__)
CHAIN = ("tensorrt", "onnx", "torchscript", "torch")


@dataclass
class LoadedModel:
    name: str
    format: str
    reason: str
    runners: list[Runner]  # one per fold
    entry: dict  # the manifest's model entry


def environment() -> str:
    """GPU, driver and library versions, logged once at start."""
    parts = [f"python {platform.python_version()}", f"torch {torch.__version__}"]
    for name in ("onnxruntime", "tensorrt", "timm"):
        try:
            parts.append(f"{name} {__import__(name).__version__}")
        except ImportError:
            parts.append(f"{name} absent")
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        parts.insert(
            0,
            f"GPU {torch.cuda.get_device_name()} (sm{major}{minor}, "
            f"CUDA {torch.version.cuda}, driver {_driver()})",
        )
    else:
        parts.insert(0, "no GPU")
    return ", ".join(parts)


def _driver() -> str:
    try:
        import subprocess

        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _engine_mismatch(entry: dict) -> str | None:
    """Why a TensorRT engine cannot load here (None: it was built for this GPU and build)."""
    import tensorrt as trt

    major, minor = torch.cuda.get_device_capability()
    here = f"{major}.{minor}"
    if entry.get("compute_capability") != here:
        return f"engine built for sm{entry.get('compute_capability')}, this GPU is sm{here}"
    if entry.get("tensorrt") != trt.__version__:
        return f"engine built with TensorRT {entry.get('tensorrt')}, this is {trt.__version__}"
    return None


def _rebuild_engine(base: Path, folds: dict, fold: str, work: Path, shape: list[int]) -> Runner:
    """Build this GPU's engine from the shipped ONNX, reusing the shipped timing cache."""
    from export import tensorrt as trt_format

    onnx_path = verified_path(base, folds[fold]["onnx"])
    old = folds[fold].get("tensorrt") or {}
    out = work / Path(folds[fold]["onnx"]["path"]).parent
    out.mkdir(parents=True, exist_ok=True)
    shipped_cache = base / Path(old.get("path", onnx_path)).parent / "timing.cache"
    cache = out / "timing.cache"
    if shipped_cache.is_file() and not cache.is_file():
        cache.write_bytes(shipped_cache.read_bytes())
    half = old.get("precision", "fp16") == "fp16"
    engine = out / trt_format.engine_name(half)
    if not engine.is_file():
        profile = old.get("profile", [1, 8, 16])
        trt_format.build_engine(
            onnx_path, engine, tuple(shape), half, profile[1], profile[2], cache
        )
    return trt_format.load(engine, "cuda")


def _load_format(fmt: str, base: Path, entry: dict, device: str, work: Path) -> tuple[list, str]:
    """Runners for every fold in one format, and the reason it was chosen; raises if it can't."""
    impl = FORMATS[fmt].impl()
    reason = impl.unavailable(device)
    if reason:
        raise RuntimeError(reason)
    spec = spec_from_dict(entry["spec"])
    runners, note = [], "shipped artifact, sha256 verified"
    for fold, formats in sorted(entry["folds"].items(), key=lambda kv: int(kv[0])):
        if fmt == "tensorrt":
            shipped = formats.get("tensorrt")
            mismatch = (
                "no engine shipped"
                if not shipped or shipped.get("status") != "ok"
                else _engine_mismatch(shipped)
            )
            if mismatch:
                note = f"rebuilt from ONNX with the shipped timing cache ({mismatch})"
                runners.append(
                    _rebuild_engine(base, entry["folds"], fold, work, entry["input_shape"])
                )
                continue
        item = formats.get(fmt)
        if item is None or item.get("status") != "ok":
            raise RuntimeError(f"fold {fold}: {fmt} not shipped or not ok")
        runners.append(impl.load(verified_path(base, item), device, spec))
    if not runners:
        raise RuntimeError("no folds in the manifest")
    return runners, note


def load_model(
    name: str, entry: dict, base: Path, runtime: str, device: str, work: Path
) -> LoadedModel:
    """The first format of the chain that loads for every fold. Raises only if none does."""
    selected = (entry.get("selected") or {}).get("format")
    first = selected if runtime == "auto" else runtime
    chain = [f for f in dict.fromkeys([first, *CHAIN]) if f in FORMATS and f]
    failures = []
    for fmt in chain:
        try:
            runners, note = _load_format(fmt, base, entry, device, work)
        except Exception as err:  # noqa: BLE001 - try the next format
            failures.append(f"{fmt}: {err}")
            continue
        why = (
            "selected by zoo bench"
            if fmt == selected
            else f"requested --runtime {fmt}"
            if fmt == runtime
            else "fallback"
        )
        reason = f"{why}; {note}" + (f" (skipped {'; '.join(failures)})" if failures else "")
        return LoadedModel(name, fmt, reason, runners, entry)
    raise RuntimeError(f"{name}: no format could be loaded: {'; '.join(failures)}")
