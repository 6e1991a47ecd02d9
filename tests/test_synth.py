"""The synthetic dataset: exact competition layout, real DICOM files, quirks and visible lesions."""

from __future__ import annotations

import hashlib
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
from zoo.synth import SynthSummary, make_synthetic_dataset

STUDIES, TEST_STUDIES, SIZE = 10, 3, 64
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
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
    for row in series.itertuples():
        paths = _files(dataset, row)
        expected_orientation = (
            [1, 0, 0, 0, 1, 0] if row.series_description == "Axial T2" else [0, 1, 0, 0, 0, -1]
        )
        for path in paths:
            ds = pydicom.dcmread(path)
            assert ds.file_meta.TransferSyntaxUID == EXPLICIT_VR_LITTLE_ENDIAN
            assert ds.SOPClassUID == MR_IMAGE_STORAGE and ds.Modality == "MR"
            assert ds.SeriesDescription == row.series_description
            assert ds.PatientID == str(row.study_id)
            assert int(ds.InstanceNumber) == int(path.stem)
            assert [float(v) for v in ds.ImageOrientationPatient] == expected_orientation
            assert len(ds.ImagePositionPatient) == 3 and len(ds.PixelSpacing) == 2
            assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.SamplesPerPixel == 1
            pixels = ds.pixel_array
            assert pixels.dtype == np.uint16 and pixels.shape == (ds.Rows, ds.Columns)
            assert 500 < pixels.max() < 6000 and pixels.std() > 0
        assert len({pydicom.dcmread(p).SeriesInstanceUID for p in paths[:2]}) == 1
        count = len(paths)
        assert 15 <= count <= 19 if row.series_description != "Axial T2" else 8 <= count <= 35


def test_slice_geometry(series: pd.DataFrame) -> None:
    """Sagittal stacks step along x, axial stacks along z, evenly, with one in-plane origin."""
    for row in series.itertuples():
        positions = np.array([np.asarray(h.ImagePositionPatient, float) for h in row.headers])
        axis = 2 if row.series_description == "Axial T2" else 0
        steps = np.diff(np.sort(positions[:, axis]))
        assert np.allclose(steps, steps.mean(), atol=1e-3) and steps.min() > 3.0
        other = np.delete(positions, axis, axis=1)
        assert np.allclose(other, other[0])  # the in-plane origin is shared by all slices


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
        origin_z = float(header.ImagePositionPatient[2])
        if point.condition == CONDITION_TITLES[CONDITIONS[0]]:
            return origin_z - point.y * float(header.PixelSpacing[0])
        return origin_z

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
    backwards = 0
    for row in train.itertuples():
        ordered = sorted(row.headers, key=lambda h: int(h.InstanceNumber))
        along = [
            float(np.dot(_normal(h), np.asarray(h.ImagePositionPatient, float))) for h in ordered
        ]
        # Usual numbering: sagittal right to left (+x), axial head to feet (-z); both make the
        # position along the slice normal decrease.
        backwards += bool(np.all(np.diff(along) > 0))
        assert np.all(np.diff(along) > 0) or np.all(np.diff(along) < 0)
    assert 1 <= backwards < len(train) / 2
    assert any("SpacingBetweenSlices" not in r.headers[0] for r in train.itertuples())
    assert any("SliceThickness" in r.headers[0] for r in train.itertuples())
    assert len({int(r.headers[0].Rows) for r in train.itertuples()}) > 1


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


def test_class_frequencies_follow_the_real_data() -> None:
    from zoo.synth import _sample_severities

    rng = np.random.default_rng(0)
    codes = np.stack([_sample_severities(rng, float(rng.standard_normal())) for _ in range(3000)])
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
