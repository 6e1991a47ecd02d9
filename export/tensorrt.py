"""TensorRT: an engine built from the ONNX file with the TensorRT Python API (10.x).

Explicit min/opt/max batch profile, fp16 with normalisation and L2-norm layers held in fp32
(LayerNorm, GRN and F.normalize overflow in fp16 on a T4), a workspace limit, and a timing
cache saved next to the engine so a rebuild on the same GPU takes seconds. The engine file is
the plain serialized plan: nothing is prepended, metadata lives in the manifest. An engine only
loads on the compute capability and TensorRT build that made it; both are recorded.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from export.runner import Runner
from zoo.io import atomic_write

log = logging.getLogger(__name__)
WORKSPACE_BYTES = 2 << 30


def unavailable(device: str) -> str | None:
    """Every missing piece, so the row says all that stands in the way."""
    missing = []
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        missing.append("tensorrt is not installed (pip install 'zoo[trt]')")
    if not torch.cuda.is_available():
        missing.append("CUDA is not available")
    elif device != "cuda":
        missing.append("TensorRT runs only on a CUDA device (use --device cuda)")
    return "; ".join(missing) or None


def device_facts() -> dict:
    """The GPU an engine is built for: name, compute capability, TensorRT version."""
    import tensorrt as trt

    major, minor = torch.cuda.get_device_capability()
    return {
        "gpu": torch.cuda.get_device_name(),
        "compute_capability": f"{major}.{minor}",
        "tensorrt": trt.__version__,
        "cuda": torch.version.cuda,
    }


def engine_name(half: bool) -> str:
    """model_fp16_sm75_trt10.x.y.engine: a mismatch is visible in the name."""
    facts = device_facts()
    sm = facts["compute_capability"].replace(".", "")
    return f"model_{'fp16' if half else 'fp32'}_sm{sm}_trt{facts['tensorrt']}.engine"


def _keep_fp32(network, trt) -> int:
    """Pin normalisation, reductions and the ops of L2-norm to fp32; returns how many."""
    kinds = {trt.LayerType.NORMALIZATION, trt.LayerType.REDUCE, trt.LayerType.SOFTMAX}
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        sqrt = layer.type == trt.LayerType.UNARY and "sqrt" in layer.name.lower()
        pow_ = layer.type == trt.LayerType.ELEMENTWISE and "pow" in layer.name.lower()
        if layer.type in kinds or sqrt or pow_:
            layer.precision = trt.float32
            for k in range(layer.num_outputs):
                layer.set_output_type(k, trt.float32)
            pinned += 1
    return pinned


def build_engine(
    onnx_path: Path,
    path: Path,
    input_shape: tuple[int, ...],
    half: bool,
    batch_opt: int,
    batch_max: int,
    timing_cache: Path | None = None,
) -> dict:
    """Build and write an engine from an ONNX file; returns the facts for the manifest."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    profile.set_shape(name, (1, *input_shape), (batch_opt, *input_shape), (batch_max, *input_shape))
    config.add_optimization_profile(profile)
    pinned = 0
    if half:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        pinned = _keep_fp32(network, trt)
    timing_cache = timing_cache or path.with_name("timing.cache")
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT build_serialized_network returned None")
    atomic_write(path, lambda p: p.write_bytes(bytes(plan)))
    atomic_write(
        timing_cache, lambda p: p.write_bytes(bytes(config.get_timing_cache().serialize()))
    )
    return {
        **device_facts(),
        "precision": "fp16" if half else "fp32",
        "fp32_layers": pinned,
        "profile": [1, batch_opt, batch_max],
        "workspace_bytes": WORKSPACE_BYTES,
        "timing_cache": timing_cache.name,
    }


def export(
    model: torch.nn.Module, example: torch.Tensor, path: Path, meta: dict, options: dict
) -> dict:
    onnx_path = options.get("onnx_path")
    if onnx_path is None or not Path(onnx_path).is_file():
        raise RuntimeError("TensorRT builds from the ONNX export: export onnx first")
    batch_max = max(1, options.get("batch_max", 16))
    return build_engine(
        Path(onnx_path),
        path,
        tuple(example.shape[1:]),
        options.get("half", True),
        min(batch_max, 8),
        batch_max,
    )


def load(path: Path, device: str = "cuda", spec=None) -> Runner:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    engine = trt.Runtime(logger).deserialize_cuda_engine(Path(path).read_bytes())
    if engine is None:
        raise RuntimeError(
            f"{path}: TensorRT could not deserialize the engine (built for "
            "another GPU or TensorRT version?)"
        )
    context = engine.create_execution_context()
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inp = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
    out = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
    batch_max = engine.get_tensor_profile_shape(inp, 0)[2][0]

    def run_batch(x: torch.Tensor) -> torch.Tensor:
        context.set_input_shape(inp, tuple(x.shape))
        result = torch.empty(
            tuple(context.get_tensor_shape(out)), dtype=torch.float32, device="cuda"
        )
        context.set_tensor_address(inp, x.data_ptr())
        context.set_tensor_address(out, result.data_ptr())
        stream = torch.cuda.current_stream()
        if not context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"{path}: TensorRT execution failed")
        stream.synchronize()
        return result

    def run(x: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32)).cuda()
        parts = [run_batch(chunk.contiguous()) for chunk in torch.split(xt, batch_max)]
        return torch.cat(parts).cpu().numpy()

    return run
