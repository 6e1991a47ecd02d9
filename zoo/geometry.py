"""Series geometry: which slices of a series belong to its view, their order, and one canonical
in-plane orientation per view. Pure functions of DICOM geometry tags; no file access.

The conventions, in DICOM patient coordinates (LPS: +x patient left, +y posterior, +z head):

| view     | slice order (channel 0 first) | image right (+column) | image down (+row)    |
|----------|-------------------------------|-----------------------|----------------------|
| sagittal | patient right to left (+x)    | anterior to posterior | head to feet         |
| axial    | head to feet (-z)             | patient right to left | anterior to posterior|

So axial images are in the radiological convention (patient left on the image right) and
sagittal images face the patient's front to the image left, head up. A file stored otherwise is
flipped or transposed by its `InPlane` transform before it reaches a model, and label
coordinates (x = column, y = row, pixel centres at integers) go through `InPlane.map_point`.

Slices are grouped into planes by the angle between their normals (`PLANE_TOLERANCE_DEG`), not
by rounding the normal, so jitter never splits a stack. Every plane within
`VIEW_TOLERANCE_DEG` of the view's patient axis is a candidate; the kept planes are those within
`BLOCK_TOLERANCE_DEG` of the candidates' mean normal, which keeps every per-disc tilted axial
block and drops localiser planes of other orientations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PLANE_TOLERANCE_DEG = 5.0  # normals closer than this are one plane
VIEW_TOLERANCE_DEG = 45.0  # a plane this close to the view's axis is of that view
BLOCK_TOLERANCE_DEG = 30.0  # kept planes lie this close to the series' mean normal
MIN_GEOMETRY_SLICES = 2  # fewer slices with geometry: the series is ordered by instance number

# Patient axis each view's slices step along, and the canonical (image right, image down).
VIEW_AXIS: dict[str, tuple[float, float, float]] = {
    "sagittal": (1.0, 0.0, 0.0),
    "axial": (0.0, 0.0, 1.0),
}
CANONICAL_AXES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
}
# Sagittal slices run towards +x (ascending), axial towards -z (descending).
DESCENDING = {"sagittal": False, "axial": True}


@dataclass(frozen=True)
class InPlane:
    """Stored image -> canonical image: transpose first, then flip rows and/or columns."""

    transpose: bool = False
    flip_rows: bool = False  # upside down
    flip_cols: bool = False  # mirrored left-right

    @property
    def identity(self) -> bool:
        return not (self.transpose or self.flip_rows or self.flip_cols)

    def apply(self, image: np.ndarray) -> np.ndarray:
        """The canonical view of a stored image (rows x columns, any trailing axes)."""
        out = np.swapaxes(image, 0, 1) if self.transpose else image
        if self.flip_rows:
            out = out[::-1]
        if self.flip_cols:
            out = out[:, ::-1]
        return np.ascontiguousarray(out)

    def map_point(self, x: float, y: float, shape: tuple[int, int]) -> tuple[float, float]:
        """A stored pixel coordinate (x = column, y = row) in the canonical image.

        `shape` is the stored image's (rows, columns); pixel centres sit on integers, so a
        flip maps x to columns - 1 - x.
        """
        rows, cols = shape
        if self.transpose:
            x, y, rows, cols = y, x, cols, rows
        if self.flip_cols:
            x = cols - 1 - x
        if self.flip_rows:
            y = rows - 1 - y
        return x, y

    def inverse(self) -> InPlane:
        """The transform from the canonical image back to the stored one."""
        if not self.transpose:
            return self
        return InPlane(True, flip_rows=self.flip_cols, flip_cols=self.flip_rows)

    def describe(self) -> str:
        parts = ["transposed"] if self.transpose else []
        parts += ["upside down"] if self.flip_rows else []
        parts += ["mirrored"] if self.flip_cols else []
        return " and ".join(parts) or "canonical"


def slice_normal(orientation: tuple[float, ...]) -> np.ndarray:
    """Unit normal of a slice: row direction x column direction."""
    normal = np.cross(np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float))
    length = float(np.linalg.norm(normal))
    return normal / length if length > 0 else normal


def canonical_inplane(orientation: tuple[float, ...] | None, view: str) -> InPlane:
    """How to turn an image with this ImageOrientationPatient into the view's canonical one."""
    if orientation is None:
        return InPlane()
    right, down = (np.asarray(a) for a in CANONICAL_AXES[view])
    row_dir = np.asarray(orientation[:3], float)  # direction of increasing column index
    col_dir = np.asarray(orientation[3:6], float)  # direction of increasing row index
    straight = abs(row_dir @ right) + abs(col_dir @ down)
    crossed = abs(row_dir @ down) + abs(col_dir @ right)
    transpose = bool(crossed > straight)
    if transpose:
        row_dir, col_dir = col_dir, row_dir
    return InPlane(
        transpose, flip_rows=bool(col_dir @ down < 0), flip_cols=bool(row_dir @ right < 0)
    )


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Angle between two lines (unsigned normals), 0..90 degrees."""
    return math.degrees(math.acos(min(1.0, abs(float(a @ b)))))


def group_planes(
    normals: np.ndarray, tolerance_deg: float = PLANE_TOLERANCE_DEG
) -> list[list[int]]:
    """Indices of slices sharing a plane: each joins the first group whose normal is within
    `tolerance_deg` of its own (normals are lines: n and -n are the same plane)."""
    groups: list[tuple[np.ndarray, list[int]]] = []
    for i, normal in enumerate(normals):
        for reference, members in groups:
            if _angle_deg(normal, reference) <= tolerance_deg:
                members.append(i)
                break
        else:
            groups.append((normal, [i]))
    return [members for _, members in groups]


@dataclass
class Arrangement:
    """Which slices a series keeps, in anatomical order, and why the others went."""

    order: list[int]  # indices of kept slices, channel 0 first
    ordered_by: str  # "position" or "instance_number"
    planes: int = 0  # planes (blocks) kept
    dropped_no_geometry: list[int] | None = None
    dropped_other_plane: list[int] | None = None
    notes: list[str] | None = None


def arrange_slices(
    positions: list[tuple[float, ...] | None],
    orientations: list[tuple[float, ...] | None],
    centres: list[np.ndarray | None],
    view: str,
) -> Arrangement:
    """Keep the slices of a series that lie in its view and order them anatomically.

    `centres` are the slice centres in patient coordinates (None where unknown); ordering
    projects them on the kept planes' mean normal, so tilted per-disc blocks interleave by
    where they are, head to feet.
    """
    located = [i for i, (p, o) in enumerate(zip(positions, orientations, strict=True)) if p and o]
    if len(located) < MIN_GEOMETRY_SLICES:
        note = f"{len(located)} of {len(positions)} slices have geometry tags: instance order"
        return Arrangement(list(range(len(positions))), "instance_number", notes=[note])
    notes: list[str] = []
    no_geometry = [i for i in range(len(positions)) if i not in set(located)]
    axis = np.asarray(VIEW_AXIS[view])
    normals = np.stack([slice_normal(orientations[i]) for i in located])
    normals = np.where((normals @ axis)[:, None] < 0, -normals, normals)  # point along the axis
    groups = [[located[k] for k in g] for g in group_planes(normals)]
    normal_of = dict(zip(located, normals, strict=True))
    candidates = [g for g in groups if _angle_deg(normal_of[g[0]], axis) <= VIEW_TOLERANCE_DEG]
    if not candidates:
        notes.append(f"no slice lies in the {view} plane")
        return Arrangement([], "position", 0, no_geometry, located, notes)
    mean = sum(len(g) * normal_of[g[0]] for g in candidates)
    mean = mean / np.linalg.norm(mean)
    kept = [g for g in groups if _angle_deg(normal_of[g[0]], mean) <= BLOCK_TOLERANCE_DEG]
    members = sorted(i for g in kept for i in g)
    other = [i for i in located if i not in set(members)]

    def where(i: int) -> float:
        point = centres[i] if centres[i] is not None else np.asarray(positions[i], float)
        return float(point @ mean)

    order = sorted(members, key=lambda i: (-where(i) if DESCENDING[view] else where(i), i))
    return Arrangement(order, "position", len(kept), no_geometry, other, notes)


def slice_centre(
    position: tuple[float, ...],
    orientation: tuple[float, ...],
    shape: tuple[int, int],
    spacing: tuple[float, float] | None,
) -> np.ndarray:
    """Patient coordinates of a slice's centre pixel (ImagePositionPatient is its corner)."""
    origin = np.asarray(position, float)
    if spacing is None:
        return origin
    rows, cols = shape
    row_dir, col_dir = np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float)
    return origin + row_dir * spacing[1] * (cols - 1) / 2 + col_dir * spacing[0] * (rows - 1) / 2


def to_cache(
    transform: InPlane, shape: tuple[int, int], x: float, y: float, size: int
) -> tuple[float, float]:
    """A stored-pixel point (x = column, y = row) in the size x size cache image: through the
    canonical transform, then the resize (pixel centres map as cv2.resize maps them)."""
    cx, cy = transform.map_point(x, y, shape)
    rows, cols = shape[::-1] if transform.transpose else shape
    return (cx + 0.5) * size / cols - 0.5, (cy + 0.5) * size / rows - 0.5


def cache_frame(
    position: tuple[float, ...] | None,
    orientation: tuple[float, ...] | None,
    spacing: tuple[float, float] | None,
    shape: tuple[int, int],
    transform: InPlane,
    size: int,
) -> dict | None:
    """Where a cache image lies in the patient (mm): the world point of pixel (0, 0) and the
    world step of one pixel along its columns (du) and rows (dv). None without geometry."""
    if position is None or orientation is None or spacing is None:
        return None
    origin, rows_mm, cols_mm = np.asarray(position, float), spacing[0], spacing[1]
    row_dir, col_dir = np.asarray(orientation[:3], float), np.asarray(orientation[3:6], float)
    height, width = shape[::-1] if transform.transpose else shape
    back = transform.inverse()

    def world(u: float, v: float) -> np.ndarray:
        xc, yc = (u + 0.5) * width / size - 0.5, (v + 0.5) * height / size - 0.5
        xs, ys = back.map_point(xc, yc, (height, width))
        return origin + xs * cols_mm * row_dir + ys * rows_mm * col_dir

    corner = world(0.0, 0.0)
    return {
        "origin": corner.round(4).tolist(),
        "du": (world(1.0, 0.0) - corner).round(6).tolist(),
        "dv": (world(0.0, 1.0) - corner).round(6).tolist(),
    }
