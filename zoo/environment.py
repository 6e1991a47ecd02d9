"""The machine a command runs on, described once: device choice, library versions, the GPU
(name, compute capability, driver), mixed precision it supports, and exact fp32.

Facts that decide correctness on a GPU (design_notes.md, "Deploy realities"):
- torch and TensorRT use TF32 for fp32 convolutions on sm80+ by default, so fp32 parity at 1e-4
  needs TF32 off (`exact_fp32`);
- `torch.cuda.is_bf16_supported()` counts emulation and says True on a T4 (sm75): bf16 is used
  only on sm80+, fp16 with a GradScaler below (`amp_dtype`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import platform
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import torch

from zoo.errors import ZooError

LIBRARIES = (
    "torch",
    "timm",
    "onnx",
    "onnxruntime",
    "openvino",
    "tensorrt",
    "pydicom",
    "cv2",
    "numpy",
)


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'; 'cuda' without one is an error."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ZooError("--device cuda: no CUDA device is available")
    return device


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str | None]:
    """Installed version of each library (None when absent), plus Python's."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = str(importlib.import_module(name).__version__)
        except Exception:  # noqa: BLE001 - absent, or broken on import: both unusable
            versions[name] = None
    return versions


def compute_capability() -> tuple[int, int] | None:
    return torch.cuda.get_device_capability() if torch.cuda.is_available() else None


def driver_version() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.stdout.strip() else None


def gpu_facts() -> dict | None:
    """Name, compute capability ('7.5'), CUDA and driver of the current GPU; None on CPU."""
    cc = compute_capability()
    if cc is None:
        return None
    return {
        "gpu": torch.cuda.get_device_name(),
        "compute_capability": f"{cc[0]}.{cc[1]}",
        "cuda": torch.version.cuda,
        "driver": driver_version(),
    }


def machine_facts() -> dict:
    """What a measurement or an artifact was made on: the GPU (if any) and library versions."""
    return {
        "gpu": gpu_facts(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "versions": library_versions(),
    }


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe() -> str:
    """One line for logs: the GPU and every library, present or absent."""
    gpu = gpu_facts()
    head = (
        f"GPU {gpu['gpu']} (sm{gpu['compute_capability'].replace('.', '')}, CUDA {gpu['cuda']}, "
        f"driver {gpu['driver'] or 'unknown'})"
        if gpu
        else "no GPU"
    )
    libs = ", ".join(f"{k} {v or 'absent'}" for k, v in library_versions().items())
    return f"{head}, {libs}"


def amp_dtype(amp: str, device: str) -> torch.dtype | None:
    """Autocast dtype for training: bf16 only where the GPU has it natively (sm80+)."""
    if device != "cuda" or amp == "none":
        return None
    native_bf16 = (compute_capability() or (0, 0)) >= (8, 0)
    if amp == "bf16" and not native_bf16:
        raise ZooError(
            f"--amp bf16: this GPU (sm{''.join(map(str, compute_capability()))}) "
            "has no native bf16; use --amp fp16 or auto"
        )
    if amp == "bf16" or (amp == "auto" and native_bf16):
        return torch.bfloat16
    return torch.float16


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """TF32 off for the duration: fp32 on sm80+ then matches the CPU to ~1e-6, not ~1e-3."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
