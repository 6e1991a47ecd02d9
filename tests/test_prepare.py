"""`zoo prepare` on real synthetic DICOM files: layout, resume, bad studies, policies."""

import importlib.util
import json
import shutil

import cv2
import pandas as pd
import pydicom
import pytest
from click.testing import CliRunner

from zoo.cli import main
from zoo.competition import load_competition
from zoo.errors import ZooError
from zoo.prepare import prepare

FOLDERS = {"Sagittal T1": 10, "Sagittal T2_STIR": 10, "Axial T2": 20}


@pytest.fixture()
def cache(tmp_path, synth12):
    summary = prepare(synth12, tmp_path / "cache", size=32, workers=2, progress=False, layout="png")
    assert summary.converted == 12 and not summary.failed
    return tmp_path / "cache"


def test_every_study_lands_in_the_notebook_layout(cache, synth12):
    data = load_competition(synth12, "train")
    index = pd.read_csv(cache / "index.csv")
    assert len(index) == 12 * 3
    status = {(r.study_id, r.series_type): r.status for r in index.itertuples()}
    for study_id in data.study_ids:
        listed = {k for k, ids in data.series_of(study_id).items() if ids}
        for series_type, n in FOLDERS.items():
            folder = cache / str(study_id) / series_type
            kind = series_type.replace("_", "/")
            if status[(study_id, kind)] not in ("ok", "partial"):
                assert not folder.exists()
                assert status[(study_id, kind)] == ("missing" if kind not in listed else "unusable")
                continue
            names = sorted(p.name for p in folder.iterdir())
            assert names == [f"{k:02d}.png" for k in range(1, n + 1)]
            image = cv2.imread(str(folder / "01.png"), cv2.IMREAD_UNCHANGED)
            assert image.shape == (32, 32) and image.dtype == "uint8"
    assert set(index["status"]) == {"ok", "missing", "unusable"}  # synth drops series, and
    unusable = index[index["status"] == "unusable"]  # labels a localiser Axial T2
    assert unusable["problem"].str.contains("fewer than 3").all()


def test_meta_records_what_was_turned_dropped_and_read_as_blocks(cache):
    index = pd.read_csv(cache / "index.csv")
    assert {"mirrored", "upside down"} <= set(index["transforms"].dropna())
    assert (index["planes"] > 1).any() and index["dropped"].sum() >= 1
    blocked = index[index["planes"] > 1].iloc[0]
    meta = json.loads((cache / str(blocked["study_id"]) / "meta.json").read_text())
    axial = next(r for r in meta["series"] if r["series_type"] == "Axial T2")
    assert len(axial["picked"]) == 20 and {"file", "frame", "shape", "transform"} <= set(
        axial["picked"][0]
    )


def test_second_run_skips_finished_studies(cache, synth12):
    again = prepare(synth12, cache, size=32, workers=2, progress=False, layout="png")
    assert (again.converted, again.already_done, again.slices) == (0, 12, 0)


def test_interrupted_study_is_redone(cache, synth12):
    index = pd.read_csv(cache / "index.csv")
    victim = str(index["study_id"].iloc[0])
    shutil.rmtree(cache / victim)
    (cache / ".partial" / victim / "Axial T2").mkdir(parents=True)  # half-written leftovers
    again = prepare(synth12, cache, size=32, workers=1, progress=False, layout="png")
    assert (again.converted, again.already_done) == (1, 11)
    assert (cache / victim / "meta.json").is_file() and not (cache / ".partial").exists()
    assert pd.read_csv(cache / "index.csv").equals(index)


def test_slices_follow_position_even_with_backwards_instance_numbers(cache, synth12):
    index = pd.read_csv(cache / "index.csv")
    orders = set()
    for _, row in index[index["status"] == "ok"].iterrows():
        instances = [int(i) for i in row["instance_numbers"].split()]
        series_dir = synth12 / "train_images" / str(row["study_id"]) / str(row["series_id"])
        coords = []
        for inst in instances:
            ds = pydicom.dcmread(series_dir / f"{inst}.dcm", stop_before_pixels=True)
            coords.append(
                float(ds.ImagePositionPatient[0 if "Sagittal" in row["series_type"] else 2])
            )
        if "Sagittal" in row["series_type"]:
            assert coords == sorted(coords)  # patient right (small x) to left
        else:
            assert coords == sorted(coords, reverse=True)  # head (large z) to feet
        orders.add(instances == sorted(instances))
    assert orders == {True, False}  # some series are numbered backwards


def test_seed_policy_includes_every_labelled_slice(tmp_path, synth12):
    prepare(synth12, tmp_path / "seed", size=32, policy="seed", progress=False)
    coords = pd.read_csv(synth12 / "train_label_coordinates.csv")
    index = pd.read_csv(tmp_path / "seed" / "index.csv")
    for _, row in index[index["status"] == "ok"].iterrows():
        labelled = set(coords.loc[coords["series_id"] == row["series_id"], "instance_number"])
        chosen = {int(i) for i in row["instance_numbers"].split()}
        assert labelled <= chosen


def test_changed_settings_on_an_existing_cache_are_refused(cache, synth12):
    with pytest.raises(ZooError, match="size=32, not 64"):
        prepare(synth12, cache, size=64, progress=False)


def test_corrupt_files_are_skipped_and_counted(tmp_path, synth12):
    data = tmp_path / "data"
    shutil.copytree(synth12, data)
    study_dir = sorted((data / "train_images").iterdir())[0]
    files = sorted(study_dir.rglob("*.dcm"))
    files[0].write_bytes(b"")
    files[1].write_bytes(b"garbage" * 50)
    summary = prepare(data, tmp_path / "cache", size=32, progress=False)
    assert summary.converted == 12 and summary.skipped_files == 2


def test_a_study_that_cannot_decode_costs_only_its_series(tmp_path, synth12):
    data = tmp_path / "data"
    shutil.copytree(synth12, data)
    study_dir = sorted((data / "train_images").iterdir())[0]
    for path in study_dir.rglob("*.dcm"):  # pretend the whole study is JPEG lossless
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGLosslessSV1
        ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8\xff\xc3" + b"\x00" * 60])
        ds.save_as(path, enforce_file_format=True)
    summary = prepare(data, tmp_path / "cache", size=32, workers=2, progress=False)
    assert summary.converted == 12 and not summary.failed
    index = pd.read_csv(tmp_path / "cache" / "index.csv")
    mine = index[index["study_id"] == int(study_dir.name)]
    assert set(mine["status"]) <= {"failed", "missing"} and "failed" in set(mine["status"])
    if importlib.util.find_spec("pylibjpeg") is None:
        assert mine["problem"].str.contains("zoo\\[jpeg\\]", regex=True).any()
    assert not (tmp_path / "cache" / study_dir.name / "Axial T2").exists()


def test_cli_prints_a_summary_and_names_bad_flags(tmp_path, synth12):
    runner = CliRunner()
    ok = runner.invoke(
        main,
        [
            "prepare",
            "--data",
            str(synth12),
            "--out",
            str(tmp_path / "c"),
            "--size",
            "32",
            "--workers",
            "2",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "12 studies (12 converted, 0 already done, 0 failed)" in ok.output
    bad = runner.invoke(
        main,
        ["prepare", "--data", str(synth12), "--out", str(tmp_path / "d"), "--policy", "middle"],
    )
    assert bad.exit_code == 2 and "--policy" in bad.output
    missing = runner.invoke(main, ["prepare", "--data", str(tmp_path / "nope"), "--out", "x"])
    assert missing.exit_code == 2 and "--data" in missing.output


def test_the_npy_layout_holds_the_same_pixels_and_the_same_model_inputs(cache, synth12, tmp_path):
    """Both layouts are lossless: every cached slice, and every training input built from it,
    is identical; a cache of one layout refuses to be continued in the other."""
    import numpy as np

    from train.config import TrainConfig
    from zoo.augment import build_transform
    from zoo.cache import SERIES_ARRAY, read_series, usable_series
    from zoo.data import CacheDataset, cache_reader, has_input, stack_channels
    from zoo.registry import get_variant

    arrays = tmp_path / "npy"
    prepare(synth12, arrays, size=32, workers=1, progress=False)  # npy: the default layout
    usable = usable_series(cache)
    assert usable == usable_series(arrays)
    compared = 0
    for study, kinds in usable.items():
        for kind in kinds:
            folder = kind.replace("/", "_")
            assert not list((arrays / str(study) / folder).glob("*.png"))
            stack = np.load(arrays / str(study) / folder / SERIES_ARRAY)
            assert stack.dtype == np.uint8 and stack.shape[1:] == (32, 32)
            picks = range(len(stack))
            pngs = read_series(cache / str(study) / folder, picks)
            assert all((a == b).all() for a, b in zip(pngs, stack, strict=True))
            compared += len(stack)
    assert compared > 300
    spec = get_variant("tiny_split").models[2]  # axial_t2: 20 slices
    ids = sorted(usable)
    labels = np.zeros((len(ids), 25), np.int64)
    for root in (cache, arrays):
        read = cache_reader(root, ids[0], usable[ids[0]], 32)
        assert stack_channels(spec.plan, read, 32).shape == (32, 32, 20)
    ids = [s for s in ids if has_input(spec.plan, usable[s])]
    sets = []
    for root in (cache, arrays):  # the same augmentation draws on both: the same tensors
        transform = build_transform("light", 32, train=True)
        sets.append(CacheDataset(root, ids, labels, spec, transform, 32, usable))
        sets[-1].epoch_seed = 3
    for i in range(len(ids)):
        assert np.array_equal(sets[0][i][0].numpy(), sets[1][i][0].numpy())
    with pytest.raises(ZooError, match="layout='npy', not 'png'"):
        prepare(synth12, arrays, size=32, progress=False, layout="png")
    assert TrainConfig.for_variant("tiny_split", synth12, tmp_path).cache_layout == "npy"
