"""DICOM series loading: headers first, slices of the view in anatomical order, pixels on demand.

A series is read in two passes. `read_series` parses only the headers (`stop_before_pixels`),
keeps the slices that lie in the series' view and orders them (`zoo.geometry`); `decode_frames`
then decodes just the files a policy picked. Decoding every slice of a study, as the notebooks
did, costs several times more.

Real files come in every shape, and each has a rule (design_notes.md):
- a multi-frame file contributes one slice per frame, placed by its per-frame position;
- colour (RGB, YBR, palette) pixels become luminance, MONOCHROME1 is inverted, with a warning;
- files without geometry tags are dropped when two or more others have them;
- slices of other planes (localisers) are dropped; tilted per-disc axial blocks are all kept.
Every such decision is logged with the study, series and file, and pydicom's own warnings are
captured into one line that names the file instead of leaking out unlabelled.
"""

from __future__ import annotations

import contextlib
import logging
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_color_lut, get_decoder

from zoo.errors import ZooError
from zoo.geometry import Arrangement, arrange_slices, slice_centre

log = logging.getLogger(__name__)

JPEG_HINT = (
    "install the jpeg extra: pip install 'zoo[jpeg]' (pylibjpeg, pylibjpeg-libjpeg, "
    "pylibjpeg-openjpeg); offline, ship those wheels with `zoo package --wheelhouse DIR`"
)
HEADER_ERRORS = (InvalidDicomError, OSError, ValueError, EOFError, KeyError, AttributeError)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601: Y of YBR_FULL


class DecoderMissing(ZooError):
    """Pixel data in a transfer syntax no installed plugin decodes: every such file fails."""


@dataclass(frozen=True)
class SliceHeader:
    """What ordering and selection need from one slice (a file, or one frame of one)."""

    path: Path
    instance_number: int
    position: tuple[float, float, float] | None  # ImagePositionPatient
    orientation: tuple[float, ...] | None  # ImageOrientationPatient, 6 values
    shape: tuple[int, int] = (0, 0)  # rows, columns
    spacing: tuple[float, float] | None = None  # PixelSpacing: between rows, between columns
    frame: int | None = None  # index into a multi-frame file

    @property
    def name(self) -> str:
        return self.path.name if self.frame is None else f"{self.path.name}#{self.frame + 1}"


@dataclass
class Series:
    """One series' slices of its view, in anatomical order, and what was left out and why."""

    series_dir: Path
    slices: list[SliceHeader]
    skipped: list[str] = field(default_factory=list)  # "file: reason", unreadable files
    ordered_by: str = "position"  # or "instance_number" when geometry tags are missing
    planes: int = 1  # planes (tilted blocks) kept
    dropped: list[str] = field(default_factory=list)  # "file: reason", readable but not kept
    notes: list[str] = field(default_factory=list)  # warnings: what the model will not see
    info: list[str] = field(default_factory=list)  # how it was read: blocks, frames

    def __len__(self) -> int:
        return len(self.slices)


def series_label(series_dir: Path) -> str:
    """'study S series X' from the competition layout <study>/<series>/."""
    return f"study {series_dir.parent.name} series {series_dir.name}"


def file_label(path: Path) -> str:
    return f"{series_label(path.parent)} file {path.name}"


@contextlib.contextmanager
def library_messages(path: Path) -> Iterator[None]:
    """pydicom's warnings and log records while reading one file, as one zoo line naming it.

    On an exception nothing is added: the caller reports the error with the file named.
    """
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    library = logging.getLogger("pydicom")
    propagate, library.propagate = library.propagate, False
    library.addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        library.removeHandler(handler)
        library.propagate = propagate
    messages = records + [str(w.message) for w in caught]
    firsts = list(dict.fromkeys(m.strip().splitlines()[0] for m in messages if m.strip()))
    if firsts:
        log.warning("%s: pydicom: %s", file_label(path), "; ".join(firsts)[:500])


def _instance_from_name(path: Path) -> int:
    digits = re.findall(r"\d+", path.stem)
    return int(digits[-1]) if digits else 0


def _floats(value: object, n: int) -> tuple[float, ...] | None:
    try:
        out = tuple(float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n and np.all(np.isfinite(out)) else None


def _functional(groups: object, sequence: str, tag: str, n: int) -> tuple[float, ...] | None:
    """A geometry tag from one functional group item (Enhanced MR), or None."""
    try:
        return _floats(getattr(getattr(groups, sequence)[0], tag), n)
    except (AttributeError, IndexError, TypeError):
        return None


def read_headers(path: Path) -> list[SliceHeader]:
    """The slices of one file: one, or one per frame of a multi-frame file.

    Raises InvalidDicomError/OSError/ValueError on a broken file."""
    with library_messages(path):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    return slices_of(path, ds)


def slices_of(path: Path, ds: pydicom.Dataset) -> list[SliceHeader]:
    """The slices a dataset already read holds (see `read_headers`)."""
    if "Rows" not in ds and "PixelData" not in ds:
        # stop_before_pixels hides PixelData, so judge an image by its image tags.
        raise InvalidDicomError("no image in file")
    try:
        instance = int(ds.get("InstanceNumber", None))
    except (TypeError, ValueError):
        instance = _instance_from_name(path)
    shape = (int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0))
    position = _floats(ds.get("ImagePositionPatient"), 3)
    orientation = _floats(ds.get("ImageOrientationPatient"), 6)
    spacing = _floats(ds.get("PixelSpacing"), 2)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames <= 1:
        return [SliceHeader(path, instance, position, orientation, shape, spacing)]
    shared = (ds.get("SharedFunctionalGroupsSequence") or [None])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence") or []
    slices = []
    for k in range(frames):
        own = per_frame[k] if k < len(per_frame) else None
        slices.append(
            SliceHeader(
                path,
                instance,
                # A position shared by every frame places none of them: frames need their own.
                _functional(own, "PlanePositionSequence", "ImagePositionPatient", 3),
                _functional(own, "PlaneOrientationSequence", "ImageOrientationPatient", 6)
                or _functional(shared, "PlaneOrientationSequence", "ImageOrientationPatient", 6)
                or orientation,
                shape,
                _functional(own, "PixelMeasuresSequence", "PixelSpacing", 2)
                or _functional(shared, "PixelMeasuresSequence", "PixelSpacing", 2)
                or spacing,
                frame=k,
            )
        )
    return slices


def arrange(headers: list[SliceHeader], view: str) -> tuple[list[SliceHeader], Arrangement]:
    """`headers` in instance order, and which of them the view keeps in what order (indices
    into that list; see `zoo.geometry.arrange_slices`)."""
    headers = sorted(headers, key=lambda h: (h.instance_number, h.frame or 0))
    centres = [
        slice_centre(h.position, h.orientation, h.shape, h.spacing)
        if h.position and h.orientation
        else None
        for h in headers
    ]
    arranged = arrange_slices(
        [h.position for h in headers], [h.orientation for h in headers], centres, view
    )
    return headers, arranged


def read_series(series_dir: Path, view: str) -> Series:
    """Headers of every .dcm in a folder, the view's slices kept and ordered; every file left
    out is logged with its reason."""
    series_dir = Path(series_dir)
    if not series_dir.is_dir():
        raise ZooError(f"series folder not found: {series_dir}")
    headers: list[SliceHeader] = []
    series = Series(series_dir, [])
    files = [p for p in series_dir.iterdir() if p.suffix.lower() == ".dcm" and p.is_file()]
    for path in sorted(files, key=lambda p: (_instance_from_name(p), p.name)):
        try:
            headers += read_headers(path)
        except HEADER_ERRORS as err:
            series.skipped.append(f"{path}: {type(err).__name__}: {err}")
            log.warning("skipping unreadable DICOM: %s (%s)", file_label(path), err)
    _note_multiframe(series, headers)
    headers, arranged = arrange(headers, view)
    series.slices = [headers[i] for i in arranged.order]
    series.ordered_by, series.planes = arranged.ordered_by, arranged.planes
    series.notes += arranged.notes or []
    for indices, reason in (
        (arranged.dropped_no_geometry, "no geometry tags"),
        (arranged.dropped_other_plane, f"not in the {view} plane"),
    ):
        if indices:
            names = [headers[i].name for i in indices]
            series.dropped += [f"{series_dir / n}: {reason}" for n in names]
            series.notes.append(f"{len(names)} slice(s) dropped, {reason}: {_names(names)}")
    if series.planes > 1:
        series.info.append(f"{series.planes} tilted blocks kept, {len(series)} slices in order")
    for note in series.notes:
        log.warning("%s: %s", series_label(series_dir), note)
    for note in series.info:
        log.info("%s: %s", series_label(series_dir), note)
    return series


def _note_multiframe(series: Series, headers: list[SliceHeader]) -> None:
    multi = {h.path for h in headers if h.frame is not None}
    for path in sorted(multi):
        frames = [h for h in headers if h.path == path]
        placed = all(h.position is not None for h in frames)
        text = f"multi-frame file {path.name}: {len(frames)} frames"
        if placed:
            series.info.append(f"{text}, placed by their per-frame positions")
        else:
            series.notes.append(f"{text} without per-frame positions: frame order")


def _names(names: list[str], limit: int = 4) -> str:
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def decode_frames(path: Path) -> np.ndarray:
    """Every frame of one file as (frames, rows, columns) float32 luminance, rescale applied.

    Compressed transfer syntaxes decode through pydicom's plugins: RLE needs nothing more,
    JPEG variants may need the `jpeg` extra, and its absence is a clear error.
    """
    with library_messages(path):
        ds = pydicom.dcmread(path)
    return frames_of(path, ds)


def frames_of(path: Path, ds: pydicom.Dataset) -> np.ndarray:
    """The pixels of a dataset already read with them (see `decode_frames`)."""
    with library_messages(path):
        try:
            pixels = ds.pixel_array
        except (RuntimeError, NotImplementedError, ValueError) as err:
            syntax = ds.file_meta.get("TransferSyntaxUID", None)
            if syntax is not None and not _decoder_available(syntax):
                hint = JPEG_HINT if "JPEG" in syntax.name.upper() else "no pydicom plugin for it"
                raise DecoderMissing(
                    f"{file_label(path)}: cannot decode {syntax.name}: {hint}"
                ) from None
            raise ZooError(
                f"{file_label(path)}: cannot decode pixels ({_first_line(err)})"
            ) from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if photometric == "PALETTE COLOR":
        pixels, samples = apply_color_lut(pixels, ds), 3
    if samples > 1:
        log.warning("%s: colour (%s) converted to luminance", file_label(path), photometric)
        pixels = pixels.astype(np.float32) @ LUMA  # pydicom already turned YBR into RGB
    if frames <= 1 or pixels.ndim == 2:
        pixels = pixels.reshape(1, *pixels.shape[-2:])
    slope = float(ds.get("RescaleSlope", 1) or 1)
    intercept = float(ds.get("RescaleIntercept", 0) or 0)
    values = pixels.astype(np.float32) * slope + intercept
    if photometric == "MONOCHROME1":  # low values are bright: invert to the usual look
        values = -values
    return values


def _decoder_available(syntax: pydicom.uid.UID) -> bool:
    try:
        return bool(get_decoder(syntax).is_available)
    except (NotImplementedError, ValueError):
        return False


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def decode_slice(header: SliceHeader | Path) -> np.ndarray:
    """One slice's pixels (rows, columns) float32; a path means its first frame."""
    if isinstance(header, Path):
        return decode_frames(header)[0]
    return decode_frames(header.path)[header.frame or 0]


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
