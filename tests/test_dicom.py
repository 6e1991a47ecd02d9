"""DICOM series loading on real files written with pydicom."""

import importlib.util

import numpy as np
import pydicom
import pytest
from dicom_factory import AXIAL, SAGITTAL, pixel_tag, write_dicom, write_series
from pydicom.uid import JPEGLosslessSV1, RLELossless

from zoo.dicom import decode_slice, read_series, to_uint8
from zoo.errors import ZooError


def tags(series):
    return [pixel_tag(s.path) for s in series.slices]


def test_sagittal_runs_right_to_left_whatever_the_instance_numbers(tmp_path):
    xs = [-20.0, -10.0, 0.0, 10.0, 20.0]  # slice k at x = xs[k]; larger x = patient left
    write_series(tmp_path / "fwd", xs, SAGITTAL)
    write_series(tmp_path / "bwd", xs, SAGITTAL, instances=[5, 4, 3, 2, 1])
    assert tags(read_series(tmp_path / "fwd", "sagittal")) == [0, 1, 2, 3, 4]
    assert tags(read_series(tmp_path / "bwd", "sagittal")) == [0, 1, 2, 3, 4]


def test_sagittal_direction_holds_for_a_flipped_orientation(tmp_path):
    # Same slices, column vector reversed: the normal flips sign, the anatomy must not.
    flipped = (0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    write_series(tmp_path / "s", [30.0, 10.0, -10.0], flipped)
    for k, x in enumerate([30.0, 10.0, -10.0]):
        ds = pydicom.dcmread(tmp_path / "s" / f"{k + 1}.dcm")
        assert ds.ImagePositionPatient[0] == x
    assert tags(read_series(tmp_path / "s", "sagittal")) == [2, 1, 0]


def test_axial_runs_head_to_feet(tmp_path):
    write_series(tmp_path / "ax", [-50.0, 0.0, 50.0, 100.0], AXIAL)  # z up = head
    assert tags(read_series(tmp_path / "ax", "axial")) == [3, 2, 1, 0]


def test_missing_geometry_falls_back_to_instance_number(tmp_path):
    for inst in [3, 1, 2]:
        pixels = np.full((8, 8), 100 + inst, np.uint16)
        pixels[0, 0] = 0
        write_dicom(tmp_path / f"{inst}.dcm", pixels, inst, position=None, orientation=None)
    series = read_series(tmp_path, "sagittal")
    assert series.ordered_by == "instance_number"
    assert [s.instance_number for s in series.slices] == [1, 2, 3]


def test_axial_series_with_two_stacks_keeps_the_largest(tmp_path):
    write_series(tmp_path, [0.0, 5.0, 10.0, 15.0], AXIAL)
    tilted = (1.0, 0.0, 0.0, 0.0, 0.8, 0.6)
    pixels = np.arange(64, dtype=np.uint16).reshape(8, 8)
    for inst in (20, 21):
        write_dicom(tmp_path / f"{inst}.dcm", pixels, inst, (0.0, 0.0, inst), tilted)
    series = read_series(tmp_path, "axial")
    assert sorted(s.instance_number for s in series.slices) == [1, 2, 3, 4]


def test_corrupt_and_empty_files_are_skipped_with_a_reason(tmp_path, caplog):
    write_series(tmp_path, [0.0, 1.0, 2.0])
    (tmp_path / "4.dcm").write_bytes(b"")
    (tmp_path / "5.dcm").write_bytes(b"not a dicom file at all" * 10)
    series = read_series(tmp_path, "sagittal")
    assert len(series) == 3
    assert len(series.skipped) == 2 and any("4.dcm" in s for s in series.skipped)
    assert "skipping unreadable DICOM" in caplog.text


def test_missing_series_folder_is_a_clear_error(tmp_path):
    with pytest.raises(ZooError, match="series folder not found"):
        read_series(tmp_path / "nope", "sagittal")


def test_headers_are_read_without_pixels(tmp_path):
    write_series(tmp_path, [0.0, 1.0])
    (tmp_path / "1.dcm").write_bytes((tmp_path / "1.dcm").read_bytes()[:-100])  # truncate pixels
    assert len(read_series(tmp_path, "sagittal")) == 2  # header pass does not touch pixel data


def test_signed_pixels_with_rescale(tmp_path):
    pixels = np.array([[-1000, 0], [500, 1000]], np.int16)
    path = write_dicom(tmp_path / "1.dcm", pixels, signed=True, rescale=(2.0, -10.0))
    values = decode_slice(path)
    assert values.dtype == np.float32
    assert values.tolist() == [[-2010.0, -10.0], [990.0, 1990.0]]


def test_rle_compressed_pixels_decode_with_plain_pydicom(tmp_path):
    pixels = (np.arange(256, dtype=np.uint16).reshape(16, 16) * 7) % 2000
    path = write_dicom(tmp_path / "1.dcm", pixels, syntax=RLELossless)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == RLELossless
    assert np.array_equal(decode_slice(path), pixels.astype(np.float32))


@pytest.mark.skipif(
    importlib.util.find_spec("pylibjpeg") is not None, reason="the jpeg extra is installed"
)
def test_jpeg_lossless_without_the_extra_says_what_to_install(tmp_path):
    path = write_dicom(tmp_path / "1.dcm", np.ones((8, 8), np.uint16))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = JPEGLosslessSV1
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8\xff\xc3" + b"\x00" * 60])
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(ZooError, match=r"pip install 'zoo\[jpeg\]'"):
        decode_slice(path)


def test_to_uint8_rounds_and_clips_cubic_overshoot():
    step = np.zeros((16, 16), np.float32)
    step[:, 8:] = 1000.0  # a hard edge makes cubic interpolation overshoot both ways
    image = to_uint8(step, 64)
    assert image.dtype == np.uint8 and image.shape == (64, 64)
    assert image[:, :28].max() == 0  # no wrapped-around bright speckles beside the edge
    assert image[:, 36:].min() == 255


def test_to_uint8_handles_slices_of_any_size_and_flat_images():
    assert to_uint8(np.zeros((5, 7)), 32).max() == 0
    assert to_uint8(np.random.default_rng(0).random((300, 200)), 32).shape == (32, 32)
