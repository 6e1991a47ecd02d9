"""The synthetic dataset: exact competition layout, real DICOM files, quirks and visible lesions."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from zoo.constants import (
    CLASS_WEIGHTS,
    CONDITION_TITLES,
    CONDITIONS,
    CONDITIONS_OF_SERIES,
    LEVEL_TITLES,
    SERIES_TYPES,
    SEVERITIES,
    SUBMISSION_COLUMNS,
    TARGETS,
)
from zoo.dicom import decode_slice
from zoo.geometry import canonical_inplane
from zoo.synth import SynthSummary, make_synthetic_dataset

STUDIES, TEST_STUDIES, SIZE = 10, 3, 64
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4.1"
EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1"
SERIES_OF_TITLE = {
    CONDITION_TITLES[c]: series
    for series, conditions in CONDITIONS_OF_SERIES.items()
    for c in conditions
}


def _make(out: Path, seed: int = 0) -> SynthSummary:
    return make_synthetic_dataset(out, STUDIES, TEST_STUDIES, seed=seed, size=SIZE, progress=False)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    summary = _make(out)
    assert summary.out == out
    assert (summary.train_studies, summary.test_studies) == (STUDIES, TEST_STUDIES)
    assert summary.files == len(list(out.rglob("*.dcm")))
    return out


@pytest.fixture(scope="module")
def series(dataset: Path) -> pd.DataFrame:
    """One row per series of both splits, with the DICOM headers of its slices."""
    frames = []
    for split in ("train", "test"):
        frame = pd.read_csv(dataset / f"{split}_series_descriptions.csv")
        frame["split"] = split
        frames.append(frame)
    table = pd.concat(frames, ignore_index=True)
    table["headers"] = [
        [pydicom.dcmread(f, stop_before_pixels=True) for f in _files(dataset, row)]
        for row in table.itertuples()
    ]
    return table


def _files(root: Path, row: object) -> list[Path]:
    folder = root / f"{row.split}_images" / str(row.study_id) / str(row.series_id)
    return sorted(folder.glob("*.dcm"))


def _normal(header: pydicom.Dataset) -> np.ndarray:
    orientation = np.asarray(header.ImageOrientationPatient, dtype=float)
    return np.cross(orientation[:3], orientation[3:])


def _view(row: object) -> str:
    return "axial" if row.series_description == "Axial T2" else "sagittal"


def _located(row: object) -> list[pydicom.Dataset]:
    """Single-frame slices with geometry tags of a series that is a stack (not a localiser)."""
    headers = [h for h in row.headers if "ImageOrientationPatient" in h]
    normals = np.stack([_normal(h) for h in headers]) if headers else np.zeros((0, 3))
    axis = np.array([0.0, 0.0, 1.0]) if _view(row) == "axial" else np.array([1.0, 0.0, 0.0])
    return [h for h, n in zip(headers, normals, strict=True) if abs(n @ axis) > 0.7]


def _world(header: pydicom.Dataset, x: float, y: float) -> np.ndarray:
    """Patient coordinates of pixel (column x, row y) of a single-frame file."""
    corner = np.asarray(header.ImagePositionPatient, float)
    orientation = np.asarray(header.ImageOrientationPatient, float)
    rows_mm, cols_mm = (float(v) for v in header.PixelSpacing)
    return corner + x * cols_mm * orientation[:3] + y * rows_mm * orientation[3:]


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_layout_and_csv_columns(dataset: Path) -> None:
    names = {p.name for p in dataset.iterdir()}
    assert names == {
        "train.csv",
        "train_label_coordinates.csv",
        "train_series_descriptions.csv",
        "test_series_descriptions.csv",
        "sample_submission.csv",
        "test_solution.csv",
        "train_images",
        "test_images",
    }
    train = pd.read_csv(dataset / "train.csv")
    assert list(train.columns) == ["study_id", *TARGETS]
    assert len(train) == STUDIES and train.study_id.is_unique
    cells = train[list(TARGETS)].to_numpy().ravel()
    assert set(cells[pd.notna(cells)]) <= set(SEVERITIES)
    assert 0 < train[list(TARGETS)].isna().sum().sum() < 0.05 * STUDIES * len(TARGETS)
    coordinates = pd.read_csv(dataset / "train_label_coordinates.csv")
    assert list(coordinates.columns) == [
        "study_id",
        "series_id",
        "instance_number",
        "condition",
        "level",
        "x",
        "y",
    ]
    assert set(coordinates.condition) <= set(CONDITION_TITLES.values())
    assert set(coordinates.level) <= set(LEVEL_TITLES.values())
    for split in ("train", "test"):
        descriptions = pd.read_csv(dataset / f"{split}_series_descriptions.csv")
        assert list(descriptions.columns) == ["study_id", "series_id", "series_description"]
        assert set(descriptions.series_description) <= set(SERIES_TYPES)
        on_disk = {
            (int(s.parent.name), int(s.name)) for s in (dataset / f"{split}_images").glob("*/*")
        }
        assert on_disk == set(zip(descriptions.study_id, descriptions.series_id, strict=True))


def test_ids_are_large_unique_int64(dataset: Path) -> None:
    train = pd.read_csv(dataset / "train.csv")
    descriptions = pd.concat(
        [pd.read_csv(dataset / f"{s}_series_descriptions.csv") for s in ("train", "test")]
    )
    assert train.study_id.dtype == np.int64 and descriptions.series_id.dtype == np.int64
    assert (train.study_id > 2**31).all() and (train.study_id <= 4_000_000_000).all()
    assert (descriptions.series_id > 2**31).all() and (
        descriptions.series_id <= 9_000_000_000
    ).all()
    assert descriptions.series_id.is_unique
    assert descriptions.study_id.nunique() == STUDIES + TEST_STUDIES
    assert set(train.study_id) <= set(descriptions.study_id)


def test_every_dicom_reads_with_geometry(dataset: Path, series: pd.DataFrame) -> None:
    """Every file is a readable MR image; its tags place it, and say how it is stored."""
    kinds: Counter = Counter()
    for row in series.itertuples():
        paths = _files(dataset, row)
        for path in paths:
            ds = pydicom.dcmread(path)
            assert ds.file_meta.TransferSyntaxUID == EXPLICIT_VR_LITTLE_ENDIAN
            assert ds.SOPClassUID in (MR_IMAGE_STORAGE, ENHANCED_MR_IMAGE_STORAGE)
            assert ds.Modality == "MR" and ds.SeriesDescription == row.series_description
            assert ds.PatientID == str(row.study_id) and int(ds.InstanceNumber) == int(path.stem)
            pixels = ds.pixel_array
            if int(ds.get("NumberOfFrames", 1)) > 1:
                kinds["multi-frame"] += 1
                assert (
                    pixels.shape[0] == ds.NumberOfFrames == len(ds.PerFrameFunctionalGroupsSequence)
                )
                continue
            if "ImageOrientationPatient" not in ds:
                kinds["no geometry"] += 1
                assert "SECONDARY" in ds.ImageType
                continue
            assert len(ds.ImagePositionPatient) == 3 and len(ds.PixelSpacing) == 2
            kinds[canonical_inplane(tuple(ds.ImageOrientationPatient), _view(row)).describe()] += 1
            if ds.PhotometricInterpretation == "RGB":
                kinds["colour"] += 1
                assert pixels.dtype == np.uint8 and pixels.shape == (ds.Rows, ds.Columns, 3)
                continue
            assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.SamplesPerPixel == 1
            assert pixels.dtype == np.uint16 and pixels.shape == (ds.Rows, ds.Columns)
            assert 500 < pixels.max() < 6000 and pixels.std() > 0
        assert len({pydicom.dcmread(p).SeriesInstanceUID for p in paths[:2]}) == 1
        count = sum(int(h.get("NumberOfFrames", 1)) for h in row.headers)
        sagittal_range = 15 <= count <= 20
        assert sagittal_range if _view(row) == "sagittal" else 3 <= count <= 36
    for kind in ("canonical", "mirrored", "upside down", "colour", "no geometry", "multi-frame"):
        assert kinds[kind] >= 1, (kind, kinds)


def test_slice_geometry(series: pd.DataFrame) -> None:
    """Each plane of a stack steps evenly along its normal, with one in-plane origin."""
    blocked = 0
    for row in series.itertuples():
        planes: dict[tuple, list[pydicom.Dataset]] = {}
        for h in _located(row):
            planes.setdefault(tuple(np.round(_normal(h), 4)), []).append(h)
        blocked += len(planes) > 1
        for headers in (h for h in planes.values() if len(h) > 1):
            normal = _normal(headers[0])
            corners = np.array([np.asarray(h.ImagePositionPatient, float) for h in headers])
            steps = np.diff(np.sort(corners @ normal))
            assert np.allclose(steps, steps.mean(), atol=1e-3) and steps.min() > 2.9
            in_plane = corners - np.outer(corners @ normal, normal)
            assert np.allclose(in_plane, in_plane[0], atol=1e-3)
    assert blocked >= 1  # Axial T2 as per-disc tilted blocks


def test_coordinates_point_into_the_right_series(dataset: Path, series: pd.DataFrame) -> None:
    coordinates = pd.read_csv(dataset / "train_label_coordinates.csv")
    train = pd.read_csv(dataset / "train.csv").set_index("study_id")
    kinds = series.set_index("series_id").series_description
    labelled = 0
    for row in coordinates.itertuples():
        assert kinds[row.series_id] == SERIES_OF_TITLE[row.condition]
        path = dataset / "train_images" / str(row.study_id) / str(row.series_id)
        ds = pydicom.dcmread(path / f"{row.instance_number}.dcm", stop_before_pixels=True)
        assert 0 <= row.x < ds.Columns and 0 <= row.y < ds.Rows
        target = f"{row.condition}_{row.level}".lower().replace(" ", "_").replace("/", "_")
        assert isinstance(train.loc[row.study_id, target], str)  # only labelled targets
        labelled += 1
    assert labelled > 0.8 * STUDIES * len(TARGETS)
    assert not coordinates.duplicated(["study_id", "condition", "level"]).any()


def test_levels_agree_between_sagittal_and_axial(dataset: Path, series: pd.DataFrame) -> None:
    """The world z of a spinal canal point matches the z of the same level's axial slice."""
    coordinates = pd.read_csv(dataset / "train_label_coordinates.csv")
    headers = {
        (int(row.series_id), int(h.InstanceNumber)): h
        for row in series.itertuples()
        for h in row.headers
    }

    def world_z(point: object) -> float:
        header = headers[(point.series_id, point.instance_number)]
        if point.condition == CONDITION_TITLES[CONDITIONS[0]]:
            return float(_world(header, point.x, point.y)[2])
        centre = ((header.Columns - 1) / 2, (header.Rows - 1) / 2)
        return float(_world(header, *centre)[2])  # the axial slice's own height

    checked = 0
    for _, study in coordinates.groupby("study_id"):
        spinal = study[study.condition == CONDITION_TITLES[CONDITIONS[0]]].set_index("level")
        axial = study[study.condition == CONDITION_TITLES[CONDITIONS[3]]].set_index("level")
        for level in spinal.index.intersection(axial.index):
            gap = abs(world_z(spinal.loc[level]) - world_z(axial.loc[level]))
            assert gap < 4.0, (level, gap)
            checked += 1
    assert checked > STUDIES


def test_submission_and_solution(dataset: Path) -> None:
    submission = pd.read_csv(dataset / "sample_submission.csv")
    solution = pd.read_csv(dataset / "test_solution.csv")
    test_ids = pd.read_csv(dataset / "test_series_descriptions.csv").study_id.unique()
    assert list(submission.columns) == ["row_id", *SUBMISSION_COLUMNS]
    assert list(solution.columns) == ["row_id", *SUBMISSION_COLUMNS, "sample_weight"]
    expected = sorted(f"{s}_{t}" for s in test_ids for t in TARGETS)
    assert list(submission.row_id) == expected and list(solution.row_id) == expected
    assert np.allclose(submission[list(SUBMISSION_COLUMNS)], 1 / 3)
    onehot = solution[list(SUBMISSION_COLUMNS)].to_numpy()
    assert set(np.unique(onehot)) <= {0, 1} and (onehot.sum(axis=1) == 1).all()
    weights = np.asarray(CLASS_WEIGHTS)[onehot.argmax(axis=1)]
    assert np.allclose(solution.sample_weight, weights)


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    def run(name: str, seed: int) -> dict[str, str]:
        make_synthetic_dataset(tmp_path / name, 2, 1, seed=seed, size=32, progress=False)
        return _digests(tmp_path / name)

    first = run("first", 0)
    assert run("again", 0) == first
    other = run("other", 1)
    assert not set(other.values()) & set(first.values())


def test_quirks_are_present(series: pd.DataFrame) -> None:
    train = series[series.split == "train"]
    types_per_study = train.groupby("study_id").series_description.agg(list)
    assert any(len(set(types)) < 3 for types in types_per_study)
    assert all(len(set(types)) >= 2 for types in types_per_study)
    assert any(types.count("Axial T2") == 2 for types in types_per_study)
    backwards = stacks = 0
    for row in train.itertuples():
        located = _located(row)
        if len({tuple(np.round(_normal(h), 4)) for h in located}) != 1 or len(located) < 3:
            continue  # per-disc blocks and localisers: no single direction
        stacks += 1
        ordered = sorted(located, key=lambda h: int(h.InstanceNumber))
        axis = 2 if _view(row) == "axial" else 0
        along = [float(h.ImagePositionPatient[axis]) for h in ordered]
        # Usual numbering: sagittal right to left (+x), axial head to feet (-z).
        forward = np.diff(along) > 0 if axis == 0 else np.diff(along) < 0
        backwards += bool(np.all(~forward))
        assert np.all(forward) or np.all(~forward)
    assert 1 <= backwards < stacks / 2
    assert any("SpacingBetweenSlices" not in r.headers[0] for r in train.itertuples())
    assert any("SliceThickness" in r.headers[0] for r in train.itertuples())
    assert len({int(r.headers[0].Rows) for r in train.itertuples()}) > 1
    localisers = [r for r in series.itertuples() if len(r.headers) == 3]
    assert {s for r in localisers for s in ("train", "test") if r.split == s} == {"train", "test"}
    for row in localisers:  # three mutually orthogonal planes
        normals = np.stack([_normal(h) for h in row.headers])
        assert np.allclose(np.abs(normals @ normals.T), np.eye(3), atol=1e-6)


def _window_ratio(path: Path, x: float, y: float) -> float:
    """Mean of a 3x3 window at (x, y) relative to the slice's bright end."""
    pixels = pydicom.dcmread(path).pixel_array.astype(float)
    row, col = int(round(y)), int(round(x))
    window = pixels[max(row - 1, 0) : row + 2, max(col - 1, 0) : col + 2]
    return float(window.mean() / np.percentile(pixels, 99.5))


def test_lesions_are_drawn_at_the_coordinates(dataset: Path) -> None:
    coordinates = pd.read_csv(dataset / "train_label_coordinates.csv")
    train = pd.read_csv(dataset / "train.csv").set_index("study_id")
    ratios: dict[tuple[str, bool], list[float]] = {}
    for row in coordinates.itertuples():
        target = f"{row.condition}_{row.level}".lower().replace(" ", "_").replace("/", "_")
        abnormal = train.loc[row.study_id, target] != SEVERITIES[0]
        group = row.condition.split()[-2]  # Canal / Foraminal / Subarticular
        path = dataset / "train_images" / str(row.study_id) / str(row.series_id)
        ratio = _window_ratio(path / f"{row.instance_number}.dcm", row.x, row.y)
        ratios.setdefault((group, abnormal), []).append(ratio)
    for group in ("Canal", "Foraminal", "Subarticular"):
        normal, abnormal = ratios[(group, False)], ratios[(group, True)]
        assert np.mean(abnormal) < 0.8 * np.mean(normal), (group, normal, abnormal)
        assert np.median(normal) > 0.6


def test_lesions_stay_at_the_coordinates_in_canonical_orientation(dataset: Path) -> None:
    """Through the reader's canonical transform, label points still sit on their lesions, and
    a left subarticular point lies on the image right (radiological convention)."""
    coordinates = pd.read_csv(dataset / "train_label_coordinates.csv")
    train = pd.read_csv(dataset / "train.csv").set_index("study_id")
    ratios: dict[bool, list[float]] = {False: [], True: []}
    sides = []
    for row in coordinates[coordinates.condition.str.contains("Subarticular")].itertuples():
        path = dataset / "train_images" / str(row.study_id) / str(row.series_id)
        header = pydicom.dcmread(path / f"{row.instance_number}.dcm", stop_before_pixels=True)
        transform = canonical_inplane(tuple(header.ImageOrientationPatient), "axial")
        image = transform.apply(decode_slice(path / f"{row.instance_number}.dcm"))
        x, y = transform.map_point(row.x, row.y, (header.Rows, header.Columns))
        col, line = int(round(x)), int(round(y))
        window = image[max(line - 1, 0) : line + 2, max(col - 1, 0) : col + 2]
        target = f"{row.condition}_{row.level}".lower().replace(" ", "_").replace("/", "_")
        abnormal = train.loc[row.study_id, target] != SEVERITIES[0]
        ratios[abnormal].append(float(window.mean() / np.percentile(image, 99.5)))
        sides.append((row.condition.startswith("Left"), x > image.shape[1] / 2))
    assert np.mean(ratios[True]) < 0.8 * np.mean(ratios[False])
    assert all(left == right_half for left, right_half in sides)


def test_class_frequencies_follow_the_real_data() -> None:
    from zoo.synth.plan import grade, severity_scores

    rng = np.random.default_rng(0)
    codes = np.stack(
        [grade(severity_scores(rng, float(rng.standard_normal()))) for _ in range(3000)]
    )
    spinal = np.bincount(codes[:, 0].ravel(), minlength=3) / codes[:, 0].size
    assert np.allclose(spinal, (0.878, 0.075, 0.047), atol=0.02)
    severe_by_level = (codes[:, 0] == 2).mean(axis=0)
    assert severe_by_level.argmax() == 3  # L4/L5 carries most severe canal stenosis
    # A shared degeneration latent: severities of one study correlate across targets.
    flat = codes.reshape(len(codes), -1).astype(float)
    assert np.corrcoef(flat[:, 3], flat[:, 23])[0, 1] > 0.15


def test_overwrites_its_own_output_and_refuses_foreign_folders(tmp_path: Path) -> None:
    out = tmp_path / "data"
    make_synthetic_dataset(out, 2, 1, seed=0, size=32, progress=False)
    stale = {p.name for p in (out / "train_images").iterdir()}
    make_synthetic_dataset(out, 1, 1, seed=5, size=32, progress=False)
    fresh = {p.name for p in (out / "train_images").iterdir()}
    assert len(fresh) == 1 and not stale & fresh
    assert len(pd.read_csv(out / "train.csv")) == 1
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"\xff\xd8")
    with pytest.raises(ValueError, match="photos"):
        make_synthetic_dataset(foreign, 2, 1, size=32, progress=False)
    assert (foreign / "holiday.jpg").exists()


def test_labels_are_a_readers_grades_of_the_drawn_severities() -> None:
    """Like real readers, synth's disagrees with the image by one grade, mostly on Moderate."""
    from zoo.synth.plan import plan_dataset

    plans = plan_dataset(studies=300, test_studies=20, seed=3, size=64)
    drawn = np.stack([p.codes for p in plans])
    read = np.stack([p.labels for p in plans])
    assert np.abs(drawn - read).max() == 1
    assert 0.04 < (drawn != read).mean() < 0.11
    assert (drawn != read)[drawn == 1].mean() > 2 * (drawn != read)[drawn == 0].mean()
    assert any((p.codes != p.labels).any() for p in plans if p.split == "test")


def test_the_files_carry_the_readers_labels_and_the_reader_leaves_the_images_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """train.csv and test_solution.csv hold the reader's grades, not the drawn ones, and a
    dataset drawn without reader error differs from the usual one in those two files only."""
    import zoo.synth.plan as plan_module
    from zoo.constants import MISSING_LABEL, SEVERITY_CODE
    from zoo.synth.plan import plan_dataset

    make_synthetic_dataset(tmp_path / "read", 12, 4, seed=2, size=32, progress=False)
    plans = plan_dataset(12, 4, seed=2, size=32)
    train = pd.read_csv(tmp_path / "read" / "train.csv").set_index("study_id")
    coded = train[list(TARGETS)].apply(lambda c: c.map(SEVERITY_CODE)).fillna(MISSING_LABEL)
    for p in (p for p in plans if p.split == "train"):
        written = coded.loc[p.study_id].to_numpy().reshape(p.labels.shape)
        assert (written[~p.unlabelled] == p.labels[~p.unlabelled]).all()
    assert any((p.labels != p.codes).any() for p in plans)
    solution = pd.read_csv(tmp_path / "read" / "test_solution.csv").set_index("row_id")
    for p in (p for p in plans if p.split == "test"):
        for target, label in zip(TARGETS, p.labels.ravel(), strict=True):
            row = solution.loc[f"{p.study_id}_{target}", list(SUBMISSION_COLUMNS)]
            assert int(row.to_numpy().argmax()) == label

    monkeypatch.setattr(plan_module, "READER_SD", 0.0)
    make_synthetic_dataset(tmp_path / "drawn", 12, 4, seed=2, size=32, progress=False)
    read, drawn = _digests(tmp_path / "read"), _digests(tmp_path / "drawn")
    assert read.keys() == drawn.keys()
    assert {f for f in read if read[f] != drawn[f]} == {"train.csv", "test_solution.csv"}
