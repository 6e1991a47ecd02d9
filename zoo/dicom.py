"""DICOM series loading: headers first, slices in one anatomical direction, pixels on demand.

A series is read in two passes. `read_series` parses only the headers (`stop_before_pixels`) and
orders the slices along the slice normal; `decode_slice` then decodes just the slices a policy
picked. Decoding every slice of a study, as the notebooks did, costs several times more.

Direction is fixed by anatomy, not by InstanceNumber (design_notes.md):
- sagittal: patient right to left (increasing x in DICOM's LPS coordinates),
- axial: head to feet (decreasing z),
so channel k means the same place in every study.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError

from zoo.errors import ZooError

log = logging.getLogger(__name__)

JPEG_HINT = "install the jpeg extra: pip install 'zoo[jpeg]' (pylibjpeg with libjpeg and openjpeg)"


@dataclass(frozen=True)
class SliceHeader:
    """What ordering and selection need from one file, read without its pixels."""

    path: Path
    instance_number: int
    position: tuple[float, float, float] | None  # ImagePositionPatient
    orientation: tuple[float, ...] | None  # ImageOrientationPatient, 6 values


@dataclass
class Series:
    """One series' slices, ordered in the anatomical direction of its view."""

    series_dir: Path
    slices: list[SliceHeader]
    skipped: list[str] = field(default_factory=list)  # "file: reason" for unreadable files
    ordered_by: str = "position"  # or "instance_number" when geometry tags are missing

    def __len__(self) -> int:
        return len(self.slices)


def _instance_from_name(path: Path) -> int:
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else 0


def _floats(value: object, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and np.all(np.isfinite(out)) else None


def read_header(path: Path) -> SliceHeader:
    """Header of one file; raises InvalidDicomError/OSError/ValueError on a broken file."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    if "Rows" not in ds and "PixelData" not in ds:
        # stop_before_pixels hides PixelData, so judge an image by its image tags.
        raise InvalidDicomError("no image in file")
    try:
        instance = int(ds.get("InstanceNumber", None))
    except (TypeError, ValueError):
        instance = _instance_from_name(path)
    return SliceHeader(
        path=path,
        instance_number=instance,
        position=_floats(ds.get("ImagePositionPatient"), 3),
        orientation=_floats(ds.get("ImageOrientationPatient"), 6),
    )


def _normal(orientation: tuple[float, ...]) -> np.ndarray:
    row, col = np.asarray(orientation[:3]), np.asarray(orientation[3:])
    return np.cross(row, col)


def _largest_stack(slices: list[SliceHeader]) -> list[SliceHeader]:
    """An Axial T2 series can hold stacks of several orientations: keep the largest one."""
    groups: dict[tuple[float, ...], list[SliceHeader]] = {}
    for s in slices:
        key = tuple(np.round(_normal(s.orientation), 1)) if s.orientation else ()
        groups.setdefault(key, []).append(s)
    return max(groups.values(), key=len)


def order_slices(slices: list[SliceHeader], view: str) -> tuple[list[SliceHeader], str]:
    """Sort slices in the view's anatomical direction; InstanceNumber when geometry is missing.

    The normal (cross product of the orientation vectors) is signed so that its largest
    component points to +x (sagittal: patient left) or +z (axial: head). Sagittal slices are
    then sorted by ascending projection (right to left), axial by descending (head to feet).
    """
    if not slices:
        return [], "position"
    if any(s.position is None or s.orientation is None for s in slices):
        return sorted(slices, key=lambda s: s.instance_number), "instance_number"
    stack = _largest_stack(slices)
    normal = _normal(stack[0].orientation)
    axis = int(np.argmax(np.abs(normal)))
    normal = normal if normal[axis] >= 0 else -normal
    descending = view == "axial"
    ordered = sorted(
        stack,
        key=lambda s: (float(np.dot(s.position, normal)), s.instance_number),
        reverse=descending,
    )
    return ordered, "position"


def read_series(series_dir: Path, view: str) -> Series:
    """Headers of every .dcm in a folder, ordered; unreadable files are skipped and logged."""
    series_dir = Path(series_dir)
    if not series_dir.is_dir():
        raise ZooError(f"series folder not found: {series_dir}")
    headers, skipped = [], []
    for path in sorted(series_dir.glob("*.dcm"), key=_instance_from_name):
        try:
            headers.append(read_header(path))
        except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, AttributeError) as err:
            skipped.append(f"{path}: {type(err).__name__}: {err}")
            log.warning("skipping unreadable DICOM %s (%s)", path, err)
    ordered, how = order_slices(headers, view)
    return Series(series_dir=series_dir, slices=ordered, skipped=skipped, ordered_by=how)


def decode_slice(path: Path) -> np.ndarray:
    """Pixel values of one file as float32 with the modality rescale applied.

    Compressed transfer syntaxes decode through pydicom's plugins: RLE needs nothing more,
    JPEG variants need the `jpeg` extra, and its absence is a clear error.
    """
    ds = pydicom.dcmread(path)
    try:
        pixels = ds.pixel_array
    except (RuntimeError, NotImplementedError) as err:
        syntax = ds.file_meta.get("TransferSyntaxUID", None)
        if syntax is not None and "JPEG" in getattr(syntax, "name", "").upper():
            raise ZooError(f"{path}: cannot decode {syntax.name}: {JPEG_HINT}") from err
        raise
    if pixels.ndim != 2:
        pixels = pixels.reshape(-1, *pixels.shape[-2:])[0]  # a multi-frame file: first frame
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    return pixels.astype(np.float32) * slope + intercept


def to_uint8(pixels: np.ndarray, size: int) -> np.ndarray:
    """Per-slice min-max to 0..255, cubic resize to size x size, then round and clip to uint8.

    Cubic interpolation overshoots below 0 and above 255; the notebooks' truncating cast
    wrapped -1 to 255 (bright speckles at edges). Rounding and clipping is what cv2.imwrite did
    to the training PNGs, so train and test inputs now agree.
    """
    lo, hi = float(pixels.min()), float(pixels.max())
    scaled = (pixels.astype(np.float32) - lo) / (hi - lo + 1e-6) * 255.0
    if scaled.shape != (size, size):
        scaled = cv2.resize(scaled, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
