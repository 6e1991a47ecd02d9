"""torch.compile(mode="reduce-overhead"): Inductor kernels replayed as CUDA graphs, fp16,
channels-last, built from the checkpoint on the GPU it runs on (inside the kernel).

CUDA graphs need a static shape, so the batch is fixed at the kernel's batch and a short last
batch is padded (the padding's outputs are dropped); a larger one runs in chunks.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from export.eager_fp16 import channels_last
from export.runner import KERNEL_BATCH, Runner
from zoo.registry import ModelSpec

# zoo.models (timm) is imported where a model is built: predicting from ONNX needs no timm.

PRECISION = "fp16"


def unavailable(device: str) -> str | None:
    if device != "cuda" or not torch.cuda.is_available():
        return "torch.compile reduce-overhead (CUDA graphs) runs on a CUDA device only"
    return None


def load(
    checkpoint: Path,
    device: str,
    spec: ModelSpec,
    entry: dict | None = None,
    batch: int = KERNEL_BATCH,
) -> Runner:
    from zoo.models import load_trained

    model = load_trained(spec, checkpoint).to(device, torch.float16)
    model = model.to(memory_format=torch.channels_last).eval()
    compiled = torch.compile(model, mode="reduce-overhead", dynamic=False)
    shape = (batch, *spec.input_shape)

    @torch.inference_mode()
    def run_static(x: np.ndarray) -> np.ndarray:
        padded = np.zeros(shape, np.float32)
        padded[: len(x)] = x
        t = torch.from_numpy(padded).to(device, torch.float16)
        out = compiled(channels_last(t))
        return out[: len(x)].float().cpu().numpy()  # the copy also ends the graph's step

    def run(x: np.ndarray) -> np.ndarray:
        return np.concatenate([run_static(x[i : i + batch]) for i in range(0, len(x), batch)])

    run(np.zeros(shape, np.float32))  # compile and capture now, not on the first study
    return run
