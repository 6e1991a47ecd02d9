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

from export.manifest import artifact_entry, verified_path
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


def runtime_precision() -> str:
    """The precision a runner of this format has on this machine (`formats.precision_of`)."""
    return cpu_precision()


def export(
    model: torch.nn.Module, example: torch.Tensor, path: Path, meta: dict, options: dict
) -> dict:
    """IR from this fold's fp32 ONNX (weights kept fp32: the compile picks the precision)."""
    import openvino as ov

    onnx = (options["fold_entries"].get("onnx") or {}) if options.get("fold_entries") else {}
    if onnx.get("status") != "ok":
        raise RuntimeError("OpenVINO converts the fp32 ONNX, which is not ok for this fold")
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


def load_shipped(
    base: Path, fold_entries: dict, spec, device: str, work: Path
) -> tuple[Runner, str]:
    """The shipped IR, both files sha256 checked, compiled for this CPU."""
    entry = fold_entries.get("openvino")
    if entry is None or entry.get("status") != "ok":
        raise RuntimeError("no openvino artifact with status ok for this fold")
    verified_path(base, entry["weights"])
    path = verified_path(base, entry)
    return load(path, device, spec, entry), f"shipped IR, sha256 verified, {cpu_precision()}"
