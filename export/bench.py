"""`zoo bench`: latency of eager PyTorch and every runtime, side by side, like for like.

One row per (model, format), even when a format failed, is unavailable here or was never
exported. Timed on the first finished fold (folds share one architecture) after a warm-up, at
the kernel's batch by default, on the model's reference input (a real validation study). A row
counts only if its runtime passes the kernel's proof (`export.runner.prove`) on this device.
fp32 rows run with TF32 off, fp16 rows (eager fp16, compile, TorchScript/TensorRT built with
--half) are compared with the fp32 reference at the fp16 tolerance. The fastest row that passed
becomes the model's `selected` format in the manifest, with the machine that measured it; the
kernel treats it as its first candidate and re-times on its own GPU.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from export.formats import FORMATS, Format, precision_of
from export.manifest import read_manifest, verified_path, write_manifest
from export.runner import KERNEL_BATCH, Runner, prove, reference_batch
from zoo.environment import machine_facts, resolve_device
from zoo.errors import ZooError
from zoo.io import atomic_write, write_csv, write_json
from zoo.runinfo import export_dir as export_dir_of
from zoo.runinfo import read_run

COLUMNS = [
    "model",
    "format",
    "status",
    "reason",
    "precision",
    "size_mb",
    "p50_ms",
    "p90_ms",
    "items_per_s",
    "max_abs_prob_diff",
    "device",
]


def time_runner(runner, x: np.ndarray, runs: int, warmup: int = 3) -> tuple[float, float]:
    """p50 and p90 milliseconds per batch. Runners return host arrays, which synchronises CUDA."""
    for _ in range(warmup):
        runner(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner(x)
        times.append((time.perf_counter() - start) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 90))


def time_interleaved(
    runners: dict[str, Runner], x: np.ndarray, rounds: int, warmup: int, gap_s: float = 0.0
) -> dict[str, float]:
    """p50 ms per batch of each runner, timed in turns (each round in a rotated order) so a
    disturbance (another process's burst, a clock ramping up) falls on every runner alike
    rather than on whichever ran then. CUDA runners return host arrays, which synchronises.
    `gap_s` of idle time before each timed call lets the previous runtime's threads stop
    spinning (OpenMP and ONNX Runtime keep spinning for a while after a run), so no format is
    timed against another's leftovers."""
    for run in runners.values():
        for _ in range(warmup):
            run(x)
    names, times = list(runners), {name: [] for name in runners}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            time.sleep(gap_s)
            start = time.perf_counter()
            runners[name](x)
            times[name].append((time.perf_counter() - start) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def model_bytes(entry: dict) -> int:
    """What a row's runner loads: the artifact and its weights file (OpenVINO's model.bin),
    not the fp16 twin or the timing cache that `entry_files` also names for packaging."""
    weights = entry.get("weights")
    return entry.get("bytes", 0) + (weights.get("bytes", 0) if isinstance(weights, dict) else 0)


def model_reference(export_dir: Path, model: dict, entries: dict) -> tuple[np.ndarray, np.ndarray]:
    """(reference input uint8, eager logits on its kernel batch) of one model and fold."""
    image = np.load(verified_path(export_dir, model["reference"]))
    return image, np.asarray(entries["torch"]["reference_logits"], np.float32)


def bench_row(
    name: str,
    fmt: Format,
    entries: dict,
    export_dir: Path,
    spec,
    device: str,
    reference: tuple[np.ndarray, np.ndarray],
    batch_size: int,
    runs: int,
    work: Path,
) -> dict:
    row = {"model": name, "format": fmt.name, "device": device, "status": "ok", "reason": None}
    reason = fmt.impl().unavailable(device)
    if reason:
        return {**row, "status": "unavailable", "reason": reason}
    entry = entries.get(fmt.artifact)
    if entry is None:
        return {**row, "status": "not_exported", "reason": f"run `zoo export --fmt {fmt.name}`"}
    row.update(
        precision=precision_of(fmt, entry),
        size_mb=round(model_bytes(entry) / 2**20, 2),
        max_abs_prob_diff=(entry.get("parity") or {}).get("max_abs_prob_diff"),
    )
    if entry.get("status") != "ok" and fmt.name == fmt.artifact:
        return {**row, "status": entry["status"], "reason": entry.get("reason")}
    try:
        runner, _ = fmt.load_shipped(export_dir, entries, spec, device, work)
    except ZooError as err:
        return {**row, "status": "corrupt", "reason": str(err)}
    except Exception as err:  # noqa: BLE001 - a row with the reason, never a crash
        return {**row, "status": "load_failed", "reason": f"{type(err).__name__}: {err}"}
    failed = prove(runner, *reference, row["precision"], spec.kind)
    if failed:
        return {**row, "status": "proof_failed", "reason": failed}
    try:
        p50, p90 = time_runner(runner, reference_batch(reference[0], batch_size), runs)
    except Exception as err:  # noqa: BLE001
        return {**row, "status": "run_failed", "reason": f"{type(err).__name__}: {err}"}
    return {
        **row,
        "p50_ms": round(p50, 3),
        "p90_ms": round(p90, 3),
        "items_per_s": round(batch_size / (p50 / 1000), 1),
    }


def plot_bench(table: pd.DataFrame, path: Path) -> None:
    import matplotlib.pyplot as plt

    ok = table[table["status"] == "ok"]
    models = list(dict.fromkeys(table["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(4 * len(models), 3.2), squeeze=False)
    for ax, name in zip(axes[0], models, strict=True):
        rows = ok[ok["model"] == name]
        ax.barh(rows["format"], rows["p50_ms"], color="tab:blue")
        ax.set_title(f"{name}: p50 ms/batch")
        for other in table[(table["model"] == name) & (table["status"] != "ok")]["format"]:
            ax.barh(other, 0)
            ax.text(0, other, f" {other}: n/a", va="center", fontsize=8, color="gray")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=90))
    plt.close(fig)


def select_formats(
    manifest: dict, table: pd.DataFrame, device: str, batch: int, machine: dict | None = None
) -> dict:
    """Per model, the fastest format that passed parity and the proof on this device
    (`machine`: `machine_facts()`, taken here when the caller has not)."""
    selected, measured_on = {}, machine or machine_facts()
    for name, rows in table[table["status"] == "ok"].groupby("model"):
        best = rows.sort_values("p50_ms").iloc[0]
        selected[name] = best["format"]
        manifest["models"][name]["selected"] = {
            "format": best["format"],
            "device": device,
            "p50_ms": best["p50_ms"],
            "batch": batch,
            "measured_on": measured_on,
            "reason": "fastest proven format in `zoo bench`; the kernel re-times on its GPU",
        }
    return selected


def bench_run(
    run_dir: Path, device: str = "auto", batch_size: int = KERNEL_BATCH, runs: int = 20
) -> pd.DataFrame:
    run = read_run(run_dir)
    export_dir = export_dir_of(run.root)
    manifest = read_manifest(export_dir)
    device = resolve_device(device)
    rows = []
    jobs = [(spec, m) for spec in run.specs if (m := manifest["models"].get(spec.name))]
    with tempfile.TemporaryDirectory(prefix="zoo_bench_") as work:
        for spec, model in tqdm(jobs, desc="bench", unit="model"):
            entries = model["folds"][sorted(model["folds"], key=int)[0]]
            reference = model_reference(export_dir, model, entries)
            for fmt in FORMATS.values():
                rows.append(
                    bench_row(
                        spec.name,
                        fmt,
                        entries,
                        export_dir,
                        spec,
                        device,
                        reference,
                        batch_size,
                        runs,
                        Path(work),
                    )
                )
    table = pd.DataFrame(rows, columns=COLUMNS)
    machine = machine_facts()  # nvidia-smi and every library's version: once
    selected = select_formats(manifest, table, device, batch_size, machine)
    info = {
        "device": device,
        "machine": machine,
        "threads": torch.get_num_threads(),
        "batch_size": batch_size,
        "runs": runs,
        "selected": selected,
    }
    manifest["bench"] = info
    write_json(export_dir / "bench.json", {**info, "rows": table.to_dict(orient="records")})
    write_csv(export_dir / "bench.csv", table)
    plot_bench(table, export_dir / "bench.png")
    write_manifest(export_dir, manifest)
    return table


def format_table(table: pd.DataFrame) -> str:
    shown = table.drop(columns=["device"]).copy()
    shown["max_abs_prob_diff"] = shown["max_abs_prob_diff"].map(
        lambda v: "" if pd.isna(v) else f"{v:.1e}"
    )
    blanked = shown.astype(object).where(shown.notna(), "")  # a float column cannot hold ""
    return blanked.to_string(index=False, max_colwidth=70)


def study_cost(run_dir: Path) -> dict[str, float]:
    """Model milliseconds per study in the kernel, per model: the selected format's p50 per
    batch over the batch, times the folds (each fold runs). Decoding is not included."""
    manifest = read_manifest(export_dir_of(Path(run_dir)))
    cost = {}
    for name, model in manifest["models"].items():
        selected = model.get("selected")
        if selected:
            cost[name] = selected["p50_ms"] / selected["batch"] * len(model["folds"])
    return cost


def format_cost(costs: dict[str, dict[str, float]]) -> str:
    """Per run, each model's ms per study and their sum; with several runs, the ensemble's."""
    lines = ["model time per study (selected formats, every fold; decoding not included):"]
    for run, cost in costs.items():
        parts = " + ".join(f"{name} {ms:.1f}" for name, ms in cost.items())
        lines.append(f"  {run}: {parts} = {sum(cost.values()):.1f} ms")
    if len(costs) > 1:
        total = sum(sum(c.values()) for c in costs.values())
        lines.append(f"  ensemble of {len(costs)} runs: {total:.1f} ms per study")
    return "\n".join(lines)
