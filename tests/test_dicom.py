"""DICOM series loading on real files written with pydicom."""

import importlib.util
import logging
import math

import numpy as np
import pydicom
import pytest
from dicom_factory import AXIAL, SAGITTAL, pixel_tag, write_dicom, write_multiframe, write_series
from pydicom.uid import JPEGLosslessSV1, RLELossless

from zoo.dicom import DecoderMissing, decode_slice, read_series, to_uint8
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


def _tilted_blocks(folder, tilts_deg, per_block=5, spacing=4.0, gap=40.0):
    """Axial T2 as one block per disc, each tilted about the patient x axis; written in
    acquisition order (block by block, feet first) with pixels tagged by head-to-feet rank."""
    slices = []
    for b, tilt in enumerate(tilts_deg):
        t = math.radians(tilt)
        normal = np.array([0.0, math.sin(t), math.cos(t)])
        orientation = (1.0, 0.0, 0.0, 0.0, math.cos(t), -math.sin(t))
        centre = np.array([0.0, 0.0, 80.0 - b * gap])
        for j in range(per_block):
            c = centre + (j - (per_block - 1) / 2) * spacing * normal
            corner = c - 7.5 * np.array(orientation[:3]) - 7.5 * np.array(orientation[3:])
            slices.append((float(c[2]), tuple(corner), orientation))
    rank = {z: r for r, z in enumerate(sorted((s[0] for s in slices), reverse=True))}
    for instance, (z, corner, orientation) in enumerate(reversed(slices), start=1):
        pixels = np.full((16, 16), 100 + rank[z], np.uint16)
        pixels[0, 0] = 0
        write_dicom(folder / f"{instance}.dcm", pixels, instance, corner, orientation)


def test_five_tilted_axial_blocks_keep_every_slice_head_to_feet(tmp_path, caplog):
    _tilted_blocks(tmp_path, [-10.0, -3.0, 4.0, 12.0, 20.0])
    with caplog.at_level(logging.INFO, logger="zoo"):
        series = read_series(tmp_path, "axial")
    assert tags(series) == list(range(25))
    assert series.planes == 5 and not series.dropped
    assert "5 tilted blocks kept" in caplog.text and f"series {tmp_path.name}" in caplog.text


def test_jittered_orientation_keeps_every_slice(tmp_path):
    for k in range(10):  # normals 0.05 -+ 1e-6 from z: rounding them to 0.1 split the stack
        s = 0.05 + (1e-6 if k % 2 else -1e-6)
        orientation = (1.0, 0.0, 0.0, 0.0, math.sqrt(1 - s * s), -s)
        pixels = np.full((16, 16), 100 + k, np.uint16)
        pixels[0, 0] = 0
        write_dicom(tmp_path / f"{k + 1}.dcm", pixels, k + 1, (0.0, 0.0, -4.0 * k), orientation)
    series = read_series(tmp_path, "axial")
    assert tags(series) == list(range(10)) and series.planes == 1


def test_localiser_planes_in_a_series_are_dropped_with_a_warning(tmp_path, caplog):
    write_series(tmp_path, [0.0, 5.0, 10.0, 15.0], AXIAL)
    coronal = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
    pixels = np.arange(64, dtype=np.uint16).reshape(8, 8)
    write_dicom(tmp_path / "20.dcm", pixels, 20, (0.0, 0.0, 0.0), SAGITTAL)
    write_dicom(tmp_path / "21.dcm", pixels, 21, (0.0, 0.0, 0.0), coronal)
    series = read_series(tmp_path, "axial")
    assert sorted(s.instance_number for s in series.slices) == [1, 2, 3, 4]
    assert len(series.dropped) == 2
    assert "2 slice(s) dropped, not in the axial plane: 20.dcm, 21.dcm" in caplog.text


def test_a_file_without_geometry_is_dropped_not_a_reason_for_instance_order(tmp_path, caplog):
    write_series(tmp_path, [-20.0, -10.0, 0.0, 10.0], SAGITTAL, instances=[4, 3, 2, 1])
    pixels = np.full((16, 16), 7, np.uint16)
    write_dicom(tmp_path / "9.dcm", pixels, 9, position=None, orientation=None)
    series = read_series(tmp_path, "sagittal")
    assert series.ordered_by == "position" and tags(series) == [0, 1, 2, 3]
    assert "no geometry tags: 9.dcm" in caplog.text


def test_corrupt_and_empty_files_are_skipped_with_a_reason(tmp_path, caplog):
    write_series(tmp_path, [0.0, 1.0, 2.0])
    (tmp_path / "4.dcm").write_bytes(b"")
    (tmp_path / "5.dcm").write_bytes(b"not a dicom file at all" * 10)
    series = read_series(tmp_path, "sagittal")
    assert len(series) == 3
    assert len(series.skipped) == 2 and any("4.dcm" in s for s in series.skipped)
    assert f"skipping unreadable DICOM: study {tmp_path.parent.name} series" in caplog.text


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
    with pytest.raises(DecoderMissing, match=r"pip install 'zoo\[jpeg\]'"):
        decode_slice(path)


def test_a_corrupt_jpeg_is_one_line_naming_the_file_without_a_traceback(tmp_path, capsys):
    path = write_dicom(tmp_path / "study" / "series" / "3.dcm", np.ones((8, 8), np.uint16))
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGBaseline8Bit  # pillow decodes it
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8\xff\xc0" + b"\x00" * 60])
    ds.save_as(path, enforce_file_format=True)
    with pytest.raises(
        ZooError, match="study study series series file 3.dcm: cannot decode"
    ) as err:
        decode_slice(path)
    assert not isinstance(err.value, DecoderMissing)  # the decoder exists; this file is bad
    assert "Traceback" not in capsys.readouterr().err


def test_pydicom_warnings_become_one_line_naming_the_file(tmp_path, caplog, recwarn):
    path = write_dicom(tmp_path / "4012" / "777" / "1.dcm", np.ones((4, 4), np.uint16))
    ds = pydicom.dcmread(path)
    ds.PixelData = ds.PixelData + b"\x00" * 8  # pydicom warns about excess padding
    ds.save_as(path)
    decode_slice(path)
    lines = [r for r in caplog.records if "excess padding" in r.getMessage()]
    assert len(lines) == 1 and lines[0].name == "zoo.dicom"
    assert lines[0].getMessage().startswith("study 4012 series 777 file 1.dcm: pydicom:")
    assert not [w for w in recwarn if "padding" in str(w.message)]  # captured, not re-raised


def test_colour_files_become_luminance_with_a_warning(tmp_path, caplog):
    grey = (np.arange(64).reshape(8, 8) * 3).astype(np.uint8)
    rgb = np.repeat(grey[..., None], 3, axis=-1)
    rgb_path = write_dicom(tmp_path / "1.dcm", rgb, photometric="RGB")
    assert np.allclose(decode_slice(rgb_path), grey, atol=1e-3)
    assert "colour (RGB) converted to luminance" in caplog.text
    mixed = np.stack([grey, np.full_like(grey, 128), np.full_like(grey, 128)], axis=-1)
    ybr_path = write_dicom(tmp_path / "2.dcm", mixed, photometric="YBR_FULL")
    assert np.allclose(decode_slice(ybr_path), grey, atol=1.0)  # Y is the luminance


def test_multiframe_frames_become_slices_placed_by_their_positions(tmp_path, caplog):
    frames = np.stack([np.full((8, 8), 100 + k, np.uint16) for k in range(4)])
    frames[:, 0, 0] = 0
    xs = [10.0, -10.0, 20.0, 0.0]  # frame k lies at x = xs[k]
    write_multiframe(tmp_path / "1.dcm", frames, [(x, 0.0, 0.0) for x in xs], SAGITTAL)
    with caplog.at_level(logging.INFO, logger="zoo"):
        series = read_series(tmp_path, "sagittal")
    assert [s.frame for s in series.slices] == [1, 3, 0, 2]  # right (small x) to left
    assert [int(decode_slice(s)[1, 1]) for s in series.slices] == [101, 103, 100, 102]
    assert "multi-frame file 1.dcm: 4 frames, placed by their per-frame positions" in caplog.text


def test_multiframe_without_positions_keeps_frame_order_with_a_warning(tmp_path, caplog):
    frames = np.stack([np.full((8, 8), 100 + k, np.uint16) for k in range(3)])
    write_multiframe(tmp_path / "1.dcm", frames, None, SAGITTAL)
    series = read_series(tmp_path, "sagittal")
    assert [s.frame for s in series.slices] == [0, 1, 2]
    assert series.ordered_by == "instance_number"
    assert "3 frames without per-frame positions: frame order" in caplog.text


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
