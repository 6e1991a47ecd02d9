"""The two-stage family: localise, then grade crops; honest CV, geometry, export and kernel."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from zoo.cache import prepared_settings, usable_series
from zoo.competition import load_competition
from zoo.crops import Located, SeriesView, canal_error, crop_rows, fill_gaps, make_crops
from zoo.registry import get_variant
from zoo.runinfo import read_run

SPECS = {m.name: m for m in get_variant("two_stage_tiny").models}


def frame(origin, du, dv) -> dict:
    return {"origin": list(origin), "du": list(du), "dv": list(dv)}


def test_axial_crops_follow_the_sagittal_point_through_the_geometry():
    """A sagittal level point is carried into the nearest axial slices and each side's window
    is cut beside it: a bright dot placed 14 mm to the patient's left of the canal on the
    matching axial slice is in the middle of every left crop."""
    size = 64
    # Sagittal: x = 0 (midline), 1 mm pixels, columns +y (posterior), rows -z (feet).
    sagittal = SeriesView(
        [{"position": k, "world": frame((0, -32, 32), (0, 1, 0), (0, 0, -1))} for k in range(3)],
        [1, 2, 3],
        size,
        np.zeros((3, size, size), np.uint8),
    )
    # Axial slices at z = 10, 0, -10 (head to feet); columns +x (patient left), rows +y.
    zs = (10.0, 0.0, -10.0)
    images = np.zeros((3, size, size), np.uint8)
    images[1, 32, 32 + 14] = 255  # at z = 0: 14 mm to the patient's left of (0, 0, 0)
    axial = SeriesView(
        [
            {"position": k, "world": frame((-32, -32, z), (1, 0, 0), (0, 1, 0))}
            for k, z in enumerate(zs)
        ],
        [1, 2, 3],
        size,
        images,
    )
    spec = SPECS["subarticular_crops"]
    located = Located(
        "Sagittal T2/STIR",
        {lv: (32.0, 32.0) for lv in ("l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1")},
        {"midline": 1.0},
    )
    crops = make_crops(spec, {"Sagittal T2/STIR": sagittal, "Axial T2": axial}, located)
    assert crops.shape == (10, 3, 32, 32)
    rows = crop_rows(spec)
    left = [i for i, (side, _) in enumerate(rows) if side == "left"]
    right = [i for i, (side, _) in enumerate(rows) if side == "right"]
    for i in left:  # the middle slice of each stack is the one at z = 0
        window = crops[i, 1]
        peak = np.unravel_index(window.argmax(), window.shape)
        assert window.max() > 0 and abs(peak[0] - 15.5) <= 1.5 and abs(peak[1] - 15.5) <= 1.5
    assert all(crops[i].max() == 0 for i in right)  # nothing 14 mm to the right


def test_missing_ground_truth_points_are_filled_along_the_levels():
    spec = SPECS["sag_t2_levels"]
    truth = np.array([0.5, 0.2, np.nan, np.nan, 0.5, 0.4, 0.5, 0.5, 0.5, 0.6, 0.4], np.float32)
    filled = fill_gaps(spec, truth)
    assert np.allclose(filled[2:4], [0.5, 0.3]) and filled[-1] == pytest.approx(0.4)
    assert fill_gaps(spec, np.full(11, np.nan, np.float32)) is None


def test_a_two_stage_run_reports_both_stages_honestly(two_stage_run):
    cv = json.loads((two_stage_run / "cv.json").read_text())
    assert set(cv["localisation"]) == {"sag_t2_levels", "sag_t1_foramina", "subarticular_crops"}
    levels = cv["localisation"]["sag_t2_levels"]
    assert {"l1_l2", "l5_s1", "midline_slice"} <= set(levels)
    assert levels["l1_l2"]["median_px"] >= 0 and levels["l1_l2"]["median_mm"] >= 0
    for key in ("spinal", "foraminal", "subarticular", "score", "prior_score"):
        assert np.isfinite(cv[key])
    for crop in ("spinal_crops", "foraminal_crops", "subarticular_crops"):
        localiser = SPECS[crop].crop.localiser
        done = json.loads((two_stage_run / crop / "fold0" / "done.json").read_text())
        stage1 = json.loads((two_stage_run / localiser / "fold0" / "done.json").read_text())
        # validated only where stage 1 placed points out of fold, never on ground truth;
        # the other validation studies are left out (OOF: the prior, as in the kernel)
        assert set(done["val_ids"]) <= set(stage1["val_ids"])
        assert set(stage1["left_out"]["val"]) <= set(done["left_out"]["val"])
    assert not (two_stage_run / "sag_t2_levels" / "fold0" / "val_probs.npy").exists()
    assert (two_stage_run / "sag_t2_levels" / "fold0" / "val_points.npy").is_file()


def test_geometric_axial_windows_hold_the_labelled_subarticular_points(two_stage_run):
    """No axial localiser: from the ground-truth sagittal level points, the DICOM geometry
    alone puts every labelled subarticular point inside its axial window, on a cropped slice."""
    from zoo.stages import StageData

    saved = json.loads((two_stage_run / "config.json").read_text())["train"]
    cache = Path(saved["cache"])
    data = load_competition(Path(saved["data"]))
    usable = usable_series(cache)
    size = prepared_settings(cache).size
    ctx = StageData(two_stage_run, 0, cache, size, usable, data.coordinates, SPECS)
    spec, errors = SPECS["subarticular_crops"], []
    for study in usable:
        if ctx.has_input(spec, study, train=True):
            located = ctx.located(spec, study, train=True)
            rows = ctx.label_rows(study, "Axial T2")
            errors += canal_error(spec, ctx.views(study), located, rows)
    assert len(errors) >= 20
    assert all(inside for _, _, inside, _ in errors)
    assert np.mean([mm for _, mm, _, _ in errors]) < spec.crop.window_mm / 4
    assert np.mean([on_slice for *_, on_slice in errors]) > 0.9


def test_two_stage_export_package_and_offline_predict(two_stage_packaged, synth12, tmp_path):
    from kaggle_kernel.predict import predict

    manifest = json.loads((two_stage_packaged / "manifest.json").read_text())
    specs = {s.name: s for s in read_run(two_stage_packaged.parent / "run").specs}
    assert list(manifest["models"]) == list(specs) == list(SPECS)
    for name, model in manifest["models"].items():
        entries = model["folds"]["0"]
        assert entries["onnx"]["status"] == "ok" and entries["torchscript"]["status"] == "ok"
        assert entries["onnx"]["variants"]["fp16"]["status"] == "ok"
        assert model["input_shape"] == list(specs[name].input_shape)
    summary = predict(two_stage_packaged, synth12, tmp_path / "sub.csv", workers=0, progress=False)
    sub = pd.read_csv(tmp_path / "sub.csv")
    assert len(sub) == 25 * summary.studies
    values = sub[["normal_mild", "moderate", "severe"]].to_numpy()
    assert np.isfinite(values).all() and np.allclose(values.sum(axis=1), 1)
    assert summary.stage_seconds["localise"] > 0 and summary.stage_seconds["classify"] > 0


def test_every_two_stage_model_runs_in_fp16(two_stage_run):
    """The GPU's fp16 runtimes (eager fp16, torch.compile) on every model of the family: a
    localiser's read-out must not mix dtypes, and a crop model's 5-D batch has no NHWC form.
    Found on an H200, where both failed their proof and fell back to fp32; fp16 convolutions
    run on the CPU too, so the same loader is checked here against fp32 eager by the proof."""
    from export import eager_fp16
    from export.runner import prove, reference_batch
    from zoo.models import load_trained

    run = read_run(two_stage_run)
    rng = np.random.default_rng(0)
    for spec in run.specs:
        checkpoint = run.fold_dir(spec, 0) / "best.pt"
        image = rng.integers(0, 256, spec.input_shape, dtype=np.uint8)
        x = reference_batch(image, 4)  # what the proof feeds the runner
        with torch.no_grad():
            expected = load_trained(spec, checkpoint)(torch.from_numpy(x)).numpy()
        runner = eager_fp16.load(checkpoint, "cpu", spec)
        assert prove(runner, image, expected, "fp16", spec.kind) is None, spec.name
