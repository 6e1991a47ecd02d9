"""`zoo bench`: latency of eager PyTorch and every exported format, side by side.

One row per (model, format), even when a format failed, is unavailable here or was never
exported. Timed on the first finished fold (folds share one architecture) after a warm-up.
The fastest format that passed parity on this device becomes the model's `selected` format in
the manifest, which the Kaggle kernel loads.
"""

from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from export.formats import FORMATS
from export.manifest import read_manifest, verified_path, write_manifest
from zoo.errors import ZooError
from zoo.io import atomic_write, write_csv, write_json
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


def bench_row(
    name: str,
    fmt_name: str,
    entry: dict | None,
    export_dir: Path,
    spec,
    device: str,
    x: np.ndarray,
    runs: int,
) -> dict:
    fmt = FORMATS[fmt_name]
    row = {"model": name, "format": fmt_name, "device": device, "status": "ok", "reason": None}
    reason = fmt.impl().unavailable(device)
    if reason:
        return {**row, "status": "unavailable", "reason": reason}
    if entry is None:
        return {**row, "status": "not_exported", "reason": f"run `zoo export --fmt {fmt_name}`"}
    row.update(
        precision=entry.get("precision"),
        size_mb=round(entry.get("bytes", 0) / 2**20, 2),
        max_abs_prob_diff=(entry.get("parity") or {}).get("max_abs_prob_diff"),
    )
    if entry["status"] != "ok":
        return {**row, "status": entry["status"], "reason": entry.get("reason")}
    try:
        path = verified_path(export_dir, entry)
    except ZooError as err:
        return {**row, "status": "corrupt", "reason": str(err)}
    try:
        runner = fmt.impl().load(path, device, spec)
        p50, p90 = time_runner(runner, x, runs)
    except Exception as err:  # noqa: BLE001 - a row with the reason, never a crash
        return {**row, "status": "run_failed", "reason": f"{type(err).__name__}: {err}"}
    return {
        **row,
        "p50_ms": round(p50, 3),
        "p90_ms": round(p90, 3),
        "items_per_s": round(len(x) / (p50 / 1000), 1),
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


def select_formats(manifest: dict, table: pd.DataFrame, device: str) -> dict[str, str]:
    """Per model, the fastest format that passed parity and ran on this device."""
    selected = {}
    for name, rows in table[table["status"] == "ok"].groupby("model"):
        best = rows.sort_values("p50_ms").iloc[0]
        selected[name] = best["format"]
        manifest["models"][name]["selected"] = {
            "format": best["format"],
            "device": device,
            "p50_ms": best["p50_ms"],
            "reason": "fastest format that passed parity in `zoo bench`",
        }
    return selected


def bench_run(
    run_dir: Path, device: str = "auto", batch_size: int = 8, runs: int = 20
) -> pd.DataFrame:
    run = read_run(run_dir)
    export_dir = run.root / "export"
    manifest = read_manifest(export_dir)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    rows = []
    rng = np.random.default_rng(0)
    jobs = [(spec, m) for spec in run.specs if (m := manifest["models"].get(spec.name))]
    for spec, model in tqdm(jobs, desc="bench", unit="model"):
        fold = sorted(model["folds"], key=int)[0]
        entries = model["folds"][fold]
        x = rng.standard_normal((batch_size, *model["input_shape"])).astype(np.float32)
        for fmt_name in FORMATS:
            rows.append(
                bench_row(
                    spec.name, fmt_name, entries.get(fmt_name), export_dir, spec, device, x, runs
                )
            )
    table = pd.DataFrame(rows, columns=COLUMNS)
    selected = select_formats(manifest, table, device)
    info = {
        "device": device,
        "gpu": torch.cuda.get_device_name() if device == "cuda" else None,
        "cpu": platform.processor() or platform.machine(),
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
