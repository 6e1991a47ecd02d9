"""Eager PyTorch from the training checkpoint: the reference and the last fallback.

fp32 on CUDA runs with TF32 off, so it matches the CPU reference to fp32 precision.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from export.runner import Runner
from zoo.environment import exact_fp32
from zoo.registry import ModelSpec

# zoo.models (timm) is imported where a model is built: predicting from ONNX needs no timm.


def unavailable(device: str) -> str | None:
    if device == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available"
    return None


def load(checkpoint: Path, device: str, spec: ModelSpec, entry: dict | None = None) -> Runner:
    """The fine-tuned model in eager fp32."""
    from zoo.models import load_trained

    model = load_trained(spec, checkpoint).to(device)

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        with exact_fp32():
            return model(torch.from_numpy(x).to(device)).float().cpu().numpy()

    return run
