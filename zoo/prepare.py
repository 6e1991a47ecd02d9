"""`zoo prepare`: every study's DICOM series -> the cache that training reads.

The layouts are described in `zoo.cache` (npy arrays by default; the notebooks' cvt_png PNGs,
1-based two-digit names, with --layout png).
A study is written to CACHE/.partial/<study> and renamed into place when complete, so a rerun
skips finished studies and redoes an interrupted one. A series that cannot be used (missing,
too few slices of its view, undecodable) is recorded with its reason and has no images; the
other series of the study are still written. A study that fails outright is logged and left
out of the index; the run goes on.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
from tqdm import tqdm

from zoo.cache import (
    CacheSettings,
    claim_settings,
    collect_index,
    series_dir,
    write_series,
)
from zoo.competition import CompetitionData, load_competition
from zoo.constants import CACHE_LAYOUTS, DEFAULT_CACHE_LAYOUT, SERIES_TYPES
from zoo.errors import ZooError
from zoo.io import write_csv
from zoo.policies import DEFAULT_POLICY, POLICIES
from zoo.reader import SeriesImages, read_series_images

log = logging.getLogger(__name__)


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
    layout: str = DEFAULT_CACHE_LAYOUT


@dataclass
class StudyResult:
    study_id: int
    rows: list[dict] = field(default_factory=list)  # index.csv rows, one per series type
    slices: int = 0
    skipped_files: list[str] = field(default_factory=list)
    error: str | None = None


def series_record(study_id: int, read: SeriesImages) -> dict:
    """What meta.json keeps of one series: index.csv's columns plus every picked file."""
    return {
        "study_id": study_id,
        "series_type": read.series_type,
        "series_id": read.series_id,
        "status": read.status,
        "problem": read.problem,
        "n_slices": read.n_slices,
        "planes": read.planes,
        "dropped": len(read.dropped),
        "skipped": len(read.skipped),
        "ordered_by": read.ordered_by,
        "instance_numbers": " ".join(map(str, read.instance_numbers)),
        "transforms": " ".join(sorted({p["transform"] for p in read.picked} - {"canonical"})),
        "picked": read.picked,
        "order": read.order,
        "notes": read.notes + read.dropped + read.skipped,
    }


def convert_study(job: StudyJob) -> StudyResult:
    """Convert one study into job.out_dir/<study>; never raises (errors go into the result)."""
    cv2.setNumThreads(1)  # the pool already uses every core
    result = StudyResult(job.study_id)
    partial = job.out_dir / ".partial" / str(job.study_id)
    try:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        reads = [
            read_series_images(
                job.study_dir, t, job.series.get(t, []), job.policy, job.size, job.labelled
            )
            for t in SERIES_TYPES
        ]
        for read in reads:
            if read.images:
                folder = series_dir(partial.parent, job.study_id, read.series_type)
                write_series(folder, read.images, job.layout)
            result.slices += len(read.images)
            result.skipped_files += read.skipped
            result.rows.append(series_record(job.study_id, read))
        if any(not r.usable or r.skipped or r.dropped for r in reads):
            log.warning("study %s: %s", job.study_id, "; ".join(r.summary() for r in reads))
        meta = {"study_id": job.study_id, "series": result.rows}
        (partial / "meta.json").write_text(json.dumps(meta, indent=2))
        partial.rename(job.out_dir / str(job.study_id))
    except Exception as err:  # noqa: BLE001 - one bad study must not abort the run
        result.error = f"{type(err).__name__}: {err}"
        shutil.rmtree(partial, ignore_errors=True)
    return result


def make_jobs(
    data: CompetitionData, out: Path, size: int, policy: str, layout: str = DEFAULT_CACHE_LAYOUT
) -> list[StudyJob]:
    jobs = []
    for study_id in data.study_ids:
        series = data.series_of(study_id)
        labelled = {
            sid: data.labelled_instances(study_id, sid) for ids in series.values() for sid in ids
        }
        jobs.append(
            StudyJob(
                study_id,
                data.images_dir / str(study_id),
                series,
                labelled,
                out,
                size,
                policy,
                layout,
            )
        )
    return jobs


@dataclass
class PrepareSummary:
    studies: int
    converted: int
    already_done: int
    failed: dict[int, str]
    slices: int
    skipped_files: int
    seconds: float
    series: Counter = field(default_factory=Counter)  # status -> series, over the whole cache
    reoriented: int = 0  # series turned to the canonical in-plane orientation
    blocks: int = 0  # series kept as several tilted blocks
    dropped: int = 0  # slices of other planes or without geometry

    def __str__(self) -> str:
        statuses = ", ".join(f"{n} {s}" for s, n in sorted(self.series.items()))
        return (
            f"prepare: {self.studies} studies ({self.converted} converted, "
            f"{self.already_done} already done, {len(self.failed)} failed), "
            f"{self.slices} slices written, {self.skipped_files} files skipped, "
            f"{self.seconds:.1f} s\n"
            f"  series: {statuses or 'none'}; {self.reoriented} turned to the canonical "
            f"orientation, {self.blocks} read as tilted blocks, {self.dropped} slices dropped "
            "(index.csv and <study>/meta.json say which and why)"
        )


def prepare(
    data_dir: Path,
    out: Path,
    size: int = 512,
    workers: int = 1,
    policy: str = DEFAULT_POLICY,
    split: str = "train",
    progress: bool = True,
    layout: str = DEFAULT_CACHE_LAYOUT,
) -> PrepareSummary:
    """Convert every study of a competition folder to the cache; resumable."""
    start = time.perf_counter()
    if policy not in POLICIES:
        raise ZooError(f"--policy: unknown slice policy {policy!r}; choose from {sorted(POLICIES)}")
    if size < 16:
        raise ZooError(f"--size must be at least 16, not {size}")
    if layout not in CACHE_LAYOUTS:
        raise ZooError(f"--layout: {layout!r} is not one of {', '.join(CACHE_LAYOUTS)}")
    data = load_competition(data_dir, split)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    claim_settings(out, CacheSettings(size, policy, split, layout=layout))
    jobs = make_jobs(data, out, size, policy, layout)
    todo = [j for j in jobs if not (out / str(j.study_id) / "meta.json").is_file()]
    results = _run(todo, workers, progress)
    failed = {r.study_id: r.error for r in results if r.error}
    for study_id, error in failed.items():
        log.error("study %s failed: %s", study_id, error)
    shutil.rmtree(out / ".partial", ignore_errors=True)
    index = collect_index(out, data.study_ids)
    write_csv(out / "index.csv", index)
    return PrepareSummary(
        studies=len(jobs),
        converted=len(results) - len(failed),
        already_done=len(jobs) - len(todo),
        failed=failed,
        slices=sum(r.slices for r in results),
        skipped_files=sum(len(r.skipped_files) for r in results),
        seconds=time.perf_counter() - start,
        series=Counter(index["status"]),
        reoriented=int((index["transforms"].fillna("") != "").sum()),
        blocks=int((index["planes"] > 1).sum()),
        dropped=int(index["dropped"].sum()),
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
