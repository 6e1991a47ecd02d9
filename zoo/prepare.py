"""`zoo prepare`: every study's DICOM series -> the PNG cache that training reads.

Layout (the notebooks' cvt_png, 1-based two-digit names):

    CACHE/cache.json                          size, policy, split: a rerun must match them
    CACHE/index.csv                           one row per study and series type
    CACHE/<study>/meta.json                   what was picked from which series, and why
    CACHE/<study>/{Sagittal T1|Sagittal T2_STIR|Axial T2}/NN.png

A study is written to CACHE/.partial/<study> and renamed into place when complete, so a rerun
skips finished studies and redoes an interrupted one. A study that fails is logged and left out
of the index; the run goes on.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import pandas as pd
from tqdm import tqdm

from zoo.competition import CompetitionData, load_competition
from zoo.constants import SERIES_TYPES, series_folder
from zoo.errors import ZooError
from zoo.io import write_csv, write_json
from zoo.policies import DEFAULT_POLICY, POLICIES
from zoo.reader import read_series_images

log = logging.getLogger(__name__)
CACHE_FORMAT = 1


@dataclass(frozen=True)
class StudyJob:
    """Everything a worker process needs to convert one study (picklable)."""

    study_id: int
    study_dir: Path  # DATA/{split}_images/<study>
    series: dict[str, list[int]]  # series type -> candidate series ids
    labelled: dict[int, list[int]]  # series id -> labelled instance numbers (seed policy)
    out_dir: Path
    size: int
    policy: str


@dataclass
class StudyResult:
    study_id: int
    rows: list[dict] = field(default_factory=list)  # index.csv rows
    slices: int = 0
    skipped_files: list[str] = field(default_factory=list)
    error: str | None = None


def _convert_series(job: StudyJob, series_type: str, target: Path, result: StudyResult) -> None:
    read = read_series_images(
        job.study_dir,
        series_type,
        job.series.get(series_type, []),
        job.policy,
        job.size,
        job.labelled,
    )
    if read.images:
        folder = target / series_folder(series_type)
        folder.mkdir(parents=True)
        for k, image in enumerate(read.images):
            cv2.imwrite(str(folder / f"{k + 1:02d}.png"), image)
    result.slices += len(read.images)
    result.skipped_files += read.skipped
    result.rows.append(
        {
            "study_id": job.study_id,
            "series_type": series_type,
            "series_id": read.series_id,
            "n_slices": read.n_slices,
            "ordered_by": read.ordered_by,
            "instance_numbers": " ".join(map(str, read.instance_numbers)),
            "status": read.status,
        }
    )


def convert_study(job: StudyJob) -> StudyResult:
    """Convert one study into job.out_dir/<study>; never raises (errors go into the result)."""
    cv2.setNumThreads(1)  # the pool already uses every core
    result = StudyResult(job.study_id)
    final = job.out_dir / str(job.study_id)
    partial = job.out_dir / ".partial" / str(job.study_id)
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        for series_type in SERIES_TYPES:
            _convert_series(job, series_type, partial, result)
        meta = {
            "study_id": job.study_id,
            "series": result.rows,
            "skipped_files": result.skipped_files,
        }
        (partial / "meta.json").write_text(json.dumps(meta, indent=2))
        partial.rename(final)
    except Exception as err:  # noqa: BLE001 - one bad study must not abort the run
        result.error = f"{type(err).__name__}: {err}"
        shutil.rmtree(partial, ignore_errors=True)
    return result


def _check_cache_settings(out: Path, settings: dict) -> None:
    path = out / "cache.json"
    if path.is_file():
        old = json.loads(path.read_text())
        for key, value in settings.items():
            if old.get(key) != value:
                raise ZooError(
                    f"{path}: cache was made with {key}={old.get(key)!r}, not {value!r}; "
                    "use another --out or delete it"
                )
    write_json(path, settings)


def make_jobs(data: CompetitionData, out: Path, size: int, policy: str) -> list[StudyJob]:
    jobs = []
    for study_id in data.study_ids:
        series = data.series_of(study_id)
        labelled = {
            sid: data.labelled_instances(study_id, sid) for ids in series.values() for sid in ids
        }
        jobs.append(
            StudyJob(study_id, data.images_dir / str(study_id), series, labelled, out, size, policy)
        )
    return jobs


def read_index(out: Path, study_ids: list[int]) -> pd.DataFrame:
    rows = []
    for study_id in study_ids:
        meta = out / str(study_id) / "meta.json"
        if meta.is_file():
            rows += json.loads(meta.read_text())["series"]
    return pd.DataFrame(
        rows,
        columns=[
            "study_id",
            "series_type",
            "series_id",
            "n_slices",
            "ordered_by",
            "instance_numbers",
            "status",
        ],
    )


@dataclass
class PrepareSummary:
    studies: int
    converted: int
    already_done: int
    failed: dict[int, str]
    slices: int
    skipped_files: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"prepare: {self.studies} studies ({self.converted} converted, "
            f"{self.already_done} already done, {len(self.failed)} failed), "
            f"{self.slices} slices written, {self.skipped_files} files skipped, "
            f"{self.seconds:.1f} s"
        )


def prepare(
    data_dir: Path,
    out: Path,
    size: int = 512,
    workers: int = 1,
    policy: str = DEFAULT_POLICY,
    split: str = "train",
    progress: bool = True,
) -> PrepareSummary:
    """Convert every study of a competition folder to the PNG cache; resumable."""
    start = time.perf_counter()
    if policy not in POLICIES:
        raise ZooError(f"--policy: unknown slice policy {policy!r}; choose from {sorted(POLICIES)}")
    if size < 16:
        raise ZooError(f"--size must be at least 16, not {size}")
    data = load_competition(data_dir, split)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_cache_settings(
        out, {"format": CACHE_FORMAT, "size": size, "policy": policy, "split": split}
    )
    jobs = make_jobs(data, out, size, policy)
    todo = [j for j in jobs if not (out / str(j.study_id) / "meta.json").is_file()]
    results = _run(todo, workers, progress)
    failed = {r.study_id: r.error for r in results if r.error}
    for study_id, error in failed.items():
        log.error("study %s failed: %s", study_id, error)
    shutil.rmtree(out / ".partial", ignore_errors=True)
    write_csv(out / "index.csv", read_index(out, data.study_ids))
    return PrepareSummary(
        studies=len(jobs),
        converted=len(results) - len(failed),
        already_done=len(jobs) - len(todo),
        failed=failed,
        slices=sum(r.slices for r in results),
        skipped_files=sum(len(r.skipped_files) for r in results),
        seconds=time.perf_counter() - start,
    )


def _run(jobs: list[StudyJob], workers: int, progress: bool) -> list[StudyResult]:
    bar = tqdm(total=len(jobs), desc="prepare", unit="study", disable=not progress or not jobs)
    results = []
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            results.append(convert_study(job))
            bar.update()
    else:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            for result in pool.imap_unordered(convert_study, jobs):
                results.append(result)
                bar.update()
    bar.close()
    return results
