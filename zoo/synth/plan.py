"""Planning a synthetic dataset: ids, labels, anatomy, series geometry and quirks, all drawn
from the seed before anything is drawn or written (see `zoo.synth`)."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from zoo.constants import CONDITIONS, CONDITIONS_OF_SERIES, LEVELS, SERIES_TYPES
from zoo.geometry import InPlane

SAG_T1, SAG_T2, AXIAL = SERIES_TYPES
STUDY_ID_RANGE = (2**31 + 1, 4_000_000_000)
SERIES_ID_RANGE = (2**31 + 1, 9_000_000_000)
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
# The label is a reader's grade: the score plus the reader's error, then the cut-offs. Real
# readers disagree, mostly near a grade boundary and most on Moderate; this one changes 7 % of
# grades, 22 % of Moderate and 14 % of Severe, always by one step. Without it a localise-then-crop
# model scores near zero on synth, where no real one does, and averaging models cannot be tested.
# The cut-offs give the drawn grades the real frequencies; the reader's labels spread a little
# wider (spinal Severe 5.1 % for 4.7 %, subarticular Severe 10 % for 9.6 %), kept so a seed
# still draws the images it drew before readers were modelled.
READER_SD = 0.25
MISSING_LABEL_RATE = 0.012

# Quirk rates; each quirk appears at least once in a split of GUARANTEE_FROM or more studies.
MISSING_SERIES_RATE, MISSING_SERIES_GUARANTEE = 0.05, 10
BACKWARDS_RATE, NO_SPACING_TAGS_RATE, ODD_SIZE_RATE, SERIES_QUIRK_GUARANTEE = 0.1, 0.06, 0.08, 8
MISSING_SERIES_WEIGHTS = {SAG_T1: 0.4, SAG_T2: 0.3, AXIAL: 0.3}
# Real-scanner shapes (design_notes.md), each guaranteed once in a split of GUARANTEE[split]
# studies or more: per-disc tilted axial blocks, files stored mirrored / upside down /
# transposed, a colour file, a file without geometry, an Axial T2 that is only a three-plane
# localiser, and (test split: its labels would need frame numbers) one multi-frame file.
BLOCKS_RATE, STORED_RATE, COLOUR_RATE, NO_GEOMETRY_RATE = 0.25, 0.15, 0.04, 0.05
LOCALISER_RATE, MULTIFRAME_RATE = 0.03, 0.1
SCANNER_QUIRK_GUARANTEE = {"train": 8, "test": 3}
# Lumbar lordosis: the disc planes tilt further back at the lower levels (degrees about +x).
DISC_TILT_DEG = (-8.0, -3.0, 3.0, 10.0, 18.0)
# Stored orientations, as the reader's transform back to canonical; the first is guaranteed.
AXIAL_STORAGE = (InPlane(flip_cols=True), InPlane(transpose=True), InPlane(True, True, False))
SAGITTAL_STORAGE = (InPlane(flip_rows=True), InPlane(flip_cols=True), InPlane(transpose=True))

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
class SynthSeries:
    """One series: its slices in anatomical order, their canonical geometry, and how its files
    store them. Per-slice tuples are aligned with `positions`."""

    series_id: int
    series_type: str
    series_number: int
    size: int
    pixel_spacing: float
    origins: tuple[
        tuple[float, float], ...
    ]  # canonical pixel (0, 0): sagittal (y, z), axial (x, y)
    positions: tuple[float, ...]  # sagittal: x, increasing; axial: z of the centre, decreasing
    tilts: tuple[float, ...]  # axial: plane rotation about the patient x axis, radians
    spacing: float
    backwards: bool
    spacing_tags: bool
    blocks: int = 1  # per-disc tilted blocks (axial)
    stored: InPlane = InPlane()  # the reader's transform from the files' pixels to canonical
    colour_slice: int | None = None  # this slice is written as an RGB file
    no_geometry_file: bool = False  # plus one secondary capture without geometry tags
    multiframe: bool = False  # every slice a frame of one Enhanced MR file
    localiser: bool = False  # not a stack: three orthogonal one-slice planes

    @property
    def axial(self) -> bool:
        return self.series_type == AXIAL

    def instance_number(self, k: int) -> int:
        """Instance number of the k-th slice in anatomical order."""
        return len(self.positions) - k if self.backwards else k + 1

    def frame(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(origin, right, down) of slice k's canonical image, patient mm, unit directions."""
        oy_or_x, second = self.origins[k]
        if not self.axial:
            right, down = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])
            return np.array([self.positions[k], oy_or_x, second]), right, down
        t, half = self.tilts[k], self.pixel_spacing * (self.size - 1) / 2
        right, down = np.array([1.0, 0.0, 0.0]), np.array([0.0, math.cos(t), -math.sin(t)])
        return np.array([oy_or_x, second, self.positions[k] + half * math.sin(t)]), right, down

    def stored_geometry(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ImagePositionPatient, row direction, column direction) of slice k as stored."""
        origin, right, down = self.frame(k)

        def world(xs: float, ys: float) -> np.ndarray:
            xc, yc = self.stored.map_point(xs, ys, (self.size, self.size))
            return origin + self.pixel_spacing * (xc * right + yc * down)

        corner = world(0, 0)
        rows = (world(1, 0) - corner) / self.pixel_spacing
        cols = (world(0, 1) - corner) / self.pixel_spacing
        return corner, rows, cols

    def to_pixel(self, k: int, world: tuple[float, float]) -> tuple[float, float]:
        """In-plane world point (sagittal y, z; axial x, y) -> stored (column, row) of slice k."""
        (u0, v0), px = self.origins[k], self.pixel_spacing
        if self.axial:
            column, row = (world[0] - u0) / px, (world[1] - v0) / (px * math.cos(self.tilts[k]))
        else:
            column, row = (world[0] - u0) / px, (v0 - world[1]) / px
        x, y = self.stored.inverse().map_point(column, row, (self.size, self.size))
        return round(float(x), 6), round(float(y), 6)


@dataclass
class StudyPlan:
    """Everything needed to write one study."""

    index: int
    study_id: int
    split: str
    codes: np.ndarray  # (5 conditions, 5 levels) severity codes drawn in the images
    labels: np.ndarray  # (5, 5) the reader's grades of them: train.csv and the test solution
    unlabelled: np.ndarray  # (5, 5) bool, cells left empty in train.csv
    anatomy: Anatomy
    series: list[SynthSeries]


@dataclass
class StudyQuirks:
    """Study-level quirks decided before the series are planned."""

    missing: str | None = None
    double_axial: bool = False
    localiser_axial: bool = False  # the Axial T2 series is only a three-plane localiser


# ---------------------------------------------------------------------------------------------
# Planning: ids, labels, quirks and geometry, all drawn from the seed


def plan_dataset(studies: int, test_studies: int, seed: int, size: int) -> list[StudyPlan]:
    id_rng = np.random.default_rng([seed, 0])
    taken: set[int] = set()
    study_ids = _unique_ids(id_rng, studies + test_studies, STUDY_ID_RANGE, taken)
    plans: list[StudyPlan] = []
    for split, start, stop in (("train", 0, studies), ("test", studies, studies + test_studies)):
        quirk_rng = np.random.default_rng([seed, 1, start])
        split_plans = [
            _plan_study(
                np.random.default_rng([seed, 2, i]),
                np.random.default_rng([seed, 6, i]),
                (i, study_ids[i], split),
            )
            for i in range(start, stop)
        ]
        quirks = _study_quirks(quirk_rng, len(split_plans))
        scanner_rng = np.random.default_rng([seed, 5, start])
        _localiser_quirks(scanner_rng, quirks, split)
        _plan_split_series(quirk_rng, id_rng, taken, split_plans, quirks, size, seed)
        _scanner_quirks(scanner_rng, split_plans, split)
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


def _pick_among(
    rng: np.random.Generator, eligible: list[int], rate: float, at_least_one: bool
) -> list[int]:
    """The eligible indices `_pick` flags, first forced one first."""
    flags = _pick(rng, len(eligible), rate, at_least_one)
    return [eligible[k] for k in np.flatnonzero(flags)]


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


def _localiser_quirks(rng: np.random.Generator, quirks: list[StudyQuirks], split: str) -> None:
    """Studies whose only Axial T2 is a three-plane localiser (no usable axial stack)."""
    eligible = [i for i, q in enumerate(quirks) if q.missing is None and not q.double_axial]
    guarantee = len(quirks) >= SCANNER_QUIRK_GUARANTEE[split]
    for i in _pick_among(rng, eligible, LOCALISER_RATE, guarantee):
        quirks[i].localiser_axial = True


def _series_types(quirks: StudyQuirks) -> list[str]:
    types = [t for t in SERIES_TYPES if t != quirks.missing]
    return types + [AXIAL] if quirks.double_axial else types


def _plan_study(
    rng: np.random.Generator, reader_rng: np.random.Generator, key: tuple[int, int, str]
) -> StudyPlan:
    """`key` is (index, study_id, split). The reader draws from its own generator, so the
    images are the ones the same seed drew before readers were modelled."""
    index, study_id, split = key
    latent = float(rng.standard_normal())
    scores = severity_scores(rng, latent)
    codes = grade(scores)
    unlabelled = np.zeros_like(codes, dtype=bool)
    if split == "train":
        unlabelled = rng.random(codes.shape) < MISSING_LABEL_RATE
    anatomy = _sample_anatomy(rng, latent, codes)
    labels = grade(scores + READER_SD * reader_rng.standard_normal(scores.shape))
    return StudyPlan(index, study_id, split, codes, labels, unlabelled, anatomy, [])


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
    for plan, study_types, quirk in zip(plans, types, quirks, strict=True):
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
            if series_type == AXIAL and quirk.localiser_axial:
                planned = replace(planned, localiser=True)
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
) -> SynthSeries:
    """Geometry of one series; `extra` marks the smaller second Axial T2 stack."""
    a = anatomy.scale
    if series_type == AXIAL:
        fov = mm(0.8 * a * rng.uniform(0.95, 1.05))
        origin = (
            mm(anatomy.x_mid + a * rng.uniform(-0.02, 0.02) - fov / 2),
            mm(anatomy.y_canal - 0.02 * a - fov / 2),
        )
        positions, spacing = _axial_positions(rng, anatomy, extra)
    else:
        fov = a
        origin = (mm(anatomy.y_canal - 0.55 * a), mm(anatomy.z_top))
        positions, spacing = _sagittal_positions(rng, anatomy)
    return SynthSeries(
        series_id=series_id,
        series_type=series_type,
        series_number=series_number,
        size=size,
        pixel_spacing=round(fov / size, 5),
        origins=(origin,) * len(positions),
        positions=positions,
        tilts=(0.0,) * len(positions),
        spacing=spacing,
        backwards=backwards,
        spacing_tags=spacing_tags,
    )


def _scanner_quirks(rng: np.random.Generator, plans: list[StudyPlan], split: str) -> None:
    """Turn some series into the shapes real scanners write (see SCANNER_QUIRK_GUARANTEE)."""
    guarantee = len(plans) >= SCANNER_QUIRK_GUARANTEE[split]
    every = [(p, k) for p in plans for k, s in enumerate(p.series) if not s.localiser]

    def among(keep: Callable[[StudyPlan, SynthSeries], bool], rate: float) -> list:
        eligible = [i for i, (p, k) in enumerate(every) if keep(p, p.series[k])]
        return [every[i] for i in _pick_among(rng, eligible, rate, guarantee)]

    for plan, k in among(lambda p, s: s is main_series(p, AXIAL), BLOCKS_RATE):
        plan.series[k] = _per_disc_blocks(rng, plan.anatomy, plan.series[k])
    for axial, storage in ((True, AXIAL_STORAGE), (False, SAGITTAL_STORAGE)):
        chosen = among(lambda p, s, view=axial: s.axial == view, STORED_RATE)
        for n, (plan, k) in enumerate(chosen):
            stored = storage[0] if n == 0 else storage[int(rng.integers(len(storage)))]
            plan.series[k] = replace(plan.series[k], stored=stored)
    for plan, k in among(lambda p, s: True, COLOUR_RATE):
        series = plan.series[k]
        plan.series[k] = replace(series, colour_slice=len(series.positions) // 2)
    for plan, k in among(lambda p, s: True, NO_GEOMETRY_RATE):
        plan.series[k] = replace(plan.series[k], no_geometry_file=True)
    if split == "test":
        simple = lambda p, s: s.blocks == 1 and s.colour_slice is None  # noqa: E731
        for plan, k in among(simple, MULTIFRAME_RATE):
            plan.series[k] = replace(plan.series[k], multiframe=True, no_geometry_file=False)


def _per_disc_blocks(
    rng: np.random.Generator, anatomy: Anatomy, series: SynthSeries
) -> SynthSeries:
    """The Axial T2 acquired as one short block per disc, each tilted to its disc's plane and
    centred where the single stack was."""
    half = series.pixel_spacing * (series.size - 1) / 2
    centre_x, centre_y = series.origins[0][0] + half, series.origins[0][1] + half
    slices, spacings = [], []
    for level, tilt_deg in enumerate(DISC_TILT_DEG):
        n, spacing = int(rng.integers(4, 6)), mm(rng.uniform(3.0, 4.0))
        t = math.radians(tilt_deg + rng.uniform(-3.0, 3.0))
        normal = np.array([0.0, math.sin(t), math.cos(t)])
        disc = np.array([centre_x, centre_y, float(anatomy.disc_z[level + 1])])
        for j in range(n):
            c = disc + (j - (n - 1) / 2) * spacing * normal
            origin = (mm(c[0] - half), mm(c[1] - half * math.cos(t)))
            slices.append((mm(c[2]), origin, t))
        spacings.append(spacing)
    slices.sort(key=lambda s: -s[0])  # head to feet
    return replace(
        series,
        positions=tuple(s[0] for s in slices),
        origins=tuple(s[1] for s in slices),
        tilts=tuple(s[2] for s in slices),
        spacing=mm(float(np.mean(spacings))),
        blocks=len(DISC_TILT_DEG),
    )


def main_series(plan: StudyPlan, series_type: str) -> SynthSeries | None:
    """The largest series of a type (the extra Axial T2 stack is smaller; a localiser is none)."""
    candidates = [s for s in plan.series if s.series_type == series_type and not s.localiser]
    return max(candidates, key=lambda s: len(s.positions), default=None)


def mm(value: float) -> float:
    """Round to what the DICOM tags store, so drawing and tags agree exactly."""
    return round(float(value), 4)


def _sagittal_positions(
    rng: np.random.Generator, anatomy: Anatomy
) -> tuple[tuple[float, ...], float]:
    """Slices from patient right to left (increasing x), spanning both sides of the midline."""
    n = int(rng.integers(15, 20))
    spacing = mm(rng.uniform(3.5, 4.0))
    centre = anatomy.x_mid + rng.uniform(-3.0, 3.0)
    return tuple(mm(centre + (k - (n - 1) / 2) * spacing) for k in range(n)), spacing


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
        spacing = mm((top - (discs[4] - 0.06 * a)) / (n - 1))
    return tuple(mm(top - k * spacing) for k in range(n)), spacing


# ---------------------------------------------------------------------------------------------
# # Labels and anatomy


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


def severity_scores(rng: np.random.Generator, latent: float) -> np.ndarray:
    """(5 conditions, 5 levels) scores; study and level latents correlate them like real disease."""
    level_latent = rng.standard_normal(len(LEVELS))
    noise_loading = math.sqrt(1.0 - STUDY_LOADING**2 - LEVEL_LOADING**2)
    scores = np.empty((len(CONDITIONS), len(LEVELS)))
    for ci, condition in enumerate(CONDITIONS):
        scores[ci] = (
            STUDY_LOADING * latent
            + LEVEL_LOADING * level_latent
            + noise_loading * rng.standard_normal(len(LEVELS))
            + np.asarray(LEVEL_SHIFTS[_group(condition)])
        )
    return scores


def grade(scores: np.ndarray) -> np.ndarray:
    """Severity codes (0 Normal/Mild, 1 Moderate, 2 Severe) of (5 conditions, ...) scores."""
    codes = np.empty(scores.shape, dtype=np.int64)
    for ci, condition in enumerate(CONDITIONS):
        low, high = _thresholds(_group(condition))
        codes[ci] = (scores[ci] > low).astype(np.int64) + (scores[ci] > high)
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
