"""TensorRT 10.x and 11.x from one code path: a strongly typed engine built from the ONNX.

TensorRT 11 removed weak typing (`BuilderFlag.FP16`, `OBEY_/PREFER_PRECISION_CONSTRAINTS`,
`ILayer.precision`, `set_output_type`; deprecated since 10.12), so precision is decided in the
ONNX (`export.onnx.to_mixed_precision`: fp16 with LayerNorm, L2 norms and softmax in fp32
behind Cast nodes) and the network is built strongly typed: `STRONGLY_TYPED` on 10.x (by name:
the enum's value changed), the only mode on 11.x. fp32 engines clear `BuilderFlag.TF32`.

Engines and timing caches only load on the compute capability and TensorRT build that made
them. Engine files are named by the ONNX's sha256 prefix, the precision, the SM and the
TensorRT version, so an engine is never reused for another model or package; the timing cache
is named by SM and TensorRT version and shared by a model's folds. A cache that does not fit
this GPU (`set_timing_cache` returns False) is replaced by a fresh one, and every return value
of the API is checked. The plan file is the plain serialized engine: metadata lives in the
manifest. Checked against NVIDIA's 10.8/10.16/11.x Python bindings; never run here (no GPU).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from export.manifest import artifact_entry, onnx_source, verified_path
from export.runner import KERNEL_BATCH, Runner
from zoo.errors import ZooError
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
    """The GPU an engine is built for: name, compute capability, TensorRT and CUDA versions."""
    import tensorrt as trt

    major, minor = torch.cuda.get_device_capability()
    return {
        "gpu": torch.cuda.get_device_name(),
        "compute_capability": f"{major}.{minor}",
        "tensorrt": trt.__version__,
        "cuda": torch.version.cuda,
    }


def _sm(facts: dict) -> str:
    return "sm" + facts["compute_capability"].replace(".", "")


def engine_name(onnx_sha256: str, precision: str, facts: dict) -> str:
    """model_<onnx sha>_fp16_sm75_trt10.16.1.11.engine: what it is built from, and for where."""
    return f"model_{onnx_sha256[:12]}_{precision}_{_sm(facts)}_trt{facts['tensorrt']}.engine"


def timing_cache_name(facts: dict) -> str:
    return f"timing_{_sm(facts)}_trt{facts['tensorrt']}.cache"


def _precision(options: dict) -> str:
    return "fp16" if options.get("half", True) else "fp32"


def artifact_name(options: dict) -> str:
    source = onnx_source(options["fold_entries"], _precision(options), "TensorRT")
    return engine_name(source["sha256"], _precision(options), device_facts())


def open_timing_cache(config, blob: bytes):
    """Set a timing cache on the builder config: `blob` when it fits this GPU and TensorRT,
    else a fresh one. Returns (cache, reused)."""
    cache = None
    if blob:
        try:
            cache = config.create_timing_cache(blob)
        except Exception as err:  # noqa: BLE001 - another TensorRT version's format
            log.warning("timing cache unreadable here (%s): starting a fresh one", err)
        if cache is not None and not config.set_timing_cache(cache, False):
            log.warning("timing cache was made on another GPU or TensorRT: starting a fresh one")
            cache = None
    if cache is not None:
        return cache, True
    cache = config.create_timing_cache(b"")
    if not config.set_timing_cache(cache, False):
        raise RuntimeError("TensorRT refused an empty timing cache")
    return cache, False


def save_timing_cache(config, path: Path) -> bool:
    """Write the config's timing cache after a build; False (logged) when there is none."""
    cache = config.get_timing_cache()
    if cache is None:
        log.warning("TensorRT has no timing cache after the build: %s not updated", path)
        return False
    atomic_write(path, lambda p: p.write_bytes(bytes(cache.serialize())))
    return True


def build_engine(
    onnx_path: Path,
    path: Path,
    input_shape: tuple[int, ...],
    precision: str,
    batch_opt: int,
    batch_max: int,
    timing_cache: Path,
) -> dict:
    """Build and write a strongly typed engine from an ONNX file; returns manifest facts."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if typed is None else 1 << int(typed))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "fp32":
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: parity at 1e-4 on sm80+
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    batch_opt = min(batch_opt, batch_max)
    profile.set_shape(name, (1, *input_shape), (batch_opt, *input_shape), (batch_max, *input_shape))
    if config.add_optimization_profile(profile) < 0:
        raise RuntimeError("TensorRT rejected the optimization profile")
    blob = timing_cache.read_bytes() if timing_cache.is_file() else b""
    _, reused = open_timing_cache(config, blob)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx_path} (see its log)")
    atomic_write(path, lambda p: p.write_bytes(bytes(plan)))
    save_timing_cache(config, timing_cache)
    return {
        **device_facts(),
        "precision": precision,
        "strongly_typed": True,
        "profile": [1, batch_opt, batch_max],
        "workspace_bytes": WORKSPACE_BYTES,
        "timing_cache_reused": reused,
    }


def export(
    model: torch.nn.Module, example: torch.Tensor, path: Path, meta: dict, options: dict
) -> dict:
    precision = _precision(options)
    source = onnx_source(options["fold_entries"], precision, "TensorRT")
    export_dir = Path(options["export_dir"])
    cache = path.parent.parent / timing_cache_name(device_facts())  # shared by the folds
    facts = build_engine(
        verified_path(export_dir, source),
        path,
        tuple(example.shape[1:]),
        precision,
        KERNEL_BATCH,
        max(1, options.get("batch_max", 16)),
        cache,
    )
    return {
        **facts,
        "source": {"path": source["path"], "sha256": source["sha256"]},
        "timing_cache": {"path": str(cache.relative_to(export_dir))},  # sha256: finalize()
    }


def finalize(export_dir: Path, model: dict) -> None:
    """After a model's folds: the shared timing cache's final sha256 in every engine's entry
    (each distinct cache file hashed once, not once per fold)."""
    hashed: dict[str, dict] = {}
    for entries in model["folds"].values():
        cache = (entries.get("tensorrt") or {}).get("timing_cache")
        if cache and (export_dir / cache["path"]).is_file():
            if cache["path"] not in hashed:
                hashed[cache["path"]] = artifact_entry(export_dir, export_dir / cache["path"])
            cache.update(hashed[cache["path"]])


_TORCH_DTYPES = ("float32", "float16", "bfloat16", "int32", "int64", "int8", "uint8", "bool")


def _torch_dtype(trt, dtype) -> torch.dtype:
    for name in _TORCH_DTYPES:
        if hasattr(trt, name) and dtype == getattr(trt, name):
            return getattr(torch, name)
    raise RuntimeError(f"TensorRT tensor type {dtype} has no torch equivalent")


def load(path: Path, device: str = "cuda", spec=None, entry: dict | None = None) -> Runner:
    """An engine runner on its own CUDA stream, I/O types from the engine, shapes checked."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
    if engine is None:
        raise RuntimeError(
            f"{path}: TensorRT could not deserialize the engine (built for another GPU or "
            "TensorRT version?)"
        )
    context = engine.create_execution_context()
    if context is None:
        raise RuntimeError(f"{path}: TensorRT could not create an execution context")
    names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
    inp = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
    out = next(n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
    in_dtype = _torch_dtype(trt, engine.get_tensor_dtype(inp))
    out_dtype = _torch_dtype(trt, engine.get_tensor_dtype(out))
    low, _, high = (tuple(d) for d in engine.get_tensor_profile_shape(inp, 0))
    stream = torch.cuda.Stream()  # never the legacy default stream

    def run_batch(x: torch.Tensor) -> torch.Tensor:
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            xin = x.to("cuda", in_dtype).contiguous()
            if not context.set_input_shape(inp, tuple(xin.shape)):
                raise ValueError(f"{path}: input shape {tuple(xin.shape)} outside {low}..{high}")
            result = torch.empty(
                tuple(context.get_tensor_shape(out)), dtype=out_dtype, device="cuda"
            )
            if not (
                context.set_tensor_address(inp, xin.data_ptr())
                and context.set_tensor_address(out, result.data_ptr())
            ):
                raise RuntimeError(f"{path}: TensorRT refused a tensor address")
            if not context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError(f"{path}: TensorRT execution failed")
        stream.synchronize()
        return result.float()

    def run(x: np.ndarray) -> np.ndarray:
        xt = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        parts = [run_batch(chunk) for chunk in torch.split(xt, high[0])]
        return torch.cat(parts).cpu().numpy()

    return run


def load_shipped(
    base: Path, fold_entries: dict, spec, device: str, work: Path
) -> tuple[Runner, str]:
    """The shipped engine when it was built for this GPU and TensorRT; else one built here from
    the shipped ONNX, seeded with the shipped timing cache when that fits."""
    facts = device_facts()
    shipped = fold_entries.get("tensorrt") or {}
    precision = shipped.get("precision", "fp16")
    if shipped.get("status") == "ok":
        built_for = (shipped.get("compute_capability"), shipped.get("tensorrt"))
        if built_for == (facts["compute_capability"], facts["tensorrt"]):
            return load(verified_path(base, shipped), device, spec, shipped), (
                "shipped engine, sha256 verified"
            )
        why = f"shipped engine is for sm{built_for[0]} TensorRT {built_for[1]}"
    else:
        why = "no engine shipped"
    source = onnx_source(fold_entries, precision, "TensorRT")
    onnx_path = verified_path(base, source)
    fold_dir = work / Path(source["path"]).parent
    engine = fold_dir / engine_name(source["sha256"], precision, facts)
    cache = fold_dir.parent / timing_cache_name(facts)
    if shipped.get("timing_cache") and not cache.is_file():
        try:  # a cache made elsewhere is detected and replaced by build_engine
            seed = verified_path(base, shipped["timing_cache"])
            cache.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(seed, cache)
        except ZooError as err:
            log.warning("shipped timing cache not used (%s): a fresh one", err)
    if not engine.is_file():
        shape = tuple(int(v) for v in spec.input_shape)
        fold_dir.mkdir(parents=True, exist_ok=True)
        build_engine(onnx_path, engine, shape, precision, KERNEL_BATCH, 16, cache)
    return load(engine, device, spec), f"{precision} engine built here from the ONNX ({why})"
