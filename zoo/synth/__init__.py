"""Synthetic RSNA 2024 lumbar spine dataset in the exact competition layout.

`make_synthetic_dataset` writes the six CSV files and real MR DICOM slices (pydicom-readable,
Explicit VR Little Endian) that mimic the competition data closely enough for every reader,
cache builder, trainer and submission step to run end to end without the 35 GB download.

The images are a simplified lumbar spine drawn in DICOM patient coordinates (LPS: x toward the
patient's left, y posterior, z toward the head), consistent across the three series of a study.
Every severity is drawn visibly where its label coordinate points (the labels are a reader's
grades of what is drawn: like real readers, this one is one grade off near grade boundaries,
7 % of labels, half of them drawn Moderate; `plan.READER_SD`):

- Sagittal T2/STIR, middle slices: a bright CSF canal behind the vertebral bodies, narrowed and
  darkened at a disc level by spinal canal stenosis.
- Sagittal T1, lateral slices only: a bright foramen (fat) beside each disc; neural foraminal
  narrowing shrinks and darkens it. Patient-left slices (larger x) carry left foramina.
- Axial T2, slices near a disc: disc, canal and two subarticular recesses; subarticular stenosis
  shrinks and darkens the recess on its side (patient left = image columns right of centre).

A study-level degeneration latent raises all severities together and also dims and flattens the
discs, so a model without precise localisation can still learn something. The data carries the
competition's reading traps on purpose: missing series, a second Axial T2 series, series numbered
backwards, absent spacing tags, unusual image sizes and a few unlabelled cells; and the shapes
real scanners write (design_notes.md): Axial T2 as one tilted block per disc, files stored
mirrored, upside down or transposed (their orientation tags say so), a colour file, a file
without geometry, a three-plane localiser labelled Axial T2 and a multi-frame file. Label
coordinates are pixels of the files as stored, as in the competition.

The package: `plan` (ids, labels, anatomy, geometry, quirks: every random draw), `draw` (the
anatomy, rendered in each view's canonical orientation) and `write` (DICOM files and CSVs).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from zoo.synth.plan import plan_dataset
from zoo.synth.write import write_csvs, write_study


@dataclass
class SynthSummary:
    """What `make_synthetic_dataset` wrote: `files` counts the DICOM files."""

    out: Path
    train_studies: int
    test_studies: int
    files: int
    seconds: float


def make_synthetic_dataset(
    out: Path,
    studies: int = 60,
    test_studies: int = 5,
    seed: int = 0,
    size: int = 128,
    progress: bool = True,
) -> SynthSummary:
    """Write a synthetic dataset in the competition layout into `out` and return a summary.

    Same arguments give byte-identical files. An existing `out` is overwritten only if it looks
    like an earlier synthetic dataset (it has a train.csv) or is empty.
    """
    if studies < 1 or test_studies < 0 or size < 32:
        raise ValueError("need studies >= 1, test_studies >= 0 and size >= 32")
    started = time.perf_counter()
    out = Path(out)
    _prepare_output(out)
    plans = plan_dataset(studies, test_studies, seed, size)
    files = 0
    for plan in tqdm(plans, desc="synth", unit="study", disable=not progress):
        files += write_study(out, plan, seed)
    write_csvs(out, plans)
    return SynthSummary(out, studies, test_studies, files, time.perf_counter() - started)


def _prepare_output(out: Path) -> None:
    """Clear the image folders of an earlier run; never touch a folder that is not ours."""
    if out.exists():
        if not out.is_dir():
            raise ValueError(f"{out} exists and is not a folder")
        if any(out.iterdir()) and not (out / "train.csv").is_file():
            raise ValueError(
                f"refusing to write into {out}: it is not empty and has no train.csv, "
                "so it is not an earlier synthetic dataset"
            )
        for name in ("train_images", "test_images"):
            shutil.rmtree(out / name, ignore_errors=True)
    for name in ("train_images", "test_images"):
        (out / name).mkdir(parents=True, exist_ok=True)
