"""The study reader on hand-made series: canonical twins, statuses and what each case yields."""

import cv2
import numpy as np
import pytest
from dicom_factory import AXIAL, SAGITTAL, write_dicom, write_series

from zoo.dicom import read_headers
from zoo.geometry import canonical_inplane
from zoo.reader import label_point, read_series_images

SIZE = 16


def _content(k: int) -> np.ndarray:
    """An asymmetric slice: a bright block in the top-left quadrant, tagged by k."""
    image = np.full((SIZE, SIZE), 200 + 10 * k, np.uint16)
    image[2:6, 1:4] = 3000
    image[0, 0] = 0
    return image


def _write(folder, view: str, stored: str) -> None:
    """Four slices of the same anatomy, stored canonically or as a scanner might store them,
    with hand-written tags that say so (pixel spacing 1 mm)."""
    for k in range(4):
        canonical, far = _content(k), SIZE - 1
        if view == "axial":  # canonical: +column = patient left (+x), +row = posterior (+y)
            corner, orientation, pixels = (0.0, 0.0, -5.0 * k), AXIAL, canonical
            if stored == "mirrored":  # rows run towards the patient's right
                corner, orientation = (far, 0.0, -5.0 * k), (-1.0, 0, 0, 0, 1.0, 0)
                pixels = canonical[:, ::-1]
            if stored == "transposed":
                orientation, pixels = (0.0, 1.0, 0, 1.0, 0, 0), canonical.T
        else:  # canonical: +column = posterior (+y), +row = feet (-z)
            corner, orientation, pixels = (5.0 * k, 0.0, 0.0), SAGITTAL, canonical
            if stored == "upside_down":  # columns run towards the head
                corner, orientation = (5.0 * k, 0.0, -far), (0, 1.0, 0, 0, 0, 1.0)
                pixels = canonical[::-1]
        write_dicom(
            folder / f"{k + 1}.dcm", np.ascontiguousarray(pixels), k + 1, corner, orientation
        )


def _read(root, view: str, stored: str):
    series_type = "Axial T2" if view == "axial" else "Sagittal T1"
    _write(root / "study" / stored, view, stored)
    return read_series_images(root / "study", series_type, [stored], "itk8191", SIZE)


@pytest.mark.parametrize(
    ("view", "stored", "how"),
    [
        ("axial", "mirrored", "mirrored"),
        ("axial", "transposed", "transposed"),
        ("sagittal", "upside_down", "upside down"),
    ],
)
def test_a_series_stored_otherwise_gives_its_canonical_twins_pixels(tmp_path, view, stored, how):
    twin = _read(tmp_path / "a", view, "canonical")
    other = _read(tmp_path / "b", view, stored)
    assert twin.status == other.status == "ok"
    assert all(np.array_equal(a, b) for a, b in zip(twin.images, other.images, strict=True))
    assert {p["transform"] for p in other.picked} == {how}
    assert how in other.summary()


def test_label_points_follow_the_image_into_the_cache(tmp_path):
    """A label on a mirrored file's bright pixel lands on that pixel of the cache image."""
    canonical = np.full((20, 30), 100, np.uint16)
    canonical[0, 0] = 0
    canonical[5, 21] = 4000  # (x 21, y 5) in the canonical image
    stored = np.ascontiguousarray(canonical[:, ::-1])  # rows run to the patient's right
    path = write_dicom(
        tmp_path / "s" / "1" / "1.dcm", stored, 1, (29.0, 0, 0), (-1.0, 0, 0, 0, 1, 0)
    )
    header = read_headers(path)[0]
    x, y = label_point(header, "axial", 8.0, 5.0, 30)  # the file holds it at x = 29 - 21
    image = canonical_inplane(header.orientation, "axial").apply(stored)
    big = cv2.resize(image.astype(np.float32), (30, 30), interpolation=cv2.INTER_NEAREST)
    assert (round(x), round(y)) == np.unravel_index(big.argmax(), big.shape)[::-1]
    assert canonical_inplane((-1.0, 0, 0, 0, 1.0, 0), "axial").map_point(8, 5, (20, 30)) == (21, 5)


def test_fewer_than_three_usable_slices_is_missing(tmp_path, caplog):
    write_series(tmp_path / "s" / "1", [0.0, 4.0], SAGITTAL)
    read = read_series_images(tmp_path / "s", "Sagittal T1", [1], "itk8191", SIZE)
    assert read.status == "unusable" and read.images == [] and not read.usable
    assert "fewer than 3" in read.problem
    assert "study s series 1 (Sagittal T1): unusable" in caplog.text


def test_three_orthogonal_localiser_planes_are_not_an_axial_series(tmp_path, caplog):
    planes = [AXIAL, SAGITTAL, (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)]
    for k, orientation in enumerate(planes):
        write_dicom(
            tmp_path / "s" / "9" / f"{k + 1}.dcm", _content(k), k + 1, (0, 0, 0), orientation
        )
    read = read_series_images(tmp_path / "s", "Axial T2", [9], "itk8191", SIZE)
    assert read.status == "unusable" and len(read.dropped) == 2
    assert "not in the axial plane" in caplog.text


def test_a_study_without_the_series_is_missing_and_the_best_of_two_is_chosen(tmp_path):
    assert read_series_images(tmp_path, "Axial T2", [], "itk8191", SIZE).status == "missing"
    write_series(tmp_path / "1", [0.0, 5.0, 10.0], AXIAL)
    write_series(tmp_path / "2", [0.0, 5.0, 10.0, 15.0, 20.0], AXIAL)
    read = read_series_images(tmp_path, "Axial T2", [1, 2, 3], "itk8191", SIZE)
    assert read.series_id == 2 and read.n_slices == 5 and len(read.images) == 20
    assert "folder missing" not in read.summary()


def test_an_undecodable_series_fails_alone_with_its_reason(tmp_path):
    import pydicom

    for path in write_series(tmp_path / "1", [0.0, 5.0, 10.0], AXIAL):
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGLosslessSV1
        ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8\xff\xc3" + b"\x00" * 60])
        ds.save_as(path, enforce_file_format=True)
    read = read_series_images(tmp_path, "Axial T2", [1], "itk8191", SIZE)
    assert read.status == "failed" and read.problem and read.images == []
