"""Writing a synthetic study: DICOM files as scanners store them (per slice, multi-frame,
colour, without geometry, mirrored or transposed, with the tags saying so) and the CSVs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from zoo.constants import (
    CLASS_WEIGHTS,
    CONDITION_TITLES,
    CONDITIONS,
    LEVEL_TITLES,
    LEVELS,
    SEVERITIES,
    SUBMISSION_COLUMNS,
    TARGETS,
    row_id,
)
from zoo.synth.draw import foramen_centre, recess_centre, render_localiser, render_series
from zoo.synth.plan import (
    SERIES_OF_CONDITION,
    Anatomy,
    StudyPlan,
    SynthSeries,
    main_series,
    mm,
)

ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
LOCALISER_PLANES = {  # ImageOrientationPatient of each localiser plane
    "axial": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0),
    "sagittal": (0.0, 1.0, 0.0, 0.0, 0.0, -1.0),
    "coronal": (1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
}


def _uid(seed: int, *parts: object) -> str:
    return generate_uid(entropy_srcs=["rsna-lsdc-synth", str(seed), *map(str, parts)])


def _ds(value: float) -> str:
    return str(mm(value))


def _direction(values: np.ndarray) -> list[str]:
    """A direction cosine triple as DS strings (at most 16 characters each)."""
    return [str(round(float(v), 6) + 0.0) for v in values]


def _series_dataset(plan: StudyPlan, series: SynthSeries, seed: int) -> Dataset:
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
    ds.PixelSpacing = [_ds(series.pixel_spacing), _ds(series.pixel_spacing)]
    if series.spacing_tags:
        ds.SliceThickness = _ds(round(series.spacing * (0.8 if series.axial else 0.9), 2))
        ds.SpacingBetweenSlices = _ds(series.spacing)
    ds.Rows = ds.Columns = series.size
    _set_pixels(ds, np.zeros((series.size, series.size), np.uint16))
    return ds


def _set_pixels(ds: Dataset, pixels: np.ndarray, colour: bool = False) -> None:
    """Grey uint16 pixels; `colour` writes them as 8-bit RGB (grey in every channel)."""
    if colour:
        grey = np.rint(pixels.astype(np.float64) * 255.0 / max(1, int(pixels.max())))
        rgb = np.repeat(grey.astype(np.uint8)[..., None], 3, axis=-1)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelData = rgb.tobytes()
    else:
        if "PlanarConfiguration" in ds:
            del ds.PlanarConfiguration
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelData = pixels.astype("<u2").tobytes()  # little endian on any host
    ds.PixelRepresentation = 0


def _set_instance(ds: Dataset, seed: int, series_id: int, instance: int) -> None:
    sop_uid = _uid(seed, series_id, instance)
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.SOPInstanceUID = sop_uid
    ds.InstanceNumber = instance


def _set_geometry(ds: Dataset, series: SynthSeries, k: int) -> None:
    corner, rows, cols = series.stored_geometry(k)
    ds.ImagePositionPatient = [_ds(v) for v in corner]
    ds.ImageOrientationPatient = _direction(rows) + _direction(cols)
    ds.SliceLocation = _ds(series.positions[k])


def write_study(out: Path, plan: StudyPlan, seed: int) -> int:
    """Render and write every series of a study; returns the number of DICOM files."""
    files = 0
    for number, series in enumerate(plan.series):
        folder = out / f"{plan.split}_images" / str(plan.study_id) / str(series.series_id)
        folder.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, 4, plan.index, number])
        ds = _series_dataset(plan, series, seed)
        if series.localiser:
            files += _write_localiser(folder, ds, plan.anatomy, series, rng, seed)
            continue
        images = [
            series.stored.inverse().apply(i) for i in render_series(plan.anatomy, series, rng)
        ]
        if series.multiframe:
            files += _write_multiframe(folder, ds, series, images, seed)
            continue
        for k, image in enumerate(images):
            _set_instance(ds, seed, series.series_id, series.instance_number(k))
            _set_geometry(ds, series, k)
            _set_pixels(ds, image, colour=k == series.colour_slice)
            ds.save_as(folder / f"{ds.InstanceNumber}.dcm", enforce_file_format=True)
            files += 1
        if series.no_geometry_file:
            files += _write_secondary_capture(folder, ds, series, seed)
    return files


def _write_secondary_capture(folder: Path, ds: Dataset, series: SynthSeries, seed: int) -> int:
    """An extra file without geometry tags (a screenshot-like derived image) in the series."""
    instance = len(series.positions) + 1
    _set_instance(ds, seed, series.series_id, instance)
    for tag in ("ImagePositionPatient", "ImageOrientationPatient", "SliceLocation"):
        if tag in ds:
            delattr(ds, tag)
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ramp = np.linspace(0, 3000, series.size * series.size).reshape(series.size, series.size)
    _set_pixels(ds, ramp.astype(np.uint16))
    ds.save_as(folder / f"{instance}.dcm", enforce_file_format=True)
    return 1


def _write_multiframe(
    folder: Path, ds: Dataset, series: SynthSeries, images: list[np.ndarray], seed: int
) -> int:
    """Every slice as a frame of one Enhanced MR file, frames in instance order, each placed by
    its per-frame PlanePositionSequence (the shared orientation in the shared groups)."""
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = ENHANCED_MR_IMAGE_STORAGE
    _set_instance(ds, seed, series.series_id, 1)
    order = sorted(range(len(images)), key=series.instance_number)
    ds.NumberOfFrames = len(order)
    measures, orientation = Dataset(), Dataset()
    measures.PixelSpacing = ds.PixelSpacing
    shared = Dataset()
    shared.PixelMeasuresSequence = Sequence([measures])
    _, rows, cols = series.stored_geometry(order[0])
    orientation.ImageOrientationPatient = _direction(rows) + _direction(cols)
    shared.PlaneOrientationSequence = Sequence([orientation])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for k in order:
        position, frame = Dataset(), Dataset()
        position.ImagePositionPatient = [_ds(v) for v in series.stored_geometry(k)[0]]
        frame.PlanePositionSequence = Sequence([position])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    _set_pixels(ds, np.stack([images[k] for k in order]))
    ds.save_as(folder / "1.dcm", enforce_file_format=True)
    return 1


def _write_localiser(
    folder: Path,
    ds: Dataset,
    anatomy: Anatomy,
    series: SynthSeries,
    rng: np.random.Generator,
    seed: int,
) -> int:
    """Three one-slice planes (axial, sagittal, coronal) through the lumbar spine."""
    a, px, size = anatomy.scale, series.pixel_spacing, series.size
    corners = {
        "axial": (*series.origins[0], float(anatomy.disc_z[3])),
        "sagittal": (anatomy.x_mid, anatomy.y_canal - 0.55 * a, anatomy.z_top),
        "coronal": (anatomy.x_mid - px * size / 2, anatomy.y_canal, anatomy.z_top),
    }
    for instance, (plane, image) in enumerate(render_localiser(anatomy, series, rng), start=1):
        _set_instance(ds, seed, series.series_id, instance)
        ds.ImagePositionPatient = [_ds(v) for v in corners[plane]]
        ds.ImageOrientationPatient = [str(v) for v in LOCALISER_PLANES[plane]]
        _set_pixels(ds, image)
        ds.save_as(folder / f"{instance}.dcm", enforce_file_format=True)
    return len(LOCALISER_PLANES)


def write_csvs(out: Path, plans: list[StudyPlan]) -> None:
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
            for code, missing in zip(plan.labels.ravel(), plan.unlabelled.ravel(), strict=True)
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


def _label_point(plan: StudyPlan, ci: int, li: int) -> tuple[int, int, float, float] | None:
    """(series_id, instance_number, x, y) of the pixel where a target's lesion is drawn."""
    series = main_series(plan, SERIES_OF_CONDITION[CONDITIONS[ci]])
    if series is None:
        return None
    world, best_position = _lesion_location(plan.anatomy, series, ci, li)
    k = int(np.argmin(np.abs(np.asarray(series.positions) - best_position)))
    return series.series_id, series.instance_number(k), *series.to_pixel(k, world)


def _lesion_location(
    anatomy: Anatomy, series: SynthSeries, ci: int, li: int
) -> tuple[tuple[float, float], float]:
    """In-plane world point of a lesion and the slice position (x or z) that shows it best."""
    disc_z = float(anatomy.disc_z[li + 1])
    if ci == 0:  # canal centre on the midline slice
        return (anatomy.y_canal + anatomy.canal_width / 2, disc_z), anatomy.x_mid
    if ci in (1, 2):  # foramen on a lateral slice of its side (left = larger x)
        half_span = (series.positions[-1] - series.positions[0]) / 2
        side = 1.0 if ci == 1 else -1.0
        return foramen_centre(anatomy, li), anatomy.x_mid + side * 0.8 * half_span
    return recess_centre(anatomy, ci - 3), disc_z  # recess on the slice nearest the disc


def _series_frame(plans: list[StudyPlan]) -> pd.DataFrame:
    rows = [(p.study_id, s.series_id, s.series_type) for p in plans for s in p.series]
    frame = pd.DataFrame(rows, columns=["study_id", "series_id", "series_description"])
    return frame.sort_values(["study_id", "series_id"], ignore_index=True)


def _test_frames(plans: list[StudyPlan]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """sample_submission (uniform) and the one-hot solution with the metric's sample weights."""
    ids, onehots, weights = [], [], []
    for plan in plans:
        for target, code in zip(TARGETS, plan.labels.ravel(), strict=True):
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
