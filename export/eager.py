"""Eager PyTorch from the training checkpoint: the reference and the last fallback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from export.runner import Runner
from zoo.models import load_trained
from zoo.registry import ModelSpec


def unavailable(device: str) -> str | None:
    if device == "cuda" and not torch.cuda.is_available():
        return "CUDA is not available"
    return None


def load(checkpoint: Path, device: str, spec: ModelSpec, half: bool = False) -> Runner:
    """The fine-tuned model in eager mode (fp16 weights on request, for CUDA)."""
    model = load_trained(spec, checkpoint).to(device)
    if half:
        model = model.half()
    dtype = torch.float16 if half else torch.float32

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        out = model(torch.from_numpy(x).to(device, dtype))
        return out.float().cpu().numpy()

    return run
