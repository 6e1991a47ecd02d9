"""Writes small real DICOM files for reader tests (pydicom 3, MR Image Storage)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    instance: int | None = 1,
    position: tuple[float, float, float] | None = (0.0, 0.0, 0.0),
    orientation: tuple[float, ...] | None = SAGITTAL,
    signed: bool = False,
    rescale: tuple[float, float] | None = None,
    syntax: str = ExplicitVRLittleEndian,
    photometric: str = "MONOCHROME2",
    spacing: tuple[float, float] | None = (1.0, 1.0),
) -> Path:
    """One MR slice; None drops a tag, `syntax` RLE compresses with pydicom's own encoder.

    `pixels` of shape (rows, columns, 3) are written as 8-bit colour in `photometric` (RGB or
    YBR_FULL); of shape (frames, rows, columns) as a multi-frame file."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    if instance is not None:
        ds.InstanceNumber = instance
    if position is not None:
        ds.ImagePositionPatient = [float(v) for v in position]
    if orientation is not None:
        ds.ImageOrientationPatient = [float(v) for v in orientation]
    if spacing is not None:
        ds.PixelSpacing = [float(v) for v in spacing]
    colour = photometric.startswith(("RGB", "YBR"))
    if colour:
        ds.Rows, ds.Columns = pixels.shape[:2]
        ds.SamplesPerPixel, ds.PlanarConfiguration = 3, 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
    else:
        ds.Rows, ds.Columns = pixels.shape[-2:]
        ds.SamplesPerPixel = 1
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
    if pixels.ndim == 3 and not colour:
        ds.NumberOfFrames = pixels.shape[0]
    ds.PhotometricInterpretation = photometric
    ds.PixelRepresentation = 1 if signed else 0
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    dtype = np.uint8 if colour else (np.int16 if signed else np.uint16)
    ds.PixelData = pixels.astype(dtype).tobytes()
    if syntax != ExplicitVRLittleEndian:
        ds.compress(syntax)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(
    folder: Path,
    xs: list[float],
    orientation: tuple[float, ...] = SAGITTAL,
    instances: list[int] | None = None,
    size: int = 16,
) -> list[Path]:
    """A series whose slice k lies at coordinate xs[k] along the normal's main axis and whose
    pixels all equal 100 + k, so a test can tell which slice came back where."""
    instances = instances or list(range(1, len(xs) + 1))
    axis = int(np.argmax(np.abs(np.cross(orientation[:3], orientation[3:]))))
    paths = []
    for k, (x, inst) in enumerate(zip(xs, instances, strict=True)):
        pos = [0.0, 0.0, 0.0]
        pos[axis] = x
        pixels = np.full((size, size), 100 + k, np.uint16)
        pixels[0, 0] = 0  # min-max needs a range
        paths.append(write_dicom(folder / f"{inst}.dcm", pixels, inst, pos, orientation))
    return paths


def pixel_tag(path: Path) -> int:
    """The 100 + k marker of a file written by write_series."""
    return int(pydicom.dcmread(path).pixel_array[1, 1]) - 100


def write_multiframe(
    path: Path,
    frames: np.ndarray,
    positions: list[tuple[float, float, float]] | None,
    orientation: tuple[float, ...] = SAGITTAL,
) -> Path:
    """An Enhanced MR file: orientation in the shared functional groups, each frame's position
    in its own (None: no per-frame positions, as legacy converters write)."""
    from pydicom.sequence import Sequence

    write_dicom(path, frames, 1, position=None, orientation=None)
    ds = pydicom.dcmread(path)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    plane = Dataset()
    plane.ImageOrientationPatient = [float(v) for v in orientation]
    shared = Dataset()
    shared.PlaneOrientationSequence = Sequence([plane])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    if positions is not None:
        items = []
        for position in positions:
            where, item = Dataset(), Dataset()
            where.ImagePositionPatient = [float(v) for v in position]
            item.PlanePositionSequence = Sequence([where])
            items.append(item)
        ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    ds.save_as(path, enforce_file_format=True)
    return path
