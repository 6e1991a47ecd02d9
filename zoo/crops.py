"""Two-stage pieces shared by training and `zoo predict`: stage 1's targets and points, and the
crops stage 2 grades. Pure NumPy/OpenCV on the cached series (canonical orientation, cache
size), so the kernel cuts exactly the crops training cut.

Conventions. A localiser outputs, in order, (x, y) of each point in [0, 1] of the cache image,
then the position of each named slice in [0, 1] of the cached stack (0: its first slice). A
crop stack is `slices` adjacent cached slices around a slice position, each a square window of
`window_mm` around a point, resized to `size` pixels. Axial crops ("canal") need no axial
localiser: the sagittal level point is carried into every cached axial slice by the DICOM
geometry (`picked[k]["world"]`), the nearest slices are cut, each around the point's
projection moved `side_offset_mm` to the patient's left (image right) or right.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pandas as pd

from zoo.constants import CONDITION_TITLES, CONDITIONS_OF_SERIES, LEVEL_TITLES
from zoo.geometry import InPlane, to_cache
from zoo.registry import ModelSpec

MIDLINE = "midline"


class CropUnavailable(Exception):
    """A study whose crops cannot be made (a series, its geometry or a point is missing)."""


@dataclass
class SeriesView:
    """One cached series type of one study: its slices at the cache size and where they lie."""

    picked: list[dict]  # per slice: position in the series, in-plane transform, world frame
    order: list[int]  # the series' instance numbers in anatomical order
    size: int  # the cache size
    images: np.ndarray | None = None  # (slices, size, size) uint8, anatomical order

    @property
    def count(self) -> int:
        return len(self.picked)

    def mm_per_pixel(self) -> float:
        steps = [np.linalg.norm(p["world"]["du"]) for p in self.picked if p.get("world")]
        if not steps:
            raise CropUnavailable("the series has no geometry tags: millimetres unknown")
        return float(np.median(steps))


@dataclass
class Located:
    """Stage 1's answer for one study: points in cache pixels, slices as cached indices."""

    series: str  # the series type the points lie on
    points: dict[str, tuple[float, float]]
    slices: dict[str, float]


def split_side(name: str) -> tuple[str | None, str]:
    """('left' | 'right' | None, the rest) of a point or target name: 'left_l4_l5' ->
    ('left', 'l4_l5'); 'l4_l5' -> (None, 'l4_l5')."""
    if name.startswith(("left_", "right_")):
        side, rest = name.split("_", 1)
        return side, rest
    return None, name


def point_condition(spec: ModelSpec, point: str) -> tuple[str, str]:
    """(condition title, level title) of a localiser point: 'l4_l5' on Sagittal T2/STIR is the
    spinal canal at L4/L5, 'left_l4_l5' on Sagittal T1 the left foramen at L4/L5."""
    side, level = split_side(point)
    conditions = CONDITIONS_OF_SERIES[spec.plan.series_types[0]]
    condition = next(c for c in conditions if side is None or c.startswith(side))
    return CONDITION_TITLES[condition], LEVEL_TITLES[level]


def slice_conditions(spec: ModelSpec, name: str) -> list[str]:
    """Condition titles whose label slices place a named slice (midline: all of the series')."""
    conditions = CONDITIONS_OF_SERIES[spec.plan.series_types[0]]
    chosen = conditions if name == MIDLINE else [c for c in conditions if c.startswith(name)]
    return [CONDITION_TITLES[c] for c in chosen]


def cached_index(view: SeriesView, instance: int) -> float | None:
    """A series instance's position among the cached slices (fractional), None if unknown."""
    if instance not in view.order:
        return None
    position = view.order.index(instance)
    picked = np.array([p["position"] for p in view.picked], float)
    keep = np.concatenate([[True], np.diff(picked) > 0])  # np.interp needs increasing x
    return float(np.interp(position, picked[keep], np.arange(len(picked))[keep]))


def localiser_targets(spec: ModelSpec, view: SeriesView, rows: pd.DataFrame) -> np.ndarray:
    """The localiser's training target from one study's label coordinates on this series:
    NaN where a label is missing (the loss ignores it)."""
    out = np.full(spec.num_outputs, np.nan, np.float32)
    size, n = view.size, view.count
    for k, point in enumerate(spec.points):
        condition, level = point_condition(spec, point)
        row = rows[(rows["condition"] == condition) & (rows["level"] == level)]
        if len(row):
            r = row.iloc[0]
            index = cached_index(view, int(r["instance_number"]))
            nearest = view.picked[int(round(index))] if index is not None else view.picked[0]
            transform = InPlane(*nearest["inplane"])
            u, v = to_cache(transform, tuple(nearest["shape"]), float(r["x"]), float(r["y"]), size)
            out[2 * k : 2 * k + 2] = u / size, v / size
    for k, name in enumerate(spec.slice_points):
        marked = rows[rows["condition"].isin(slice_conditions(spec, name))]
        found = [
            i
            for i in (cached_index(view, int(j)) for j in marked["instance_number"])
            if i is not None
        ]
        if found:
            out[2 * len(spec.points) + k] = float(np.mean(found)) / max(1, n - 1)
    return out


def fill_gaps(spec: ModelSpec, vector: np.ndarray) -> np.ndarray | None:
    """A ground-truth vector with its missing points filled in from the same side's other
    levels (linear in the level, as discs are evenly spaced); None when a side has fewer than
    two known points or a slice is unknown. An unlabelled cell has no coordinate, so a filled
    point only ever places the crop of a row the loss ignores."""
    out = vector.copy()
    sides = {}
    for k, point in enumerate(spec.points):
        sides.setdefault(split_side(point)[0], []).append(k)
    for ks in sides.values():
        known = [i for i, k in enumerate(ks) if np.isfinite(out[2 * k])]
        if len(known) < 2:
            return None
        for axis in (0, 1):
            values = [out[2 * ks[i] + axis] for i in known]
            filled = np.interp(range(len(ks)), known, values)
            for i, k in enumerate(ks):
                out[2 * k + axis] = filled[i]
    return out if np.isfinite(out[2 * len(spec.points) :]).all() else None


def decode(spec: ModelSpec, output: np.ndarray, size: int, slices: int) -> Located:
    """A localiser's output vector (or target) in cache pixels and cached indices."""
    points = {
        name: (float(output[2 * k]) * size, float(output[2 * k + 1]) * size)
        for k, name in enumerate(spec.points)
    }
    offset = 2 * len(spec.points)
    placed = {
        name: float(output[offset + k]) * (slices - 1) for k, name in enumerate(spec.slice_points)
    }
    return Located(spec.plan.series_types[0], points, placed)


def crop_rows(spec: ModelSpec) -> list[tuple[str | None, str]]:
    """(side or None, level) of each target row, in target order."""
    rows = []
    for target in spec.targets:
        level = "_".join(target.rsplit("_", 2)[-2:])
        rows.append((split_side(target)[0], level))
    return rows


def cut(image: np.ndarray, u: float, v: float, half: float, size: int) -> np.ndarray:
    """A square window of half-side `half` pixels around (u, v), resized to size x size;
    outside the image is black."""
    scale = size / (2.0 * half)
    matrix = np.float32([[scale, 0, (half - u) * scale], [0, scale, (half - v) * scale]])
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)


def stack_around(view: SeriesView, index: float, slices: int) -> list[int]:
    """`slices` adjacent cached indices centred on `index`, clamped to the stack."""
    centre = int(round(min(max(index, 0.0), len(view.images) - 1)))
    return [
        min(max(centre + d, 0), len(view.images) - 1)
        for d in range(-(slices // 2), slices // 2 + 1)
    ][:slices]


def frame_point(frame: dict, u: float, v: float) -> np.ndarray:
    """The world point (mm) of cache pixel (u, v) of a slice's frame."""
    origin, du, dv = (np.asarray(frame[k], float) for k in ("origin", "du", "dv"))
    return origin + u * du + v * dv


def world_point(view: SeriesView, index: float, u: float, v: float) -> np.ndarray:
    frame = view.picked[int(round(min(max(index, 0), view.count - 1)))].get("world")
    if not frame:
        raise CropUnavailable("the sagittal series has no geometry tags")
    return frame_point(frame, u, v)


@dataclass
class CanalWindow:
    """Where one axial crop row is cut: the cached axial slices nearest the sagittal level
    point (nearest first) and, in each, the window centre in cache pixels."""

    side: str | None
    level: str
    slices: list[int]
    centres: list[tuple[float, float]]


def canal_windows(
    spec: ModelSpec, views: dict[str, SeriesView], located: Located
) -> list[CanalWindow]:
    """Each level's sagittal point carried into the nearest axial slices, moved to each side."""
    crop = spec.crop
    sagittal = views.get(located.series)
    axial = views[crop.source]
    frames = [p.get("world") for p in axial.picked]
    if sagittal is None or not all(frames):
        raise CropUnavailable("axial crops need the sagittal series and axial geometry")
    origin = np.array([f["origin"] for f in frames], float)
    du, dv = np.array([f["du"] for f in frames], float), np.array([f["dv"] for f in frames], float)
    normal = np.cross(du, dv)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    offset = crop.side_offset_mm / axial.mm_per_pixel()
    out = []
    for side, level in crop_rows(spec):
        u, v = located.points[level]
        rel = world_point(sagittal, located.slices[MIDLINE], u, v) - origin
        distance = np.abs(np.einsum("ij,ij->i", rel, normal))
        nearest = [int(j) for j in np.argsort(distance, kind="stable")[: crop.slices]]
        shift = offset if side == "left" else -offset  # patient left is image right
        centres = [
            (
                float(rel[j] @ du[j] / (du[j] @ du[j])) + shift,
                float(rel[j] @ dv[j] / (dv[j] @ dv[j])),
            )
            for j in nearest
        ]
        out.append(CanalWindow(side, level, nearest, centres))
    return out


def label_world(view: SeriesView, row: pd.Series) -> tuple[int, np.ndarray] | None:
    """A label coordinate's cached slice and world point (mm); None when its slice was not
    cached or has no geometry."""
    index = cached_index(view, int(row["instance_number"]))
    if index is None or index != int(index):
        return None
    picked = view.picked[int(index)]
    frame = picked.get("world")
    if not frame:
        return None
    u, v = to_cache(
        InPlane(*picked["inplane"]),
        tuple(picked["shape"]),
        float(row["x"]),
        float(row["y"]),
        view.size,
    )
    return int(index), frame_point(frame, u, v)


def canal_error(
    spec: ModelSpec, views: dict[str, SeriesView], located: Located, rows: pd.DataFrame
) -> list[tuple[str, float, bool, bool]]:
    """How well the geometric axial windows sit on the labelled subarticular points: per
    labelled row (level, distance in mm from the window centre on its nearest slice, whether
    the point lies inside the window, whether its slice is among the cropped slices)."""
    axial, half_mm = views[spec.crop.source], spec.crop.window_mm / 2
    out = []
    for window in canal_windows(spec, views, located):
        condition = CONDITION_TITLES[f"{window.side}_subarticular_stenosis"]
        row = rows[(rows["condition"] == condition) & (rows["level"] == LEVEL_TITLES[window.level])]
        truth = label_world(axial, row.iloc[0]) if len(row) else None
        if truth is None:
            continue
        j = window.slices[0]
        frame = axial.picked[j]["world"]
        delta = truth[1] - frame_point(frame, *window.centres[0])
        along = [abs(delta @ np.asarray(frame[k])) / np.linalg.norm(frame[k]) for k in ("du", "dv")]
        inside = max(along) < half_mm
        out.append((window.level, float(np.linalg.norm(delta)), inside, truth[0] in window.slices))
    return out


def _axial_crops(
    spec: ModelSpec, views: dict[str, SeriesView], located: Located
) -> list[np.ndarray]:
    crop, axial = spec.crop, views[spec.crop.source]
    half = crop.window_mm / 2 / axial.mm_per_pixel()
    out = []
    for window in canal_windows(spec, views, located):
        stack = []
        for j, (u, v) in sorted(
            zip(window.slices, window.centres, strict=True)
        ):  # anatomical order
            image = cut(axial.images[j], u, v, half, crop.size)
            stack.append(image[:, ::-1] if crop.mirror_right and window.side == "right" else image)
        out.append(np.stack(stack))
    return out


def make_crops(spec: ModelSpec, views: dict[str, SeriesView], located: Located) -> np.ndarray:
    """(targets, slices, size, size) uint8 crops of one study; CropUnavailable with why not."""
    crop = spec.crop
    view = views.get(crop.source)
    if view is None:
        raise CropUnavailable(f"no usable {crop.source}")
    if crop.centre == "canal":
        return np.stack(_axial_crops(spec, views, located))
    half = crop.window_mm / 2 / view.mm_per_pixel()
    out = []
    for side, level in crop_rows(spec):
        u, v = located.points[f"{side}_{level}" if side else level]
        indices = stack_around(view, located.slices[side or MIDLINE], crop.slices)
        out.append(np.stack([cut(view.images[k], u, v, half, crop.size) for k in indices]))
    return np.stack(out)


def crop_input(crops: np.ndarray) -> np.ndarray:
    """uint8 crops -> float32 in [-1, 1], as every model input."""
    return (crops.astype(np.float32) - np.float32(127.5)) / np.float32(127.5)


def jitter(
    located: Located, rng: np.random.Generator, sigma_px: float, sigma_slice: float
) -> Located:
    """Stage-1-sized mistakes for a ground-truth answer, so stage 2 learns to tolerate them."""
    points = {
        k: (u + rng.normal(0, sigma_px), v + rng.normal(0, sigma_px))
        for k, (u, v) in located.points.items()
    }
    slices = {k: i + rng.normal(0, sigma_slice) for k, i in located.slices.items()}
    return Located(located.series, points, slices)
