"""Prepare throughput: the notebooks' decode-everything loop against `zoo prepare`.

Every method writes the same pixels (the script decodes every cached slice of each and checks
they are identical), so the only difference is the work done to get there:

  notebook loop   dcmread every file of the largest series with pixels, convert every slice
                  (min-max, cubic resize), then pick the slices and write their PNGs
  prepare w1      headers of every file (stop_before_pixels), decode and convert only the picked
                  slices, write them in the default npy layout (one array per series); one
                  process
  prepare w2      the same with a pool of two processes
  prepare w1 png  one process, the notebooks' PNG layout

The methods run back to back in every round, in a rotating order, each into a fresh folder, and
the median round is reported. Other work may share the CPU, so read the ratios, not the seconds.
A per-file stage breakdown follows, to show what dominates each method.

    .venv/bin/python benchmarks/bench_prepare.py            # 16 studies of 256 px DICOM
    .venv/bin/python benchmarks/bench_prepare.py --json out.json
    .venv/bin/python benchmarks/bench_prepare.py --size 512 --studies 8
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pydicom
from _common import load_note  # benchmarks/ is on sys.path when run as a script

from zoo.cache import SERIES_ARRAY, read_series
from zoo.competition import load_competition
from zoo.constants import SLICES_PER_SERIES, VIEW_OF_SERIES, series_folder
from zoo.dicom import arrange, decode_slice, frames_of, read_headers, slices_of, to_uint8
from zoo.environment import machine_facts
from zoo.geometry import canonical_inplane
from zoo.io import write_json
from zoo.policies import select_slices
from zoo.prepare import prepare
from zoo.reader import MIN_USABLE_SLICES
from zoo.synth import make_synthetic_dataset

Method = Callable[[Path, Path], int]  # (data_dir, out) -> studies converted


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--studies", type=int, default=16, help="synthetic studies (default 16)")
    p.add_argument("--size", type=int, default=256, help="DICOM pixel size (default 256)")
    p.add_argument("--cache-size", type=int, default=512, help="PNG size (default 512)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per method (default 3)")
    p.add_argument("--policy", default="itk8191", help="slice policy (default itk8191)")
    p.add_argument("--seed", type=int, default=0, help="synthetic dataset seed")
    p.add_argument("--json", type=Path, help="also write the figures and the summary here")
    return p.parse_args()


# --- (a) the notebooks' loop ---------------------------------------------------------------


def _notebook_series(folder: Path, series_type: str, size: int, policy: str, out: Path) -> None:
    """Decode and convert every slice of one series, then write the picked ones. The reading
    rules are zoo's (geometry, canonical orientation, odd files), so the PNGs must match."""
    view, wanted = VIEW_OF_SERIES[series_type], SLICES_PER_SERIES[series_type]
    headers, images = [], {}
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        frames = frames_of(path, ds)
        for header in slices_of(path, ds):
            transform = canonical_inplane(header.orientation, view)
            images[header] = to_uint8(transform.apply(frames[header.frame or 0]), size)
            headers.append(header)
    headers, arranged = arrange(headers, view)
    ordered = [headers[i] for i in arranged.order]
    if len(ordered) < MIN_USABLE_SLICES:
        return  # prepare treats such a series as missing
    positions = select_slices(policy, len(ordered), wanted, view)
    target = out / series_folder(series_type)
    target.mkdir(parents=True)
    for k, pos in enumerate(positions):
        cv2.imwrite(str(target / f"{k + 1:02d}.png"), images[ordered[pos]])


def notebook_loop(data_dir: Path, out: Path, size: int, policy: str) -> int:
    """(a): per study and series type, the series with the most files, every file decoded."""
    cv2.setNumThreads(1)  # prepare does the same in its workers: compare one thread with one
    data = load_competition(data_dir, "train")
    for study_id in data.study_ids:
        study_dir = data.images_dir / str(study_id)
        for series_type, series_ids in data.series_of(study_id).items():
            folders = [study_dir / str(s) for s in series_ids if (study_dir / str(s)).is_dir()]
            if folders:
                largest = max(folders, key=lambda f: len(list(f.glob("*.dcm"))))
                _notebook_series(largest, series_type, size, policy, out / str(study_id))
    return len(data.study_ids)


# --- timing ----------------------------------------------------------------------------------


def make_methods(cache_size: int, policy: str) -> dict[str, Method]:
    def with_workers(workers: int, layout: str = "png") -> Method:
        def run(data_dir: Path, out: Path) -> int:
            summary = prepare(
                data_dir, out, cache_size, workers, policy, progress=False, layout=layout
            )
            return summary.converted

        return run

    return {
        "notebook loop": lambda d, o: notebook_loop(d, o, cache_size, policy),
        "prepare w1": with_workers(1, "npy"),
        "prepare w2": with_workers(2, "npy"),
        "prepare w1 png": with_workers(1, "png"),
    }


def time_rounds(methods: dict[str, Method], data_dir: Path, work: Path, rounds: int) -> dict:
    """Seconds per round of every method; the order rotates so no method always goes first."""
    names, seconds = list(methods), {name: [] for name in methods}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            out = work / f"r{r}_{name.replace(' ', '_')}"
            start = time.perf_counter()
            methods[name](data_dir, out)
            seconds[name].append(time.perf_counter() - start)
    return seconds


def cached_slices(root: Path) -> dict[tuple[str, int], np.ndarray]:
    """Every cached slice of a cache folder (either layout), decoded, by (series folder, k)."""
    out = {}
    for folder in {p.parent for p in root.rglob("*.png")} | {p.parent for p in root.rglob("*.npy")}:
        count = len(list(folder.glob("*.png"))) or len(
            np.load(folder / SERIES_ARRAY, mmap_mode="r")
        )
        for k, image in enumerate(read_series(folder, range(count))):
            out[(str(folder.relative_to(root)), k)] = image
    return out


def same_pixels(a: Path, b: Path) -> tuple[int, int]:
    """(identical, total) decoded slices between two cache folders: the methods must agree."""
    mine, theirs = cached_slices(a), cached_slices(b)
    same = sum(k in theirs and np.array_equal(v, theirs[k]) for k, v in mine.items())
    return same, max(len(mine), len(theirs))


# --- where the time goes ---------------------------------------------------------------------
# Where the time goes (measured 2026-11-27, README): the synthetic files are uncompressed, so
# reading and decoding one costs ~0.6 ms, and skipping ~19 of ~58 files per study saves little,
# while prepare pays a header pass (~0.4 ms) over every file. Writing dominated both methods:
# a 512 px PNG costs ~3.5 ms to encode with OpenCV 5's default (its level 1 is slower, 6 ms;
# older OpenCV took 7-10 ms), an npy slice ~0.6 ms. So the PNG layout is about as fast as the
# notebooks' loop and the npy layout about 1.8x; decoding only the picked slices gains more
# where decoding is dear (compressed transfer syntaxes, long axial series).


def _mean_ms(fn: Callable[[Path], object], paths: list[Path]) -> float:
    start = time.perf_counter()
    for path in paths:
        fn(path)
    return (time.perf_counter() - start) * 1000 / len(paths)


def stage_costs(data_dir: Path, work: Path, cache_size: int, n: int = 40) -> dict[str, float]:
    """Milliseconds per file for each stage, averaged over the first n files of the dataset."""
    paths = sorted((data_dir / "train_images").rglob("*.dcm"))[:n]
    pixels = {p: decode_slice(p) for p in paths}
    images = {p: to_uint8(pixels[p], cache_size) for p in paths}
    png, npy = str(work / "stage.png"), work / "stage.npy"
    level1 = [cv2.IMWRITE_PNG_COMPRESSION, 1]
    return {
        "header read (stop_before_pixels)": _mean_ms(read_headers, paths),
        "full read + pixel decode": _mean_ms(decode_slice, paths),
        f"min-max + cubic resize to {cache_size}": _mean_ms(
            lambda p: to_uint8(pixels[p], cache_size), paths
        ),
        f"PNG encode + write, default level ({cache_size} px)": _mean_ms(
            lambda p: cv2.imwrite(png, images[p]), paths
        ),
        f"PNG encode + write, level 1 ({cache_size} px)": _mean_ms(
            lambda p: cv2.imwrite(png, images[p], level1), paths
        ),
        f"npy write, per slice ({cache_size} px)": _mean_ms(
            lambda p: np.save(npy, images[p]), paths
        ),
    }


def count_files(data_dir: Path) -> tuple[int, int]:
    """(files in the largest series of each type, slices picked): what each method touches."""
    data = load_competition(data_dir, "train")
    read, picked = 0, 0
    for study_id in data.study_ids:
        for series_type, ids in data.series_of(study_id).items():
            counts = [
                len(list((data.images_dir / str(study_id) / str(s)).glob("*.dcm"))) for s in ids
            ]
            if counts and max(counts):
                read += max(counts)
                picked += SLICES_PER_SERIES[series_type]
    return read, picked


# --- report ----------------------------------------------------------------------------------


def print_table(seconds: dict[str, list[float]], studies: int) -> dict[str, float]:
    rate = {name: studies / statistics.median(s) for name, s in seconds.items()}
    base = rate["notebook loop"]
    print(f"\n{'method':<16}{'median s':>10}{'studies/s':>11}{'vs notebook':>13}")
    for name, s in seconds.items():
        median, ratio = statistics.median(s), rate[name] / base
        print(f"{name:<16}{median:>10.2f}{rate[name]:>11.2f}{ratio:>12.2f}x")
    return rate


def print_stages(costs: dict[str, float], read: int, picked: int, studies: int) -> None:
    print(
        f"\nper-file stage cost (ms), {read / studies:.0f} files read and "
        f"{picked / studies:.0f} picked per study:"
    )
    for stage, ms in costs.items():
        print(f"  {stage:<46}{ms:>7.2f}")
    header, decode, convert, png, _, npy = costs.values()
    notebook = read * (decode + convert) + picked * png
    arrays = read * header + picked * (decode + convert + npy)
    pngs = read * header + picked * (decode + convert + png)
    print(
        f"  model: notebook {notebook / studies:.0f} ms/study, prepare w1 "
        f"{arrays / studies:.0f} ms/study (predicted {notebook / arrays:.2f}x), with PNGs "
        f"{pngs / studies:.0f} ms/study (predicted {notebook / pngs:.2f}x)"
    )


def main() -> None:
    args = parse_args()
    print(f"start: {load_note()}")
    logging.basicConfig(level=logging.ERROR)  # synthetic quirks log warnings by design
    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as tmp:
        work = Path(tmp)
        data_dir = work / "data"
        make_synthetic_dataset(data_dir, args.studies, 0, args.seed, args.size, progress=False)
        methods = make_methods(args.cache_size, args.policy)
        seconds = time_rounds(methods, data_dir, work, args.rounds)
        reference = work / "r0_notebook_loop"
        identical = {
            name: same_pixels(reference, work / f"r0_{name.replace(' ', '_')}")
            for name in methods
            if name != "notebook loop"
        }
        print(
            f"{args.studies} studies, DICOM {args.size} px -> {args.cache_size} px, "
            f"policy {args.policy}, {args.rounds} rounds; decoded slices identical to the "
            "notebook loop's: "
            + ", ".join(f"{n} {same}/{total}" for n, (same, total) in identical.items())
        )
        rate = print_table(seconds, args.studies)
        read, picked = count_files(data_dir)
        costs = stage_costs(data_dir, work, args.cache_size)
        print_stages(costs, read, picked, args.studies)
    nb, w1, w2, png = rate.values()
    summary = (
        f"prepare w1 {w1 / nb:.2f}x the notebook loop, w2 {w2 / nb:.2f}x, w1 with PNGs "
        f"{png / nb:.2f}x, w2/w1 {w2 / w1:.2f}x (studies/s ratios, same machine, same run)"
    )
    print(f"\nend: {load_note()}")
    print(f"summary: {summary}")
    if args.json:
        write_json(
            args.json,
            {
                "script": "bench_prepare",
                "studies": args.studies,
                "dicom_px": args.size,
                "cache_px": args.cache_size,
                "rounds": args.rounds,
                "machine": machine_facts(),
                "studies_per_s": rate,
                "vs_notebook": {name: r / nb for name, r in rate.items()},
                "identical_slices": {n: list(v) for n, v in identical.items()},
                "stage_ms_per_file": costs,
                "summary": summary,
            },
        )


if __name__ == "__main__":
    main()
