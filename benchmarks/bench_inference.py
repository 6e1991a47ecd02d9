"""Inference latency per format: eager PyTorch against TorchScript, ONNX Runtime and OpenVINO
(CPU; bf16 where the CPU computes bf16 natively), and
on a GPU machine every GPU runtime of the kernel against eager fp32 (TF32 off) and eager fp16:
eager fp16 channels-last, TorchScript fp16 traced on the GPU, torch.compile reduce-overhead,
ONNX Runtime's CUDA provider when it loads, and an fp16 TensorRT engine when TensorRT is there.
A GPU runtime that is missing is a row with its reason, never the end of the GPU part.

Models, random init (latency does not depend on the weights): the first model of
edgenext_split (edgenext_base + conv head, 10 channels), convnextv2_tiny_split
(convnextv2_tiny, 10 channels), b3_concat40 (tf_efficientnet_b3, 40 channels) and tiny_split
(timm test_convnext2), all at the same input size. Each is exported into a temporary folder
with the project's own exporters, loaded with the project's own loaders, warmed up, then timed
in interleaved rounds (every format once per round, in rotating order, 200 ms idle before each
timed call so the previous runtime's spinning threads settle), so a neighbour's load hits
every format alike.
Reported: p50 ms per batch, eager/format (> 1: the format is faster than eager), the largest
probability difference from eager and whether it is within the format's precision tolerance
(the kernel's proof): the best format per model is the fastest that passes. --json PATH also
writes every row, the machine and the summary, to compare across commits.

    .venv/bin/python benchmarks/bench_inference.py             # batch 4, 224 px, 25 rounds
    .venv/bin/python benchmarks/bench_inference.py --json out.json
    .venv/bin/python benchmarks/bench_inference.py --batch 1 --rounds 30 --models tiny
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from _common import load_note  # benchmarks/ is on sys.path when run as a script

from export import compiled, eager_fp16
from export import onnx as onnx_format
from export import openvino as ov_format
from export import tensorrt as trt_format
from export import torchscript as ts_format
from export.bench import time_interleaved
from export.manifest import artifact_entry
from export.runner import TOLERANCE, softmax_groups
from zoo.environment import exact_fp32, machine_facts
from zoo.io import write_json
from zoo.models import build_model
from zoo.registry import ModelSpec, get_variant

Runner = Callable[[np.ndarray], np.ndarray]
MODELS = {
    "edgenext": "edgenext_split",
    "convnextv2": "convnextv2_tiny_split",
    "b3": "b3_concat40",
    "tiny": "tiny_split",
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--batch", type=int, default=4, help="images per batch (default 4)")
    p.add_argument("--size", type=int, default=224, help="input size in px (default 224)")
    p.add_argument("--rounds", type=int, default=25, help="timed rounds (default 25)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls per format (default 3)")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma list of: {', '.join(MODELS)}")
    p.add_argument("--json", type=Path, help="also write the rows and the summary here")
    p.add_argument(
        "--gap-ms",
        type=float,
        default=200.0,
        help="idle ms before each timed call, so spinning threads settle (default 200)",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=0,
        help="torch.set_num_threads for eager and TorchScript (default 0: torch's own choice)",
    )
    return p.parse_args()


def first_model(variant: str, size: int) -> ModelSpec:
    """The variant's first model (sagittal_t1 of a split) at the requested input size."""
    spec = get_variant(variant).models[0]
    return dataclasses.replace(spec, plan=dataclasses.replace(spec.plan, size=size))


def eager_runner(model: torch.nn.Module, device: str, dtype: torch.dtype) -> Runner:
    """Plain PyTorch, returning host arrays like every exported format's runner."""

    @torch.inference_mode()
    def run(x: np.ndarray) -> np.ndarray:
        return model(torch.from_numpy(x).to(device, dtype)).float().cpu().numpy()

    return run


def max_diff(runners: dict[str, Runner], x: np.ndarray, reference: str) -> dict[str, float]:
    """Largest probability difference against the reference: a wrong export is not faster."""
    ref = softmax_groups(runners[reference](x))
    return {
        name: float(np.abs(softmax_groups(run(x)) - ref).max()) for name, run in runners.items()
    }


def cpu_runners(
    model: torch.nn.Module, example: torch.Tensor, folder: Path
) -> tuple[dict[str, Runner], dict[str, str]]:
    """eager, TorchScript, ONNX Runtime and OpenVINO of one model on the CPU, built with the
    project's own exporters and loaders; OpenVINO comes back as a reason when it cannot."""
    meta = {"bench": "bench_inference"}
    ts_path, onnx_path = folder / "model.torchscript", folder / "model.onnx"
    ts_format.export(copy.deepcopy(model), example, ts_path, meta, {})
    onnx_format.export(copy.deepcopy(model), example, onnx_path, meta, {})
    runners = {
        "eager fp32": eager_runner(model, "cpu", torch.float32),
        "torchscript": ts_format.load(ts_path, "cpu"),
        "onnxruntime": onnx_format.load(onnx_path, "cpu"),
    }
    skipped = {}
    reason = ov_format.unavailable("cpu")
    if reason:
        skipped["openvino"] = reason
    else:
        onnx = {**artifact_entry(folder, onnx_path), "status": "ok"}
        options = {"export_dir": folder, "fold_entries": {"onnx": onnx}}
        ov_format.export(model, example, folder / "model.xml", meta, options)
        runners[f"openvino {ov_format.cpu_precision()}"] = ov_format.load(folder / "model.xml")
    return runners, skipped


def precision_of(name: str) -> str:
    """The precision a row is checked at (the kernel's proof tolerance)."""
    for precision in ("bf16", "fp16"):
        if precision in name:
            return precision
    return "fp32"


def gpu_runners(
    model: torch.nn.Module, example: torch.Tensor, folder: Path, spec: ModelSpec
) -> tuple[dict[str, Runner], dict[str, str]]:
    """Every GPU runtime the kernel may pick, built with the project's own loaders; the ones
    that cannot be built here come back as reasons."""
    checkpoint = folder / "model.pt"
    torch.save({"model": model.state_dict()}, checkpoint)
    onnx_path = folder / "model.onnx"
    if not onnx_path.is_file():
        onnx_format.export(copy.deepcopy(model), example, onnx_path, {}, {})
    cuda = example.cuda()
    fp32, fp16 = copy.deepcopy(model).cuda(), copy.deepcopy(model).cuda().half()

    def exact(run: Runner) -> Runner:
        return lambda x: _exact(run, x)

    builders = {
        "cuda eager fp32": lambda: exact(eager_runner(fp32, "cuda", torch.float32)),
        "cuda eager fp16": lambda: eager_runner(fp16, "cuda", torch.float16),
        "eager fp16 channels_last": lambda: eager_fp16.load(checkpoint, "cuda", spec),
        "torchscript fp16": lambda: _torchscript_fp16(model, cuda, folder),
        "torch.compile": lambda: compiled.load(checkpoint, "cuda", spec, batch=len(example)),
        "onnxruntime cuda": lambda: onnx_format.load(onnx_path, "cuda"),
        "tensorrt fp16": lambda: _tensorrt_fp16(onnx_path, folder, example),
    }
    runners, skipped = {}, {}
    for name, build in builders.items():
        try:
            runners[name] = build()
        except Exception as err:  # noqa: BLE001 - a row with its reason
            skipped[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
    return runners, skipped


def _exact(run: Runner, x: np.ndarray) -> np.ndarray:
    with exact_fp32():
        return run(x)


def _torchscript_fp16(model: torch.nn.Module, example: torch.Tensor, folder: Path) -> Runner:
    path = folder / "model_fp16.torchscript"
    ts_format.export(copy.deepcopy(model).cuda(), example, path, {}, {"half": True})
    return ts_format.load(path, "cuda")


def _tensorrt_fp16(onnx_path: Path, folder: Path, example: torch.Tensor) -> Runner:
    reason = trt_format.unavailable("cuda")
    if reason:
        raise RuntimeError(reason)
    engine, batch = folder / "model_fp16.engine", example.shape[0]
    twin = onnx_path.with_name(onnx_format.FP16_NAME)
    shape = tuple(example.shape[1:])
    trt_format.build_engine(twin, engine, shape, "fp16", batch, batch, folder / "timing.cache")
    return trt_format.load(engine, "cuda")


def bench_model(key: str, args: argparse.Namespace, gpu: bool) -> list[dict]:
    """Rows (model, format, p50 ms, eager/format, max |diff|) for one model."""
    spec = first_model(MODELS[key], args.size)
    torch.manual_seed(0)
    model = build_model(spec, quiet=True).eval()
    example = torch.randn(args.batch, spec.plan.in_chans, args.size, args.size)
    x = example.numpy()
    label = f"{key} ({spec.backbone.split('.')[0]})"
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as tmp:
        groups = [("eager fp32", lambda: cpu_runners(model, example, Path(tmp)))]
        if gpu:
            groups.append(("cuda eager fp32", lambda: gpu_runners(model, example, Path(tmp), spec)))
        for reference, make in groups:
            runners, skipped = make()
            diffs = max_diff(runners, x, reference)
            p50 = time_interleaved(runners, x, args.rounds, args.warmup, args.gap_ms / 1000)
            for name, ms in p50.items():
                tolerance = TOLERANCE[precision_of(name)][0]
                rows.append(
                    {
                        "model": label,
                        "format": name,
                        "device": "cpu" if reference == "eager fp32" else "cuda",
                        "p50_ms": ms,
                        "speedup": p50[reference] / ms,
                        "max_prob_diff": diffs[name],
                        "parity": "ok" if diffs[name] <= tolerance else "failed",
                    }
                )
            rows += [{"model": label, "format": n, "skipped": why} for n, why in skipped.items()]
    return rows


def print_rows(rows: list[dict]) -> None:
    print(
        f"\n{'model':<30}{'format':<26}{'p50 ms':>9}{'eager/fmt':>11}{'max|dp|':>10}{'parity':>8}"
    )
    for r in rows:
        if "skipped" in r:
            print(f"{r['model']:<30}{r['format']:<26}  skipped: {r['skipped']}")
            continue
        print(
            f"{r['model']:<30}{r['format']:<26}{r['p50_ms']:>9.2f}{r['speedup']:>10.2f}x"
            f"{r['max_prob_diff']:>10.1e}{r['parity']:>8}"
        )


def best_per_model(rows: list[dict]) -> dict[str, dict]:
    """Per model, the fastest CPU format (eager aside) whose probabilities pass parity."""
    best = {}
    for r in rows:
        if r.get("device") != "cpu" or r["format"] == "eager fp32" or r["parity"] != "ok":
            continue
        if r["model"] not in best or r["p50_ms"] < best[r["model"]]["p50_ms"]:
            best[r["model"]] = r
    return best


def main() -> None:
    args = parse_args()
    print(f"start: {load_note()}")
    if args.torch_threads > 0:
        # On a shared 2-core machine torch's two threads wait on each other whenever a
        # neighbour holds a core; one thread can then be several times faster.
        torch.set_num_threads(args.torch_threads)
    gpu_reason = None if torch.cuda.is_available() else "no CUDA device"
    print(
        f"batch {args.batch}, {args.size} px, {args.rounds} interleaved rounds after "
        f"{args.warmup} warm-up calls; torch threads {torch.get_num_threads()}"
    )
    rows = []
    for key in args.models.split(","):
        rows += bench_model(key.strip(), args, gpu_reason is None)
    print_rows(rows)
    if gpu_reason is not None:
        print(f"\nGPU part skipped: {gpu_reason}")
    best = best_per_model(rows)
    summary = "best CPU format that passes parity, eager/format: " + "; ".join(
        f"{m} {r['format']} {r['speedup']:.2f}x" for m, r in best.items()
    )
    print(f"\nend: {load_note()}")
    print(f"summary: {summary}")
    if args.json:
        write_json(
            args.json,
            {
                "script": "bench_inference",
                "batch": args.batch,
                "size": args.size,
                "rounds": args.rounds,
                "torch_threads": torch.get_num_threads(),
                "machine": machine_facts(),
                "rows": rows,
                "best": {
                    m: {k: r[k] for k in ("format", "p50_ms", "speedup")} for m, r in best.items()
                },
                "summary": summary,
            },
        )


if __name__ == "__main__":
    main()
