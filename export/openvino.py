"""OpenVINO on the CPU: the ONNX converted to OpenVINO IR (model.xml + model.bin), compiled
where it runs, per batch size with a static shape, in bf16 when the CPU computes bf16 natively
(AVX512-BF16 or AMX), else in f32.

Why: on a CPU, eager PyTorch, TorchScript and ONNX Runtime (fp32) stay within 1.0-1.7x of each
other for the registered backbones; OpenVINO's bf16 kernels run them 2-3x faster than eager
(benchmarks/bench_inference.py). bf16 keeps fp32's range with 8 bits of mantissa, so a bf16
runner is checked at the bf16 tolerance (`export.runner.TOLERANCE`) in parity and in the
kernel's proof; a CPU without native bf16 runs the same IR in f32 (more exact, slower).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import torch

from export.manifest import artifact_entry, onnx_source, verified_path
from export.runner import Runner


def unavailable(device: str) -> str | None:
    if device != "cpu":
        return "OpenVINO is a CPU runtime here (on a GPU the kernel's GPU runtimes are faster)"
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "openvino is not installed (pip install 'zoo[openvino]')"
    return None


@functools.cache  # a fold's load asks up to three times; the CPU does not change
def cpu_precision() -> str:
    """bf16 where this CPU computes it natively, else fp32."""
    import openvino as ov

    capabilities = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return "bf16" if "BF16" in capabilities else "fp32"


runtime_precision = cpu_precision  # the hook `formats.precision_of` asks


def export(
    model: torch.nn.Module, example: torch.Tensor, path: Path, meta: dict, options: dict
) -> dict:
    """IR from this fold's fp32 ONNX (weights kept fp32: the compile picks the precision)."""
    import openvino as ov

    onnx = onnx_source(options["fold_entries"], "fp32", "OpenVINO")
    export_dir = Path(options["export_dir"])
    converted = ov.Core().read_model(str(verified_path(export_dir, onnx)))
    for key, value in meta.items():
        converted.set_rt_info(str(value), ["model_info", key])
    ov.save_model(converted, str(path), compress_to_fp16=False)
    return {
        "precision": cpu_precision(),
        "openvino": ov.__version__,
        "weights": artifact_entry(export_dir, path.with_suffix(".bin")),
        "source": {"path": onnx["path"], "sha256": onnx["sha256"]},
    }


def load(path: Path, device: str = "cpu", spec=None, entry: dict | None = None) -> Runner:
    """A runner that compiles the IR once per batch size it meets, with that static shape:
    static shapes let the CPU plugin pick faster kernels than a dynamic batch does (edgenext_base
    at batch 4: about 2.5x eager against 1.9x). The kernel meets two or three sizes: the proof's
    1, its batch, and perhaps a shorter last batch."""
    import openvino as ov

    core = ov.Core()
    source = core.read_model(str(path))
    hint = "bf16" if cpu_precision() == "bf16" else "f32"
    requests = {}

    def request_for(shape: tuple[int, ...]):
        if shape not in requests:
            model = source.clone()
            model.reshape(list(shape))
            compiled = core.compile_model(
                model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
            )
            requests[shape] = (compiled.create_infer_request(), compiled.output(0))
        return requests[shape]

    def run(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, np.float32)
        request, output = request_for(x.shape)
        return np.array(request.infer({0: x})[output], np.float32)  # a copy: buffers are reused

    return run
