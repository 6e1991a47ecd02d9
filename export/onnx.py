"""ONNX: an explicit exporter and opset, named I/O, a dynamic batch axis, a full checker pass,
metadata in `metadata_props`, one self-contained file.

The TorchScript-based exporter (`dynamo=False`) at opset 17 is the default: it keeps LayerNorm
as one node and is the known-good path into TensorRT. `dynamo=True` (opset >= 18) is offered
too. Both are always passed explicitly, because torch 2.9 changed the default silently.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from export.runner import Runner

INPUT, OUTPUT = "input", "logits"


def unavailable(device: str) -> str | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed"
    if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no CUDAExecutionProvider (pip install 'zoo[gpu]')"
    return None


def export(
    model: torch.nn.Module, example: torch.Tensor, path: Path, meta: dict, options: dict
) -> dict:
    dynamo = options.get("dynamo", False)
    opset = options.get("opset") or (18 if dynamo else 17)
    example = example.float().cpu()
    model = model.float().cpu().eval()
    kwargs = {
        "input_names": [INPUT],
        "output_names": [OUTPUT],
        "opset_version": opset,
        "do_constant_folding": True,
        "dynamo": dynamo,
    }
    if dynamo:
        batch = torch.export.Dim("batch", min=1, max=max(2, options.get("batch_max", 64)))
        kwargs.update(dynamic_shapes={"x": {0: batch}}, external_data=False, verbose=False)
    else:
        kwargs["dynamic_axes"] = {INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), **kwargs)
    graph = onnx.load(str(path))
    for key, value in meta.items():
        entry = graph.metadata_props.add()
        entry.key, entry.value = key, value if isinstance(value, str) else json.dumps(value)
    onnx.save(graph, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    return {
        "exporter": "dynamo" if dynamo else "torchscript",
        "opset": opset,
        "ir_version": graph.ir_version,
        "precision": "fp32",
    }


def read_metadata(path: Path) -> dict:
    props = onnx.load(str(path), load_external_data=False).metadata_props
    out = {}
    for p in props:
        try:
            out[p.key] = json.loads(p.value)
        except json.JSONDecodeError:
            out[p.key] = p.value
    return out


def providers(device: str) -> list:
    if device == "cuda":
        return [
            ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}),
            "CPUExecutionProvider",
        ]
    return ["CPUExecutionProvider"]


def load(path: Path, device: str, spec=None) -> Runner:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=providers(device))

    def run(x: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT], {INPUT: np.ascontiguousarray(x, np.float32)})[0]

    return run
