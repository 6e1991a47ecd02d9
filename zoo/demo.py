"""`zoo demo`: the whole path on built-in synthetic data, one stage after another.

Each finished stage leaves DIR/stages/<name>.json with what it produced; a rerun reuses it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np

from zoo.io import write_json


def _stage(out: Path, name: str, work: Callable[[], dict]) -> dict:
    """Run `work` once; later runs return its recorded result."""
    record = out / "stages" / f"{name}.json"
    if record.is_file():
        click.echo(f"[{name}] reused ({record})")
        return json.loads(record.read_text())
    click.echo(f"[{name}] running")
    start = time.perf_counter()
    result = work()
    result["seconds"] = round(time.perf_counter() - start, 1)
    write_json(record, result)
    return result


def _synth(out: Path, studies: int) -> dict:
    from zoo.synth import make_synthetic_dataset

    summary = make_synthetic_dataset(out / "data", studies=studies, test_studies=5, seed=0)
    return {"data": str(summary.out), "files": summary.files}


def _prepare(out: Path) -> dict:
    from zoo.prepare import prepare

    summary = prepare(out / "data", out / "cache", size=128, workers=2)
    return {"cache": str(out / "cache"), "summary": str(summary)}


def _prior_baseline(out: Path) -> dict:
    """Score the class-prior constant on the synthetic test solution: the bar to beat."""
    import pandas as pd

    from zoo.competition import encode_labels, read_csv
    from zoo.metric import class_prior, score_terms, submission_from_probs

    labels = encode_labels(read_csv(out / "data" / "train.csv"))
    solution = pd.read_csv(out / "data" / "test_solution.csv")
    studies = sorted({int(r.split("_")[0]) for r in solution["row_id"]})
    prior = np.tile(class_prior(labels), (len(studies), 1, 1))
    return {
        "prior_test_score": score_terms(solution, submission_from_probs(studies, prior))["score"]
    }


def run_demo(out: Path, studies: int = 60, device: str = "auto") -> str:
    """Run every stage that exists so far and return the summary text."""
    out = Path(out)
    data = _stage(out, "synth", lambda: _synth(out, studies))
    cache = _stage(out, "prepare", lambda: _prepare(out))
    prior = _stage(out, "prior", lambda: _prior_baseline(out))
    return "\n".join(
        [
            "",
            "zoo demo summary",
            f"  data:   {data['data']} ({data['files']} DICOM files)",
            f"  cache:  {cache['cache']}: {cache['summary']}",
            f"  class-prior score on the synthetic test studies: {prior['prior_test_score']:.4f}",
        ]
    )
