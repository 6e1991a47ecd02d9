"""ONNX: an explicit exporter and opset, named I/O, a dynamic batch axis, a full checker pass,
metadata in `metadata_props`, one self-contained file; and its mixed-precision twin.

The TorchScript-based exporter (`dynamo=False`) at opset 17 is the default: it keeps LayerNorm
as one node and is the known-good path into TensorRT. `dynamo=True` (opset >= 18) is offered
too. Both are always passed explicitly, because torch 2.9 changed the default silently.

`model_fp16.onnx` decides precision at export, as TensorRT 11's strongly typed networks require
(NVIDIA's 10.x -> 11.x migration guide): fp16 weights and activations, with the ops that
overflow in fp16 kept in fp32 behind Cast nodes (`FP32_OPS`: LayerNorm, the L2 norms of GRN and
EdgeNeXt's XCA, softmax, their reductions). It is a variant of the ONNX entry, verified like it.
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
FP16_NAME = "model_fp16.onnx"
# Ops computed in fp32 in the fp16 twin: x^2 sums overflow fp16 (65504) on real activations.
FP32_OPS = (
    "LayerNormalization",
    "ReduceL2",
    "ReduceSumSquare",
    "ReduceSum",
    "ReduceMean",
    "Pow",
    "Sqrt",
    "Div",
    "Softmax",
    "LogSoftmax",
)


def unavailable(device: str) -> str | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed"
    if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no CUDAExecutionProvider (pip install 'zoo[gpu]')"
    return None


def shape_arithmetic(graph: onnx.GraphProto) -> list[str]:
    """Nodes computing from the input's shape rather than its values (positional encodings
    made from the feature map's size, index maths): they stay in fp32, where their ops are
    defined and exact. Weights and constants are converted as usual."""
    data = {i.name for i in graph.input} - {t.name for t in graph.initializer}
    shaped: set[str] = set()
    blocked = []
    for node in graph.node:  # ONNX nodes are in topological order
        if node.op_type in ("Shape", "Size"):
            shaped.update(node.output)
            blocked.append(node.name)
        elif any(i in data for i in node.input):
            data.update(node.output)
        elif any(i in shaped for i in node.input):
            shaped.update(node.output)
            blocked.append(node.name)
    return blocked


def to_mixed_precision(src: Path, dst: Path) -> None:
    """fp32 ONNX -> fp16 with FP32_OPS and shape arithmetic kept in fp32, float32 in and out."""
    from onnxconverter_common import float16

    graph = onnx.load(str(src))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # its notes on values clamped to the fp16 range
        mixed = float16.convert_float_to_float16(
            graph,
            keep_io_types=True,
            op_block_list=list(FP32_OPS),
            node_block_list=shape_arithmetic(graph.graph),
        )
    del mixed.graph.value_info[:]  # stale fp32 types of renamed tensors; the checker re-infers
    onnx.save(mixed, str(dst))
    onnx.checker.check_model(str(dst), full_check=True)


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
    to_mixed_precision(path, path.with_name(FP16_NAME))
    return {
        "exporter": "dynamo" if dynamo else "torchscript",
        "opset": opset,
        "ir_version": graph.ir_version,
        "precision": "fp32",
        "variants": {"fp16": path.with_name(FP16_NAME)},
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


def providers(device: str, precision: str = "fp32") -> list:
    if device == "cuda":
        options = {
            "cudnn_conv_algo_search": "HEURISTIC",
            "use_tf32": 0 if precision == "fp32" else 1,
        }
        return [("CUDAExecutionProvider", options), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def load(path: Path, device: str, spec=None, entry: dict | None = None) -> Runner:
    """An ONNX Runtime session; on CUDA it must really run on the CUDA provider."""
    import onnxruntime as ort

    precision = (entry or {}).get("precision", "fp32")
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=providers(device, precision))
    active = session.get_providers()
    if device == "cuda" and active[0] != "CUDAExecutionProvider":
        # get_available_providers() lists CUDA even when its libraries fail to load.
        raise RuntimeError(f"onnxruntime's CUDA provider did not load (active: {active})")

    def run(x: np.ndarray) -> np.ndarray:
        return session.run([OUTPUT], {INPUT: np.ascontiguousarray(x, np.float32)})[0]

    return run
