"""Synthetic RSNA 2024 lumbar spine dataset in the exact competition layout.

`make_synthetic_dataset` writes the six CSV files and real MR DICOM slices (pydicom-readable,
Explicit VR Little Endian) that mimic the competition data closely enough for every reader,
cache builder, trainer and submission step to run end to end without the 35 GB download.

The images are a simplified lumbar spine drawn in DICOM patient coordinates (LPS: x toward the
patient's left, y posterior, z toward the head), consistent across the three series of a study.
Every labelled severity is drawn visibly where its label coordinate points:

- Sagittal T2/STIR, middle slices: a bright CSF canal behind the vertebral bodies, narrowed and
  darkened at a disc level by spinal canal stenosis.
- Sagittal T1, lateral slices only: a bright foramen (fat) beside each disc; neural foraminal
  narrowing shrinks and darkens it. Patient-left slices (larger x) carry left foramina.
- Axial T2, slices near a disc: disc, canal and two subarticular recesses; subarticular stenosis
  shrinks and darkens the recess on its side (patient left = image columns right of centre).

A study-level degeneration latent raises all severities together and also dims and flattens the
discs, so a model without precise localisation can still learn something. The data carries the
competition's reading traps on purpose: missing series, a second Axial T2 series, series numbered
backwards, absent spacing tags, unusual image sizes and a few unlabelled cells.
"""

from __future__ import annotations

import functools
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid
from tqdm import tqdm

from zoo.constants import (
    CLASS_WEIGHTS,
    CONDITION_TITLES,
    CONDITIONS,
    CONDITIONS_OF_SERIES,
    LEVEL_TITLES,
    LEVELS,
    SERIES_TYPES,
    SEVERITIES,
    SUBMISSION_COLUMNS,
    TARGETS,
    row_id,
)

SAG_T1, SAG_T2, AXIAL = SERIES_TYPES
STUDY_ID_RANGE = (2**31 + 1, 4_000_000_000)
SERIES_ID_RANGE = (2**31 + 1, 9_000_000_000)
SAGITTAL_ORIENTATION = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)  # columns go posterior, rows go to the feet
AXIAL_ORIENTATION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)  # columns go to patient left, rows posterior
MAX_PIXEL = 65535
SERIES_OF_CONDITION = {c: s for s, conditions in CONDITIONS_OF_SERIES.items() for c in conditions}

# Pooled (Normal/Mild, Moderate, Severe) frequencies of the real train set (competition.md 1.4).
GROUP_FREQUENCIES: dict[str, tuple[float, float, float]] = {
    "spinal": (0.878, 0.075, 0.047),
    "foraminal": (0.780, 0.181, 0.039),
    "subarticular": (0.714, 0.190, 0.096),
}
# Per-level shift of the severity score: the lower levels degenerate more, as in the real data.
LEVEL_SHIFTS: dict[str, tuple[float, ...]] = {
    "spinal": (-0.8, -0.4, 0.0, 0.8, 0.3),
    "foraminal": (-0.9, -0.5, 0.0, 0.5, 0.8),
    "subarticular": (-0.7, -0.3, 0.1, 0.7, 0.2),
}
# Severity score = STUDY * study latent + LEVEL * level latent + noise; the squares sum to 1.
STUDY_LOADING, LEVEL_LOADING = 0.6, 0.5
MISSING_LABEL_RATE = 0.012

# Quirk rates; each quirk appears at least once in a split of GUARANTEE_FROM or more studies.
MISSING_SERIES_RATE, MISSING_SERIES_GUARANTEE = 0.05, 10
BACKWARDS_RATE, NO_SPACING_TAGS_RATE, ODD_SIZE_RATE, SERIES_QUIRK_GUARANTEE = 0.1, 0.06, 0.08, 8
MISSING_SERIES_WEIGHTS = {SAG_T1: 0.4, SAG_T2: 0.3, AXIAL: 0.3}

# Lesion strength per severity code: (low, high) of a size factor or of the canal narrowing.
NARROWING = ((0.0, 0.15), (0.50, 0.62), (0.82, 0.92))
OPENING = ((0.90, 1.10), (0.50, 0.60), (0.20, 0.28))
OPENING_DIM = (1.0, 0.8, 0.5)

# Anatomy, in units of the study's size A (mm; equal to the sagittal field of view).
LEVEL_GAP = 0.15
FIRST_DISC_ROW = 0.2
DISC_HALF_HEIGHT = 0.024
BODY_DEPTH = 0.16
BODY_GAP = 0.005  # between the back of the bodies and the front of the canal
CANAL_WIDTH = 0.075  # antero-posterior width of the canal
CANAL_HALF_SPAN = 0.055  # left-right half width of the canal
FORAMEN_AXES = (0.028, 0.042)  # (antero-posterior, cranio-caudal) semi-axes of a normal foramen
FORAMEN_OFFSET = (0.02, 0.02)  # foramen centre: behind the canal front, above the disc
RECESS_RADIUS = 0.028
LATERAL_FROM = 0.6  # |x| / half-span of the sagittal stack where the foramina start to show


@dataclass(frozen=True)
class Contrast:
    """Tissue intensities of one sequence, before the study gain."""

    tissue: float
    anterior: float
    fat: float
    posterior: float
    body: float
    disc: float
    disc_loss: float  # how much a fully degenerated disc darkens
    csf: float
    ligament: float
    foramen: float


CONTRASTS: dict[str, Contrast] = {
    SAG_T1: Contrast(420, 380, 1500, 700, 1000, 620, 0.25, 320, 480, 1650),
    SAG_T2: Contrast(450, 320, 950, 380, 650, 1500, 0.6, 1900, 330, 1100),
    AXIAL: Contrast(450, 480, 950, 380, 650, 1400, 0.6, 1900, 330, 1100),
}


@dataclass
class SynthSummary:
    """What `make_synthetic_dataset` wrote: `files` counts the DICOM files."""

    out: Path
    train_studies: int
    test_studies: int
    files: int
    seconds: float


@dataclass(frozen=True)
class Anatomy:
    """World geometry (mm) and lesion strengths of one study."""

    scale: float
    x_mid: float
    y_canal: float
    z_top: float
    disc_z: np.ndarray  # (6,): T12/L1 then the five labelled levels
    disc_half_height: np.ndarray  # (6,)
    degeneration: np.ndarray  # (6,) in [0, 1]
    canal_width: float
    narrowing: np.ndarray  # (5,) spinal canal narrowing fraction per level
    foramen: np.ndarray  # (2, 5) size factor, rows = left, right
    foramen_dim: np.ndarray  # (2, 5)
    recess: np.ndarray  # (2, 5) size factor, rows = left, right
    recess_dim: np.ndarray  # (2, 5)
    gain: float
    noise: float


@dataclass(frozen=True)
class SeriesPlan:
    """One series: slice positions in anatomical order and how its files are written."""

    series_id: int
    series_type: str
    series_number: int
    size: int
    pixel_spacing: float
    origin: tuple[float, float]  # sagittal: (y of column 0, z of row 0); axial: (x, y)
    positions: tuple[float, ...]  # sagittal: x, increasing; axial: z, decreasing
    spacing: float
    backwards: bool
    spacing_tags: bool

    def instance_number(self, k: int) -> int:
        """Instance number of the k-th slice in anatomical order."""
        return len(self.positions) - k if self.backwards else k + 1


@dataclass
class StudyPlan:
    """Everything needed to write one study."""

    index: int
    study_id: int
    split: str
    codes: np.ndarray  # (5 conditions, 5 levels) severity codes
    unlabelled: np.ndarray  # (5, 5) bool, cells left empty in train.csv
    anatomy: Anatomy
    series: list[SeriesPlan]


@dataclass
class StudyQuirks:
    """Study-level quirks decided before the series are planned."""

    missing: str | None = None
    double_axial: bool = False


# ---------------------------------------------------------------------------------------------
# Public entry point


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
    plans = _plan_dataset(studies, test_studies, seed, size)
    files = 0
    for plan in tqdm(plans, desc="synth", unit="study", disable=not progress):
        files += _write_study(out, plan, seed)
    _write_csvs(out, plans)
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


# ---------------------------------------------------------------------------------------------
# Planning: ids, labels, quirks and geometry, all drawn from the seed


def _plan_dataset(studies: int, test_studies: int, seed: int, size: int) -> list[StudyPlan]:
    id_rng = np.random.default_rng([seed, 0])
    taken: set[int] = set()
    study_ids = _unique_ids(id_rng, studies + test_studies, STUDY_ID_RANGE, taken)
    plans: list[StudyPlan] = []
    for split, start, stop in (("train", 0, studies), ("test", studies, studies + test_studies)):
        quirk_rng = np.random.default_rng([seed, 1, start])
        split_plans = [
            _plan_study(np.random.default_rng([seed, 2, i]), i, study_ids[i], split)
            for i in range(start, stop)
        ]
        quirks = _study_quirks(quirk_rng, len(split_plans))
        _plan_split_series(quirk_rng, id_rng, taken, split_plans, quirks, size, seed)
        plans += split_plans
    return plans


def _unique_ids(
    rng: np.random.Generator, count: int, bounds: tuple[int, int], taken: set[int]
) -> list[int]:
    ids: list[int] = []
    while len(ids) < count:
        candidate = int(rng.integers(bounds[0], bounds[1], endpoint=True))
        if candidate not in taken:
            taken.add(candidate)
            ids.append(candidate)
    return ids


def _pick(rng: np.random.Generator, n: int, rate: float, at_least_one: bool) -> np.ndarray:
    """Bernoulli flags, with one forced on when none came up and `at_least_one` is set."""
    flags = rng.random(n) < rate
    if at_least_one and n > 0 and not flags.any():
        flags[rng.integers(n)] = True
    return flags


def _study_quirks(rng: np.random.Generator, n: int) -> list[StudyQuirks]:
    quirks = [StudyQuirks() for _ in range(n)]
    types, weights = zip(*MISSING_SERIES_WEIGHTS.items(), strict=True)
    missing = _pick(rng, n, MISSING_SERIES_RATE, n >= MISSING_SERIES_GUARANTEE)
    for i in np.flatnonzero(missing):
        quirks[i].missing = str(rng.choice(types, p=weights))
    complete = [i for i in range(n) if quirks[i].missing is None]
    doubles = 0 if n < 2 else (1 if n < 30 else 2)
    for i in rng.choice(complete, size=min(doubles, len(complete)), replace=False):
        quirks[int(i)].double_axial = True
    return quirks


def _series_types(quirks: StudyQuirks) -> list[str]:
    types = [t for t in SERIES_TYPES if t != quirks.missing]
    return types + [AXIAL] if quirks.double_axial else types


def _plan_study(rng: np.random.Generator, index: int, study_id: int, split: str) -> StudyPlan:
    latent = float(rng.standard_normal())
    codes = _sample_severities(rng, latent)
    unlabelled = np.zeros_like(codes, dtype=bool)
    if split == "train":
        unlabelled = rng.random(codes.shape) < MISSING_LABEL_RATE
    anatomy = _sample_anatomy(rng, latent, codes)
    return StudyPlan(index, study_id, split, codes, unlabelled, anatomy, [])


def _plan_split_series(
    quirk_rng: np.random.Generator,
    id_rng: np.random.Generator,
    taken: set[int],
    plans: list[StudyPlan],
    quirks: list[StudyQuirks],
    size: int,
    seed: int,
) -> None:
    """Give every series of a split its id, size, geometry and per-series quirks."""
    types = [_series_types(q) for q in quirks]
    n_series = sum(len(t) for t in types)
    guarantee = len(plans) >= SERIES_QUIRK_GUARANTEE
    backwards = iter(_pick(quirk_rng, n_series, BACKWARDS_RATE, guarantee))
    tags = iter(~_pick(quirk_rng, n_series, NO_SPACING_TAGS_RATE, guarantee))
    odd = _pick(quirk_rng, n_series, ODD_SIZE_RATE, guarantee)
    odd_sizes = quirk_rng.choice([size * 5 // 4, size * 7 // 8], size=n_series)
    sizes = iter(np.where(odd, odd_sizes, size))
    ids = iter(_unique_ids(id_rng, n_series, SERIES_ID_RANGE, taken))
    for plan, study_types in zip(plans, types, strict=True):
        rng = np.random.default_rng([seed, 3, plan.index])
        first_number = int(rng.integers(1, 6))
        for i, series_type in enumerate(study_types):
            extra = series_type == AXIAL and AXIAL in study_types[:i]
            planned = _plan_series(
                rng,
                plan.anatomy,
                series_type,
                extra,
                series_id=next(ids),
                series_number=first_number + i,
                size=int(next(sizes)),
                backwards=bool(next(backwards)),
                spacing_tags=bool(next(tags)),
            )
            plan.series.append(planned)


def _plan_series(
    rng: np.random.Generator,
    anatomy: Anatomy,
    series_type: str,
    extra: bool,
    *,
    series_id: int,
    series_number: int,
    size: int,
    backwards: bool,
    spacing_tags: bool,
) -> SeriesPlan:
    """Geometry of one series; `extra` marks the smaller second Axial T2 stack."""
    a = anatomy.scale
    if series_type == AXIAL:
        fov = _mm(0.8 * a * rng.uniform(0.95, 1.05))
        origin = (
            _mm(anatomy.x_mid + a * rng.uniform(-0.02, 0.02) - fov / 2),
            _mm(anatomy.y_canal - 0.02 * a - fov / 2),
        )
        positions, spacing = _axial_positions(rng, anatomy, extra)
    else:
        fov = a
        origin = (_mm(anatomy.y_canal - 0.55 * a), _mm(anatomy.z_top))
        positions, spacing = _sagittal_positions(rng, anatomy)
    return SeriesPlan(
        series_id=series_id,
        series_type=series_type,
        series_number=series_number,
        size=size,
        pixel_spacing=round(fov / size, 5),
        origin=origin,
        positions=positions,
        spacing=spacing,
        backwards=backwards,
        spacing_tags=spacing_tags,
    )


def _mm(value: float) -> float:
    """Round to what the DICOM tags store, so drawing and tags agree exactly."""
    return round(float(value), 4)


def _sagittal_positions(
    rng: np.random.Generator, anatomy: Anatomy
) -> tuple[tuple[float, ...], float]:
    """Slices from patient right to left (increasing x), spanning both sides of the midline."""
    n = int(rng.integers(15, 20))
    spacing = _mm(rng.uniform(3.5, 4.0))
    centre = anatomy.x_mid + rng.uniform(-3.0, 3.0)
    return tuple(_mm(centre + (k - (n - 1) / 2) * spacing) for k in range(n)), spacing


def _axial_positions(
    rng: np.random.Generator, anatomy: Anatomy, extra: bool
) -> tuple[tuple[float, ...], float]:
    """Slices from head to feet (decreasing z); the main stack covers all five levels."""
    a, discs = anatomy.scale, anatomy.disc_z[1:]
    if extra:
        n, spacing = int(rng.integers(8, 15)), 4.0
        top = discs[3] + 0.05 * a
    else:
        n = int(rng.integers(25, 36))
        top = discs[0] + 0.06 * a
        spacing = _mm((top - (discs[4] - 0.06 * a)) / (n - 1))
    return tuple(_mm(top - k * spacing) for k in range(n)), spacing


# ---------------------------------------------------------------------------------------------
# Labels and anatomy


def _group(condition: str) -> str:
    if "spinal" in condition:
        return "spinal"
    return "foraminal" if "foraminal" in condition else "subarticular"


def _normal_cdf(value: float) -> float:
    return 0.5 * (1.0 + math.erf(value / math.sqrt(2.0)))


@functools.cache
def _thresholds(group: str) -> tuple[float, float]:
    """Score cut-offs that give the group's pooled class frequencies over the five levels."""
    shifts = LEVEL_SHIFTS[group]
    normal, moderate, _ = GROUP_FREQUENCIES[group]

    def solve(target: float) -> float:
        lo, hi = -10.0, 10.0
        for _ in range(80):
            mid = (lo + hi) / 2
            below = sum(_normal_cdf(mid - s) for s in shifts) / len(shifts)
            lo, hi = (mid, hi) if below < target else (lo, mid)
        return (lo + hi) / 2

    return solve(normal), solve(normal + moderate)


def _sample_severities(rng: np.random.Generator, latent: float) -> np.ndarray:
    """(5 conditions, 5 levels) codes; study and level latents correlate them like real disease."""
    level_latent = rng.standard_normal(len(LEVELS))
    noise_loading = math.sqrt(1.0 - STUDY_LOADING**2 - LEVEL_LOADING**2)
    codes = np.empty((len(CONDITIONS), len(LEVELS)), dtype=np.int64)
    for ci, condition in enumerate(CONDITIONS):
        group = _group(condition)
        score = (
            STUDY_LOADING * latent
            + LEVEL_LOADING * level_latent
            + noise_loading * rng.standard_normal(len(LEVELS))
            + np.asarray(LEVEL_SHIFTS[group])
        )
        low, high = _thresholds(group)
        codes[ci] = (score > low).astype(np.int64) + (score > high)
    return codes


def _strength(
    rng: np.random.Generator, table: tuple[tuple[float, float], ...], codes: np.ndarray
) -> np.ndarray:
    """Lesion strength of each code, drawn uniformly from its severity's range."""
    lows = np.array([table[c][0] for c in codes.ravel()])
    highs = np.array([table[c][1] for c in codes.ravel()])
    return rng.uniform(lows, highs).reshape(codes.shape)


def _sample_anatomy(rng: np.random.Generator, latent: float, codes: np.ndarray) -> Anatomy:
    a = rng.uniform(205.0, 235.0)
    z_top = rng.uniform(-40.0, 40.0) + 0.5 * a
    rows = FIRST_DISC_ROW + rng.uniform(-0.02, 0.02) + LEVEL_GAP * np.arange(-1, 5)
    rows = rows + rng.uniform(-0.01, 0.01, size=6)
    # Disc degeneration: the study latent everywhere plus the level's own mean severity.
    level_severity = np.concatenate([[0.0], codes.mean(axis=0) / 2])
    study_part = 1.0 / (1.0 + math.exp(-1.5 * (latent - 0.3)))
    degeneration = np.clip(0.55 * study_part + 0.5 * level_severity, 0.0, 1.0)
    return Anatomy(
        scale=a,
        x_mid=rng.uniform(-8.0, 8.0),
        y_canal=rng.uniform(-20.0, 20.0),
        z_top=z_top,
        disc_z=z_top - rows * a,
        disc_half_height=DISC_HALF_HEIGHT * a * (1.0 - 0.35 * degeneration),
        degeneration=degeneration,
        canal_width=CANAL_WIDTH * a * rng.uniform(0.92, 1.08),
        narrowing=_strength(rng, NARROWING, codes[0]),
        foramen=_strength(rng, OPENING, codes[1:3]),
        foramen_dim=np.take(OPENING_DIM, codes[1:3]),
        recess=_strength(rng, OPENING, codes[3:5]),
        recess_dim=np.take(OPENING_DIM, codes[3:5]),
        gain=rng.uniform(0.8, 1.6),
        noise=rng.uniform(25.0, 45.0),
    )


# ---------------------------------------------------------------------------------------------
# Drawing (vectorised; distances in mm). u/v are the 1-D world coordinates of the columns/rows.


def _soft(distance: np.ndarray, pixel: float) -> np.ndarray:
    """Anti-aliased inside mask from a signed distance (negative inside)."""
    return np.clip(0.5 - distance / pixel, 0.0, 1.0)


def _band(
    u: np.ndarray, low: float | np.ndarray, high: float | np.ndarray, pixel: float
) -> np.ndarray:
    return _soft(np.maximum(low - u, u - high), pixel)


def _paint(image: np.ndarray, mask: np.ndarray, value: float | np.ndarray) -> None:
    image += mask * (value - image)


def _paint_ellipse(
    image: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    centre: tuple[float, float],
    axes: tuple[float, float],
    value: float,
    weight: float = 1.0,
    power: int = 2,
) -> None:
    """Blend `value` into an ellipse (power 4: a rounded box), touching only its bounding box."""
    pixel = float(abs(u[1] - u[0]))
    cols = np.flatnonzero(np.abs(u - centre[0]) <= axes[0] + pixel)
    rows = np.flatnonzero(np.abs(v - centre[1]) <= axes[1] + pixel)
    if weight <= 0 or cols.size == 0 or rows.size == 0:
        return
    block = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    du = (u[block[1]][None, :] - centre[0]) / axes[0]
    dv = (v[block[0]][:, None] - centre[1]) / axes[1]
    radius = (du**power + dv**power) ** (1.0 / power)
    mask = _soft((radius - 1.0) * min(axes), pixel)
    _paint(image[block], weight * mask, value)


def _grid(series: SeriesPlan) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates of the columns and rows (sagittal: y, z; axial: x, y)."""
    steps = series.pixel_spacing * np.arange(series.size, dtype=np.float32)
    if series.series_type == AXIAL:
        return series.origin[0] + steps, series.origin[1] + steps
    return series.origin[0] + steps, series.origin[1] - steps


def _disc_value(anatomy: Anatomy, contrast: Contrast) -> np.ndarray:
    return contrast.disc * (1.0 - contrast.disc_loss * anatomy.degeneration)


def _sagittal_background(anatomy: Anatomy, series: SeriesPlan) -> np.ndarray:
    """What every sagittal slice shares: soft tissue, vertebral bodies and discs."""
    c, a, px = CONTRASTS[series.series_type], anatomy.scale, series.pixel_spacing
    y, z = _grid(series)
    body_back = anatomy.y_canal - BODY_GAP * a
    body_front = body_back - BODY_DEPTH * a
    row = np.full(series.size, c.tissue, dtype=np.float32)
    _paint(row, _band(y, -1e9, body_front - 0.04 * a, px), c.anterior)
    _paint(row, _band(y, anatomy.y_canal + 0.3 * a, 1e9, px), c.fat)
    _paint(row, _band(y, body_back, anatomy.y_canal + 0.2 * a, px), c.posterior)
    _paint(row, _band(y, body_front, body_back, px), c.body)
    image = np.repeat(row[None, :], series.size, axis=0)
    discs = _disc_value(anatomy, c)
    for k, disc_z in enumerate(anatomy.disc_z):
        axes = (0.52 * BODY_DEPTH * a, float(anatomy.disc_half_height[k]))
        centre = ((body_front + body_back) / 2, float(disc_z))
        _paint_ellipse(image, y, z, centre, axes, float(discs[k]), power=4)
    return image


def _sagittal_slice(
    anatomy: Anatomy, series: SeriesPlan, background: np.ndarray, x: float
) -> np.ndarray:
    image = background.copy()
    _draw_sagittal_canal(image, anatomy, series, x)
    _draw_foramina(image, anatomy, series, x)
    return image


def _draw_sagittal_canal(image: np.ndarray, anatomy: Anatomy, series: SeriesPlan, x: float) -> None:
    """CSF canal on the middle slices, narrowed from the front and back at stenotic levels."""
    a, width, px = anatomy.scale, anatomy.canal_width, series.pixel_spacing
    visible = float(np.clip((0.065 * a - abs(x - anatomy.x_mid)) / (0.02 * a), 0.0, 1.0))
    if visible <= 0:
        return
    c = CONTRASTS[series.series_type]
    y, z = _grid(series)
    bump = np.exp(-(((z[:, None] - anatomy.disc_z[None, 1:]) / (0.03 * a)) ** 2))
    squeeze = (bump @ anatomy.narrowing)[:, None]  # narrowing fraction along the canal
    front = anatomy.y_canal + 0.6 * width * squeeze
    back = anatomy.y_canal + width - 0.4 * width * squeeze
    _paint(image, visible * _band(y, anatomy.y_canal, anatomy.y_canal + width, px), c.ligament)
    _paint(image, visible * _band(y[None, :], front, back, px), c.csf * (1.0 - 0.4 * squeeze))


def _lateral_visibility(series: SeriesPlan, anatomy: Anatomy, x: float) -> float:
    """0 on the middle slices, 1 beyond LATERAL_FROM (+0.1) of the stack's half-span."""
    half_span = (series.positions[-1] - series.positions[0]) / 2
    ratio = abs(x - anatomy.x_mid) / half_span
    return float(np.clip((ratio - LATERAL_FROM) / 0.1, 0.0, 1.0))


def _foramen_centre(anatomy: Anatomy, level: int) -> tuple[float, float]:
    """(y, z) of a level's foramen: behind the back of the disc, a little above it."""
    a = anatomy.scale
    return (
        anatomy.y_canal + FORAMEN_OFFSET[0] * a,
        float(anatomy.disc_z[level + 1]) + FORAMEN_OFFSET[1] * a,
    )


def _draw_foramina(image: np.ndarray, anatomy: Anatomy, series: SeriesPlan, x: float) -> None:
    """Bright foramina on the lateral slices, each side with its own severities."""
    visible = _lateral_visibility(series, anatomy, x)
    if visible <= 0:
        return
    c, a = CONTRASTS[series.series_type], anatomy.scale
    y, z = _grid(series)
    side = 0 if x > anatomy.x_mid else 1  # larger x = patient left
    for level in range(len(LEVELS)):
        factor = float(anatomy.foramen[side, level])
        axes = (FORAMEN_AXES[0] * a * factor, FORAMEN_AXES[1] * a * factor)
        value = c.foramen * float(anatomy.foramen_dim[side, level])
        _paint_ellipse(image, y, z, _foramen_centre(anatomy, level), axes, value, visible)


def _recess_centre(anatomy: Anatomy, side: int) -> tuple[float, float]:
    """(x, y) of a subarticular recess; side 0 = patient left = larger x."""
    offset = (CANAL_HALF_SPAN + 0.01) * anatomy.scale
    return (
        anatomy.x_mid + (offset if side == 0 else -offset),
        anatomy.y_canal + 0.3 * anatomy.canal_width,
    )


def _axial_background(anatomy: Anatomy, series: SeriesPlan) -> np.ndarray:
    """What every axial slice shares: air, fat, muscles and the posterior elements."""
    c, a = CONTRASTS[AXIAL], anatomy.scale
    x, y = _grid(series)
    xm, yc = anatomy.x_mid, anatomy.y_canal
    image = np.full((series.size, series.size), 40.0, dtype=np.float32)
    _paint_ellipse(image, x, y, (xm, yc - 0.12 * a), (0.46 * a, 0.36 * a), c.fat)
    _paint_ellipse(image, x, y, (xm, yc - 0.12 * a), (0.41 * a, 0.32 * a), c.tissue)
    for sign in (-1.0, 1.0):
        psoas = (xm + sign * 0.12 * a, yc - 0.08 * a)
        _paint_ellipse(image, x, y, psoas, (0.04 * a, 0.05 * a), c.anterior)
        back_muscle = (xm + sign * 0.075 * a, yc + 0.14 * a)
        _paint_ellipse(image, x, y, back_muscle, (0.065 * a, 0.07 * a), c.tissue + 70)
    _paint_ellipse(image, x, y, (xm, yc + 0.06 * a), (0.09 * a, 0.075 * a), c.posterior)
    return image


def _axial_slice(
    anatomy: Anatomy, series: SeriesPlan, background: np.ndarray, z: float
) -> np.ndarray:
    """The nearest disc (or the vertebral body between discs), canal and recesses."""
    c, a = CONTRASTS[AXIAL], anatomy.scale
    x, y = _grid(series)
    image = background.copy()
    level = int(np.argmin(np.abs(anatomy.disc_z[1:] - z)))
    weight = _disc_weight(series, abs(float(anatomy.disc_z[level + 1]) - z))
    body_centre = (anatomy.x_mid, anatomy.y_canal - (BODY_GAP + 0.5 * BODY_DEPTH) * a)
    value = c.body + weight * (float(_disc_value(anatomy, c)[level + 1]) - c.body)
    _paint_ellipse(image, x, y, body_centre, (0.10 * a, 0.5 * BODY_DEPTH * a), value)
    _draw_axial_canal(image, anatomy, x, y, float(anatomy.narrowing[level]) * weight)
    for side in (0, 1):
        radius = RECESS_RADIUS * a * float(anatomy.recess[side, level])
        value = c.csf * float(anatomy.recess_dim[side, level])
        centre = _recess_centre(anatomy, side)
        _paint_ellipse(image, x, y, centre, (radius, radius), value, weight)
    return image


def _disc_weight(series: SeriesPlan, distance: float) -> float:
    """1 within one slice spacing of a disc, fading out by 1.6 spacings.

    So every disc is fully visible on at least two neighbouring slices, and any pick of every
    first or second slice (20 evenly spaced of up to 35) sees all five levels.
    """
    spacing = max(series.spacing, 3.0)
    return float(np.clip((1.6 * spacing - distance) / (0.6 * spacing), 0.0, 1.0))


def _draw_axial_canal(
    image: np.ndarray, anatomy: Anatomy, x: np.ndarray, y: np.ndarray, squeeze: float
) -> None:
    width, yc = anatomy.canal_width, anatomy.y_canal
    front, back = yc + 0.6 * width * squeeze, yc + width - 0.4 * width * squeeze
    axes = (CANAL_HALF_SPAN * anatomy.scale * (1.0 - 0.5 * squeeze), (back - front) / 2)
    value = CONTRASTS[AXIAL].csf * (1.0 - 0.4 * squeeze)
    _paint_ellipse(image, x, y, (anatomy.x_mid, (front + back) / 2), axes, value)


def _finish(
    image: np.ndarray, rng: np.random.Generator, anatomy: Anatomy, bias: float
) -> np.ndarray:
    """Rician noise, a gentle left-right bias field and the study gain, as uint16."""
    noise = np.float32(anatomy.noise)
    real = image + noise * rng.standard_normal(image.shape, dtype=np.float32)
    imaginary = noise * rng.standard_normal(image.shape, dtype=np.float32)
    ramp = np.linspace(1.0 - bias, 1.0 + bias, image.shape[1], dtype=np.float32)
    magnitude = np.sqrt(real * real + imaginary * imaginary)
    scaled = magnitude * (ramp * np.float32(anatomy.gain))[None, :]
    return np.clip(np.rint(scaled), 0, MAX_PIXEL).astype(np.uint16)


def _render_series(
    anatomy: Anatomy, series: SeriesPlan, rng: np.random.Generator
) -> list[np.ndarray]:
    """The series' slices in anatomical order (the order of `series.positions`)."""
    if series.series_type == AXIAL:
        background, draw = _axial_background(anatomy, series), _axial_slice
    else:
        background, draw = _sagittal_background(anatomy, series), _sagittal_slice
    bias = float(rng.uniform(-0.08, 0.08))
    return [
        _finish(draw(anatomy, series, background, p), rng, anatomy, bias) for p in series.positions
    ]


# ---------------------------------------------------------------------------------------------
# DICOM writing


def _uid(seed: int, *parts: object) -> str:
    return generate_uid(entropy_srcs=["rsna-lsdc-synth", str(seed), *map(str, parts)])


def _series_dataset(plan: StudyPlan, series: SeriesPlan, seed: int) -> Dataset:
    """Header shared by a series' slices; the per-slice tags are set while writing."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.PatientID = str(plan.study_id)
    ds.StudyInstanceUID = _uid(seed, plan.study_id)
    ds.SeriesInstanceUID = _uid(seed, plan.study_id, series.series_id)
    ds.FrameOfReferenceUID = _uid(seed, plan.study_id, "frame")
    ds.Modality = "MR"
    ds.BodyPartExamined = "LSPINE"
    ds.SeriesDescription = series.series_type
    ds.SeriesNumber = series.series_number
    axial = series.series_type == AXIAL
    ds.ImageOrientationPatient = list(AXIAL_ORIENTATION if axial else SAGITTAL_ORIENTATION)
    ds.PixelSpacing = [_ds(series.pixel_spacing), _ds(series.pixel_spacing)]
    if series.spacing_tags:
        ds.SliceThickness = _ds(round(series.spacing * (0.8 if axial else 0.9), 2))
        ds.SpacingBetweenSlices = _ds(series.spacing)
    ds.Rows = ds.Columns = series.size
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    return ds


def _ds(value: float) -> str:
    return str(_mm(value))


def _image_position(series: SeriesPlan, position: float) -> list[str]:
    if series.series_type == AXIAL:
        return [_ds(series.origin[0]), _ds(series.origin[1]), _ds(position)]
    return [_ds(position), _ds(series.origin[0]), _ds(series.origin[1])]


def _write_study(out: Path, plan: StudyPlan, seed: int) -> int:
    """Render and write every series of a study; returns the number of DICOM files."""
    files = 0
    for number, series in enumerate(plan.series):
        folder = out / f"{plan.split}_images" / str(plan.study_id) / str(series.series_id)
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, 4, plan.index, number])
        images = _render_series(plan.anatomy, series, rng)
        ds = _series_dataset(plan, series, seed)
        for k, image in enumerate(images):
            instance = series.instance_number(k)
            sop_uid = _uid(seed, series.series_id, instance)
            ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
            ds.SOPInstanceUID = sop_uid
            ds.InstanceNumber = instance
            ds.ImagePositionPatient = _image_position(series, series.positions[k])
            ds.SliceLocation = _ds(series.positions[k])
            ds.PixelData = image.astype("<u2").tobytes()  # little endian on any host
            ds.save_as(folder / f"{instance}.dcm", enforce_file_format=True)
            files += 1
    return files


# ---------------------------------------------------------------------------------------------
# CSV files


def _write_csvs(out: Path, plans: list[StudyPlan]) -> None:
    train = sorted((p for p in plans if p.split == "train"), key=lambda p: p.study_id)
    test = sorted((p for p in plans if p.split == "test"), key=lambda p: p.study_id)
    _labels_frame(train).to_csv(out / "train.csv", index=False)
    _coordinates_frame(train).to_csv(out / "train_label_coordinates.csv", index=False)
    _series_frame(train).to_csv(out / "train_series_descriptions.csv", index=False)
    _series_frame(test).to_csv(out / "test_series_descriptions.csv", index=False)
    submission, solution = _test_frames(test)
    submission.to_csv(out / "sample_submission.csv", index=False)
    solution.to_csv(out / "test_solution.csv", index=False)


def _labels_frame(plans: list[StudyPlan]) -> pd.DataFrame:
    rows = []
    for plan in plans:
        values = [
            None if missing else SEVERITIES[code]
            for code, missing in zip(plan.codes.ravel(), plan.unlabelled.ravel(), strict=True)
        ]
        rows.append([plan.study_id, *values])
    return pd.DataFrame(rows, columns=["study_id", *TARGETS])


def _coordinates_frame(plans: list[StudyPlan]) -> pd.DataFrame:
    rows = []
    for plan in plans:
        for ci, condition in enumerate(CONDITIONS):
            for li, level in enumerate(LEVELS):
                point = None if plan.unlabelled[ci, li] else _label_point(plan, ci, li)
                if point is not None:
                    series_id, instance, x, y = point
                    title = (CONDITION_TITLES[condition], LEVEL_TITLES[level])
                    rows.append([plan.study_id, series_id, instance, *title, x, y])
    columns = ["study_id", "series_id", "instance_number", "condition", "level", "x", "y"]
    return pd.DataFrame(rows, columns=columns)


def _main_series(plan: StudyPlan, series_type: str) -> SeriesPlan | None:
    """The largest series of a type (the extra Axial T2 stack is smaller)."""
    candidates = [s for s in plan.series if s.series_type == series_type]
    return max(candidates, key=lambda s: len(s.positions), default=None)


def _label_point(plan: StudyPlan, ci: int, li: int) -> tuple[int, int, float, float] | None:
    """(series_id, instance_number, x, y) of the pixel where a target's lesion is drawn."""
    series = _main_series(plan, SERIES_OF_CONDITION[CONDITIONS[ci]])
    if series is None:
        return None
    world, best_position = _lesion_location(plan.anatomy, series, ci, li)
    k = int(np.argmin(np.abs(np.asarray(series.positions) - best_position)))
    return series.series_id, series.instance_number(k), *_to_pixel(series, world)


def _lesion_location(
    anatomy: Anatomy, series: SeriesPlan, ci: int, li: int
) -> tuple[tuple[float, float], float]:
    """In-plane world point of a lesion and the slice position (x or z) that shows it best."""
    disc_z = float(anatomy.disc_z[li + 1])
    if ci == 0:  # canal centre on the midline slice
        return (anatomy.y_canal + anatomy.canal_width / 2, disc_z), anatomy.x_mid
    if ci in (1, 2):  # foramen on a lateral slice of its side (left = larger x)
        half_span = (series.positions[-1] - series.positions[0]) / 2
        side = 1.0 if ci == 1 else -1.0
        return _foramen_centre(anatomy, li), anatomy.x_mid + side * 0.8 * half_span
    return _recess_centre(anatomy, ci - 3), disc_z  # recess on the slice nearest the disc


def _to_pixel(series: SeriesPlan, world: tuple[float, float]) -> tuple[float, float]:
    """In-plane world point -> (column, row) pixel coordinates of that series."""
    px = series.pixel_spacing
    if series.series_type == AXIAL:
        column, row = (world[0] - series.origin[0]) / px, (world[1] - series.origin[1]) / px
    else:
        column, row = (world[0] - series.origin[0]) / px, (series.origin[1] - world[1]) / px
    return round(float(column), 6), round(float(row), 6)


def _series_frame(plans: list[StudyPlan]) -> pd.DataFrame:
    rows = [(p.study_id, s.series_id, s.series_type) for p in plans for s in p.series]
    frame = pd.DataFrame(rows, columns=["study_id", "series_id", "series_description"])
    return frame.sort_values(["study_id", "series_id"], ignore_index=True)


def _test_frames(plans: list[StudyPlan]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """sample_submission (uniform) and the one-hot solution with the metric's sample weights."""
    ids, onehots, weights = [], [], []
    for plan in plans:
        for target, code in zip(TARGETS, plan.codes.ravel(), strict=True):
            ids.append(row_id(plan.study_id, target))
            onehots.append(np.eye(len(SEVERITIES), dtype=np.int64)[code])
            weights.append(CLASS_WEIGHTS[code])
    columns = list(SUBMISSION_COLUMNS)
    solution = pd.DataFrame(np.array(onehots).reshape(-1, len(columns)), columns=columns)
    solution.insert(0, "row_id", ids)
    solution["sample_weight"] = weights
    solution = solution.sort_values("row_id", ignore_index=True)
    submission = solution[["row_id"]].copy()
    for column in columns:
        submission[column] = 1.0 / len(columns)
    return submission, solution
