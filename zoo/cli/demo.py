"""`zoo demo`: the whole product on built-in synthetic data, one stage after another.

synth -> prepare -> train VARIANT -> export -> bench -> package -> predict (offline, from
the package alone) -> score. Each finished stage leaves a record of what it produced; a rerun
reuses it (training resumes from its last epoch if it was interrupted). The data and the cache
are shared by every variant (DIR/data, DIR/cache); the rest lives in DIR/VARIANT/.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np

from zoo.io import write_json

DEMO_VARIANTS = ("tiny_split", "two_stage_tiny")  # CPU-sized
DEMO_FOLDS = [0, 1]  # two folds x three models: about three minutes on two CPU cores
TEST_STUDIES = 10


def stage(out: Path, name: str, work: Callable[[], dict]) -> dict:
    """Run `work` once; later runs return its recorded result."""
    record = out / "stages" / f"{name}.json"
    if record.is_file():
        click.echo(f"[{name}] done earlier, reused ({record})")
        return json.loads(record.read_text())
    click.echo(f"[{name}] running ...")
    start = time.perf_counter()
    result = work()
    result["seconds"] = round(time.perf_counter() - start, 1)
    write_json(record, result)
    click.echo(f"[{name}] finished in {result['seconds']} s")
    return result


def synth_stage(out: Path, studies: int) -> dict:
    from zoo.synth import make_synthetic_dataset

    summary = make_synthetic_dataset(out / "data", studies=studies, test_studies=TEST_STUDIES)
    return {"data": str(summary.out), "files": summary.files}


def prepare_stage(out: Path) -> dict:
    from zoo.prepare import prepare

    summary = prepare(out / "data", out / "cache", size=128, workers=2)
    return {"cache": str(out / "cache"), "summary": str(summary)}


def train_stage(out: Path, variant: str, device: str) -> dict:
    from train.config import TrainConfig
    from train.run import run_training

    run = out / variant / "run"
    cfg = TrainConfig.for_variant(
        variant,
        out / "data",
        run,
        cache=str(out / "cache"),
        folds=DEMO_FOLDS,
        device=device,
        workers=0,
    )
    cv = run_training(cfg, resume=(run / "config.json").is_file())
    return {
        "run": str(run),
        "cv": cv["score"],
        "cv_prior": cv["prior_score"],
        "cv_studies": cv["studies"],
    }


def export_stage(out: Path, device: str) -> dict:
    from export.formats import parse_formats
    from export.run import export_run

    manifest = export_run(out / "run", parse_formats("all"), device=device)
    statuses = {
        f"{name}/{fmt}": entry["status"]
        for name, model in manifest["models"].items()
        for fmt, entry in model["folds"]["0"].items()
    }
    return {"manifest": str(out / "run" / "export" / "manifest.json"), "fold0": statuses}


def bench_stage(out: Path, device: str) -> dict:
    from export.bench import bench_run, format_table

    table = bench_run(out / "run", device=device, batch_size=4, runs=10)
    return {
        "table": format_table(
            table[
                [
                    "model",
                    "format",
                    "status",
                    "reason",
                    "p50_ms",
                    "items_per_s",
                    "max_abs_prob_diff",
                    "device",
                ]
            ]
        ),
        "png": str(out / "run" / "export" / "bench.png"),
    }


def package_stage(work: Path, variant: str) -> dict:
    from kaggle_kernel.package import kaggle_username, package

    owner = kaggle_username() or "zoo-demo"  # the demo's package is not meant for upload
    slug = f"zoo-{variant.replace('_', '-')}"
    return package(work / "run", work / "kaggle_dataset", dataset_id=f"{owner}/{slug}")


def predict_stage(out: Path, work: Path, device: str) -> dict:
    """Predict in a fresh process with networking disabled when the OS allows it."""
    import subprocess
    import sys

    from kaggle_kernel.offline import no_network_prefix

    no_net = no_network_prefix()
    submission = work / "submission.csv"
    cmd = [
        *no_net,
        sys.executable,
        "-m",
        "zoo.cli",
        "predict",
        "--model",
        str(work / "kaggle_dataset"),
        "--data",
        str(out / "data"),
        "--out",
        str(submission),
        "--device",
        device,
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise click.ClickException(f"predict failed:\n{result.stderr[-2000:]}")
    return {
        "submission": str(submission),
        "offline": bool(no_net),
        "log": result.stdout.strip().splitlines()[-1],
    }


def score_stage(out: Path, work: Path) -> dict:
    """The test score and, as the bar to beat, the class prior of the training labels."""
    import pandas as pd

    from zoo.competition import encode_labels, read_csv
    from zoo.metric import class_prior, score_terms, submission_from_probs

    solution = pd.read_csv(out / "data" / "test_solution.csv")
    test = score_terms(solution, pd.read_csv(work / "submission.csv"))
    labels = encode_labels(read_csv(out / "data" / "train.csv"))
    studies = sorted({int(r.split("_")[0]) for r in solution["row_id"]})
    prior = np.tile(class_prior(labels), (len(studies), 1, 1))
    baseline = score_terms(solution, submission_from_probs(studies, prior))
    return {"test": test, "test_prior": baseline["score"], "test_studies": len(studies)}


def run_demo(
    out: Path, studies: int = 60, device: str = "auto", variant: str = DEMO_VARIANTS[0]
) -> str:
    """Run every stage (reusing finished ones) and return the summary text."""
    out = Path(out)
    work = out / variant
    start = time.perf_counter()
    data = stage(out, "synth", lambda: synth_stage(out, studies))
    stage(out, "prepare", lambda: prepare_stage(out))
    trained = stage(work, "train", lambda: train_stage(out, variant, device))
    stage(work, "export", lambda: export_stage(work, device))
    bench = stage(work, "bench", lambda: bench_stage(work, device))
    packaged = stage(work, "package", lambda: package_stage(work, variant))
    predicted = stage(work, "predict", lambda: predict_stage(out, work, device))
    scored = stage(work, "score", lambda: score_stage(out, work))
    return summary_text(
        variant, data, trained, bench, packaged, predicted, scored, time.perf_counter() - start
    )


def summary_text(variant, data, trained, bench, packaged, predicted, scored, seconds) -> str:
    run = Path(trained["run"])
    manifest = json.loads((run / "export" / "manifest.json").read_text())
    selected = ", ".join(
        f"{name}: {m['selected']['format']}"
        for name, m in manifest["models"].items()
        if m.get("selected")
    )
    test, prior = scored["test"]["score"], scored["test_prior"]
    verdict = "beats" if test < prior else "does NOT beat"
    lines = [
        "",
        "=" * 78,
        f"zoo demo: {variant} on synthetic data ({data['files']} DICOM files), {seconds:.0f} s",
        "=" * 78,
        "Scores (official metric, lower is better):",
        f"  CV  (out-of-fold, {trained['cv_studies']} studies, folds {DEMO_FOLDS}): "
        f"{trained['cv']:.4f}   class prior {trained['cv_prior']:.4f}",
        f"  test ({scored['test_studies']} held-out studies, predicted offline from the package): "
        f"{test:.4f}   class prior {prior:.4f}",
        f"  -> the model {verdict} the class prior on the test studies by {prior - test:+.4f}",
        "",
        "Bench (fold 0, batch 4):",
        *("  " + line for line in bench["table"].splitlines()),
        f"  selected: {selected}",
        "",
        "Where things are:",
        f"  data        {data['data']}",
        f"  run         {run}  (checkpoints, cv.json, oof_submission.csv)",
        f"  exports     {run / 'export'}  (manifest.json with sha256 and parity)",
        f"  package     {packaged['out']}  (kernel/ inside; upload: see `zoo package --help`)",
        f"  submission  {predicted['submission']}"
        + ("  (networking disabled)" if predicted.get("offline") else ""),
        "Plots:",
        f"  {run / 'curves.png'}",
        f"  {bench['png']}",
    ]
    return "\n".join(lines)
