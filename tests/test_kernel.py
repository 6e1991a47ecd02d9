"""The Kaggle kernel path: package, then predict offline from the package alone, on good and
broken test data. Real DICOM files, real ONNX Runtime and TorchScript sessions."""

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from export.manifest import entry_files
from kaggle_kernel.offline import no_network_prefix
from kaggle_kernel.predict import predict
from zoo.constants import TARGETS

NO_NET = no_network_prefix()


def zoo_predict(model_dir, data, out, *extra):
    cmd = [
        *NO_NET,
        sys.executable,
        "-m",
        "zoo.cli",
        "predict",
        "--model",
        str(model_dir),
        "--data",
        str(data),
        "--out",
        str(out),
        "--workers",
        "2",
        *extra,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def check_submission(path: Path, studies: list[int]) -> pd.DataFrame:
    sub = pd.read_csv(path)
    assert len(sub) == 25 * len(studies)
    expected = {f"{s}_{t}" for s in studies for t in TARGETS}
    assert set(sub["row_id"]) == expected
    values = sub[["normal_mild", "moderate", "severe"]].to_numpy()
    assert np.isfinite(values).all() and (values > 0).all() and (values < 1).all()
    assert np.allclose(values.sum(axis=1), 1)
    return sub


def test_package_layout(packaged):
    meta = json.loads((packaged / "dataset-metadata.json").read_text())
    assert meta["id"] == "tester/zoo-tiny-split" and 6 <= len(meta["title"]) <= 50
    kernel = json.loads((packaged / "kernel" / "kernel-metadata.json").read_text())
    assert kernel["enable_internet"] is False and kernel["enable_gpu"] is True
    assert kernel["dataset_sources"] == [meta["id"]]
    assert kernel["competition_sources"] == ["rsna-2024-lumbar-spine-degenerative-classification"]
    owner, slug = kernel["id"].split("/")
    assert owner == "tester" and slug == "zoo-tiny-split-submission"
    assert re.sub(r"[^a-z0-9]+", "-", kernel["title"].lower()).strip("-") == slug  # Kaggle's rule
    script = (packaged / "kernel" / "kernel.py").read_text()
    assert 'DATASET_SLUG = "zoo-tiny-split"' in script and "--no-index" in script
    assert list((packaged / "wheels").glob("zoo-*.whl"))
    manifest = json.loads((packaged / "manifest.json").read_text())
    for model in manifest["models"].values():
        assert model["selected"]["format"] in {"torch", "torchscript", "onnx"}
        assert {"onnx", "torchscript", "torch"} <= set(model["folds"]["0"])
        assert (packaged / model["reference"]["path"]).is_file()
        for entry in model["folds"]["0"].values():
            for file in entry_files(entry):
                assert (packaged / file["path"]).is_file(), file
    assert not [p for p in packaged.parent.iterdir() if p.name.startswith(".dataset.")]


@pytest.mark.skipif(not NO_NET, reason="unshare --net is not permitted here")
def test_offline_predict_from_the_package_alone(packaged, synth12, tmp_path):
    out = tmp_path / "submission.csv"
    result = zoo_predict(packaged, synth12, out)
    assert result.returncode == 0, result.stderr[-3000:]
    studies = pd.read_csv(synth12 / "test_series_descriptions.csv")["study_id"].unique().tolist()
    sub = check_submission(out, studies)
    sample = pd.read_csv(synth12 / "sample_submission.csv")
    assert sub["row_id"].tolist() == sample["row_id"].tolist()
    assert "environment:" in result.stderr and "sha256 verified" in result.stderr
    # synth's test split holds a localiser-only Axial T2, a multi-frame file, mirrored and
    # per-disc block series: every warning about them names the study and a series or file.
    warnings = [line for line in result.stderr.splitlines() if "WARNING" in line]
    assert warnings and "localiser" not in result.stderr
    for line in warnings:
        assert "study " in line and ("series" in line or ".dcm" in line), line
    scored = subprocess.run(
        [
            sys.executable,
            "-m",
            "zoo.cli",
            "score",
            "--solution",
            str(synth12 / "test_solution.csv"),
            "--submission",
            str(out),
            "--json",
        ],
        capture_output=True,
        text=True,
    )
    assert np.isfinite(json.loads(scored.stdout)["score"])


def break_test_data(src: Path, dst: Path) -> dict[int, str]:
    """A copy of the test split with a different failure in each study; returns the causes."""
    shutil.copytree(src, dst)
    series = pd.read_csv(dst / "test_series_descriptions.csv")
    studies = series["study_id"].unique().tolist()
    images = dst / "test_images"
    causes = {}

    def folder(study, description):
        rows = series[(series["study_id"] == study) & (series["series_description"] == description)]
        return images / str(study) / str(rows["series_id"].iloc[0]) if len(rows) else None

    # study 0: its Axial T2 folder does not exist, a T1 file is empty, a T2 file is garbage
    s0 = studies[0]
    shutil.rmtree(folder(s0, "Axial T2"), ignore_errors=True)
    sorted(folder(s0, "Sagittal T1").glob("*.dcm"))[3].write_bytes(b"")
    sorted(folder(s0, "Sagittal T2/STIR").glob("*.dcm"))[2].write_bytes(b"\x00garbage" * 64)
    causes[s0] = "Axial T2"
    # study 1: one slice only in Sagittal T1; Sagittal T2/STIR RLE-compressed; axial undecodable
    s1 = studies[1]
    for path in sorted(folder(s1, "Sagittal T1").glob("*.dcm"))[1:]:
        path.unlink()
    for path in folder(s1, "Sagittal T2/STIR").glob("*.dcm"):
        ds = pydicom.dcmread(path)
        ds.compress(pydicom.uid.RLELossless)
        ds.save_as(path, enforce_file_format=True)
    for path in folder(s1, "Axial T2").glob("*.dcm"):  # JPEG lossless without the plugin
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGLosslessSV1
        ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8\xff\xc3" + b"\x00" * 60])
        ds.save_as(path, enforce_file_format=True)
    causes[s1] = "zoo[jpeg]"
    # study 2: its Sagittal T1 row renamed to an unknown description
    s2 = studies[2]
    series.loc[
        (series["study_id"] == s2) & (series["series_description"] == "Sagittal T1"),
        "series_description",
    ] = "Coronal T2"
    causes[s2] = "Coronal T2"
    # a row without ids (skipped, named by its line) and a description typed loosely (read)
    series.loc[
        (series["study_id"] == s2) & (series["series_description"] == "Sagittal T2/STIR"),
        "series_description",
    ] = " sagittal t2/stir  "
    series.loc[len(series)] = [None, None, "Axial T2"]
    series.to_csv(dst / "test_series_descriptions.csv", index=False)
    # a study listed in sample_submission.csv only: no series at all
    sample = pd.read_csv(dst / "sample_submission.csv")
    ghost = 3_999_999_999
    extra = pd.DataFrame(
        {
            "row_id": [f"{ghost}_{t}" for t in TARGETS],
            "normal_mild": 1 / 3,
            "moderate": 1 / 3,
            "severe": 1 / 3,
        }
    )
    pd.concat([sample, extra]).to_csv(dst / "sample_submission.csv", index=False)
    causes[ghost] = "no series"
    return causes


@pytest.mark.parametrize("variant", ["packaged", "two_stage_packaged"])
def test_broken_studies_fall_back_and_every_row_is_written(variant, request, synth12, tmp_path):
    packaged = request.getfixturevalue(variant)  # one stage, and localise -> crop -> classify
    data = tmp_path / "broken"
    causes = break_test_data(synth12, data)
    out = tmp_path / "submission.csv"
    result = zoo_predict(packaged, data, out)
    assert result.returncode == 0, result.stderr[-3000:]
    sub = check_submission(out, list(causes))
    for study, cause in causes.items():
        assert f"{study}" in result.stderr and cause in result.stderr, (study, cause)
    last_line = len(pd.read_csv(data / "test_series_descriptions.csv")) + 1
    assert f"test_series_descriptions.csv line {last_line}: ids" in result.stderr
    s2_line = next(ln for ln in result.stderr.splitlines() if f"study {list(causes)[2]}:" in ln)
    manifest = json.loads((packaged / "manifest.json").read_text())
    t1_graders = {
        name
        for name, m in manifest["models"].items()
        if m["spec"]["plan"]["series_types"] == ["Sagittal T1"] and m["spec"]["targets"]
    }
    # only what reads Sagittal T1 fell back: " sagittal t2/stir " was read as Sagittal T2/STIR
    assert set(s2_line.split("prior for")[-1].strip().split(", ")) == t1_graders
    prior = np.asarray(json.loads((packaged / "prior.json").read_text())["prior"])
    ghost = sub[sub["row_id"].str.startswith("3999999999_")]
    assert np.allclose(ghost[["normal_mild", "moderate", "severe"]].to_numpy(), prior, atol=1e-4)
    s1_axial = sub[sub["row_id"].str.startswith(f"{list(causes)[1]}_left_subarticular")]
    assert np.allclose(
        s1_axial[["normal_mild", "moderate", "severe"]].to_numpy(), prior[15:20], atol=1e-4
    )


def test_a_corrupt_selected_artifact_falls_back_to_the_next_format(packaged, synth12, tmp_path):
    copy = tmp_path / "dataset"
    shutil.copytree(packaged, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    model = manifest["models"]["axial_t2"]
    selected = model["selected"]["format"]
    path = copy / model["folds"]["0"][selected]["path"]
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    summary = predict(copy, synth12, tmp_path / "sub.csv", workers=0, progress=False)
    assert summary.runtimes["axial_t2"] != selected
    assert (
        summary.runtimes["sagittal_t1"] == manifest["models"]["sagittal_t1"]["selected"]["format"]
    )
    check_submission(
        tmp_path / "sub.csv",
        list(pd.read_csv(synth12 / "test_series_descriptions.csv")["study_id"].unique()),
    )


def test_requested_tensorrt_without_cuda_falls_back(packaged, synth12, tmp_path, caplog):
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with caplog.at_level(logging.INFO, logger="kaggle_kernel"):
        summary = predict(
            packaged, synth12, tmp_path / "sub.csv", runtime="tensorrt", workers=0, progress=False
        )
    assert set(summary.runtimes.values()) <= {"onnx", "torchscript", "torch"}
    assert "tensorrt: " in caplog.text and "CUDA is not available" in caplog.text


def test_an_unwritable_output_is_the_only_failure(packaged, synth12, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = zoo_predict(packaged, synth12, blocker / "submission.csv")
    assert result.returncode != 0


def test_a_package_without_models_still_writes_every_row(synth12, tmp_path, packaged):
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copyfile(packaged / "prior.json", empty / "prior.json")
    result = zoo_predict(empty, synth12, tmp_path / "sub.csv")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "every condition falls back to the prior" in result.stderr
    studies = list(pd.read_csv(synth12 / "test_series_descriptions.csv")["study_id"].unique())
    sub = check_submission(tmp_path / "sub.csv", studies)
    prior = np.asarray(json.loads((empty / "prior.json").read_text())["prior"])
    values = sub.set_index("row_id")[["normal_mild", "moderate", "severe"]]
    for study in studies:
        rows = values.loc[[f"{study}_{t}" for t in TARGETS]].to_numpy()
        assert np.allclose(rows, prior, atol=1e-4)


def test_an_undecodable_series_blanks_only_its_channels_in_a_concat_model(synth12, tmp_path):
    """One series that cannot be decoded costs its own channels, never the other series'."""
    from kaggle_kernel.predict import ModelInput, TestStudies, read_test_studies
    from zoo.registry import concat_model

    data = tmp_path / "data"
    shutil.copytree(synth12, data)
    studies, series, _ = read_test_studies(data)

    def folders(study: int, series_type: str) -> list[Path]:
        return [data / "test_images" / str(study) / str(i) for i in series[study][series_type]]

    study = next(  # every series type, the axial ones stacks of single files
        s
        for s in studies
        if all(series[s].values())
        and all(len(list(f.glob("*.dcm"))) > 3 for f in folders(s, "Axial T2"))
    )
    for path in (p for f in folders(study, "Axial T2") for p in f.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEGLosslessSV1
        ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8\xff\xc3" + b"\x00" * 60])
        ds.save_as(path, enforce_file_format=True)
    spec = concat_model("test_convnext2", "conv", (10, 10, 20), 32)
    item = TestStudies(data / "test_images", [study], series, [ModelInput("all", spec, 32)])[0]
    x = item.inputs["all"]
    assert x.shape == (40, 32, 32)
    assert np.all(x[20:] == -1.0)  # the axial channels: black, normalised
    assert all(x[k].std() > 0 for k in range(20))  # both sagittal series still there
    assert any("Axial T2" in p and "failed" in p for p in item.problems), item.problems
