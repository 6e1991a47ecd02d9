"""Eager fp16 with channels-last memory: built from the checkpoint on the GPU it runs on.

The simplest fast GPU runtime that needs nothing beyond torch and timm: tensor cores through
cuDNN's NHWC fp16 kernels, no export step that could fail on another machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from export.runner import Runner
from zoo.registry import ModelSpec

# zoo.models (timm) is imported where a model is built: predicting from ONNX needs no timm.

PRECISION = "fp16"  # weights and activations; compared at the fp16 tolerance


def unavailable(device: str) -> str | None:
    if device != "cuda" or not torch.cuda.is_available():
        return "fp16 eager runs on a CUDA device only"
    return None


def channels_last(batch: torch.Tensor) -> torch.Tensor:
    """NHWC memory for a 4-D image batch; a crop model's 5-D batch (items, crops, slices, H, W)
    as it is: its backbone sees the slices reshaped to 4-D inside the model."""
    return batch.contiguous(memory_format=torch.channels_last) if batch.dim() == 4 else batch


def load(checkpoint: Path, device: str, spec: ModelSpec, entry: dict | None = None) -> Runner:
    from zoo.models import load_trained

    model = load_trained(spec, checkpoint).to(device, torch.float16)
    model = model.to(memory_format=torch.channels_last).eval()

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(x).to(device, torch.float16)
        return model(channels_last(batch)).float().cpu().numpy()

    return run
