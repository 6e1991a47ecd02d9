"""TorchScript: traced at a fixed size, frozen, metadata in `_extra_files`.

Tracing (not scripting) is what works across timm models; the batch axis stays dynamic because
nothing in these models branches on it. TorchScript is deprecated upstream, so it is a
convenience fallback here, not the primary format.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from export.eager import unavailable  # noqa: F401 - same runtime (torch), same answer
from export.runner import Runner
from zoo.environment import exact_fp32

EXTRA = "zoo.json"


def export(
    model: torch.nn.Module, example: torch.Tensor, path: Path, meta: dict, options: dict
) -> dict:
    half = options.get("half", False) and example.is_cuda
    if half:
        model, example = model.half(), example.half()
    meta = {**meta, "precision": "fp16" if half else "fp32", "traced_on": example.device.type}
    with torch.no_grad(), warnings.catch_warnings():
        # TorchScript's deprecation notices: known, and why ONNX is the primary format.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.freeze(torch.jit.trace(model.eval(), example, check_trace=False))
        torch.jit.save(traced, str(path), _extra_files={EXTRA: json.dumps(meta)})
    return {"precision": meta["precision"], "traced_on": example.device.type}


def read_metadata(path: Path) -> dict:
    files = {EXTRA: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.load(str(path), map_location="cpu", _extra_files=files)
    return json.loads(files[EXTRA])


def load(path: Path, device: str, spec=None, entry: dict | None = None) -> Runner:
    """The traced module on `device`; one traced on another device is refused, as traces can
    bake in the device they were made on (timm's EdgeNeXt does: a CPU trace fails on CUDA)."""
    files = {EXTRA: ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit.load is deprecated"
        module = torch.jit.load(str(path), map_location=device, _extra_files=files).eval()
    meta = json.loads(files[EXTRA] or "{}")
    traced_on = str((entry or {}).get("traced_on") or meta.get("traced_on") or device)
    if traced_on.split(":")[0] != device:
        raise RuntimeError(f"traced on {traced_on}, this runs on {device}: export it there")
    half = meta.get("precision") == "fp16"
    dtype = torch.float16 if half else torch.float32

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        with exact_fp32():
            return module(torch.from_numpy(x).to(device, dtype)).float().cpu().numpy()

    return run
