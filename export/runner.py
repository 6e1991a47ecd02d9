"""What every format's loader returns, and how a runner proves itself before it is trusted.

A runner is a callable from a float32 NCHW batch to (batch, 3T) logits. Loading is not proof:
a TorchScript traced on the CPU loads on CUDA and fails on its first batch, an ONNX Runtime
session falls back to the CPU without a word. So every runtime first runs the shipped reference
input at batch 1 and at the kernel's batch, and must give finite logits of the right shape that
match eager PyTorch's (recorded at export) within its precision's tolerance.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Runner = Callable[[np.ndarray], np.ndarray]
KERNEL_BATCH = 4  # `zoo predict`'s batch: bench times it, TensorRT's profile is tuned for it
# (max |probability difference|, max |metric difference|) per precision: MONAI's defaults.
# bf16 (8 bits of mantissa against fp16's 11) gets twice fp16's probability tolerance and the
# same metric tolerance.
TOLERANCE = {"fp32": (1e-4, 1e-4), "fp16": (2e-2, 1e-2), "bf16": (4e-2, 1e-2)}


def softmax_groups(logits: np.ndarray) -> np.ndarray:
    """(batch, 3T) logits -> (batch, T, 3) probabilities, in float64 for stable metrics."""
    z = logits.astype(np.float64).reshape(len(logits), -1, 3)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def normalise(images: np.ndarray) -> np.ndarray:
    """uint8 model inputs -> float32 in [-1, 1]: Normalize(mean 0.5, std 0.5, max 255)."""
    return (images.astype(np.float32) / np.float32(255.0) - np.float32(0.5)) / np.float32(0.5)


def reference_batch(image: np.ndarray, n: int = KERNEL_BATCH) -> np.ndarray:
    """n distinct inputs from one uint8 study input (C, H, W): rolled copies, normalised."""
    shift = max(1, image.shape[-1] // 8)
    return normalise(np.stack([np.roll(image, k * shift, axis=-1) for k in range(n)]))


def prove(
    runner: Runner, image: np.ndarray, expected: np.ndarray, precision: str, kind: str = "series"
) -> str | None:
    """None when the runner reproduces eager's outputs on the reference input at batch 1 and at
    len(expected) (a classifier's probabilities, a localiser's coordinates); else why not."""
    x = reference_batch(image, len(expected))
    tolerance = TOLERANCE.get(precision, TOLERANCE["fp16"])[0]
    for n in dict.fromkeys((1, len(expected))):
        try:
            out = np.asarray(runner(x[:n]))
        except Exception as err:  # noqa: BLE001 - failing is the answer
            return f"batch {n} failed: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
        if out.shape != (n, expected.shape[1]):
            return f"batch {n} gave shape {out.shape}, expected {(n, expected.shape[1])}"
        if not np.isfinite(out).all():
            return f"batch {n} gave non-finite logits"
        if kind == "localiser":
            diff = float(np.abs(out - expected[:n]).max())
        else:
            diff = float(np.abs(softmax_groups(out) - softmax_groups(expected[:n])).max())
        if diff > tolerance:
            return f"batch {n}: max |dp| {diff:.2e} over the {precision} tolerance {tolerance}"
    return None
