"""The training loop on real synthetic data: outputs, repeatability, resume, DDP, learning."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from train.config import TrainConfig
from train.folds import kfold, stratified_kfold
from train.loss import weighted_ce
from train.run import run_training
from train.schedule import cosine_with_warmup
from zoo.competition import encode_labels, read_csv
from zoo.constants import TARGETS
from zoo.errors import ZooError
from zoo.metric import class_prior

ROOT = Path(__file__).resolve().parents[1]


def test_kfold_matches_the_notebooks_fold_sizes_and_sklearn():
    folds = kfold(1972)
    assert [len(f) for f in folds] == [395, 395, 394, 394, 394]
    assert sorted(np.concatenate(folds).tolist()) == list(range(1972))
    sklearn = pytest.importorskip("sklearn.model_selection")
    theirs = [v for _, v in sklearn.KFold(5, shuffle=True, random_state=8620).split(range(60))]
    assert all((a == b).all() for a, b in zip(kfold(60), theirs, strict=True))


def test_stratified_folds_spread_severe_studies():
    labels = np.zeros((50, 25), np.int64)
    labels[:10, 3] = 2
    folds = stratified_kfold(labels)
    assert [int((labels[f, 3] == 2).sum()) for f in folds] == [2, 2, 2, 2, 2]


def test_weighted_ce_matches_torch_and_survives_a_column_without_labels():
    logits = torch.randn(4, 6)
    labels = torch.tensor([[0, -100], [2, -100], [1, -100], [-100, -100]])
    loss = weighted_ce(logits, labels)
    reference = torch.nn.CrossEntropyLoss(weight=torch.tensor([1.0, 2.0, 4.0]))(
        logits.view(4, 2, 3)[:3, 0], labels[:3, 0]
    )
    assert torch.isfinite(loss) and torch.allclose(loss, reference)
    empty = weighted_ce(logits, torch.full((4, 2), -100))
    assert empty.item() == 0.0


def test_schedule_warms_up_then_ends_near_the_floor():
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = cosine_with_warmup(opt, warmup_steps=10, total_steps=100, min_lr=0.0)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(1.0)
    assert 0.004 < lrs[-1] < 0.01  # num_cycles 0.475 stops short of zero


def test_a_run_writes_every_output(tiny_run):
    for name in (
        "config.json",
        "prior.json",
        "metrics.csv",
        "curves.png",
        "cv.json",
        "oof_submission.csv",
        "oof_solution.csv",
    ):
        assert (tiny_run / name).stat().st_size > 0, name
    cv = json.loads((tiny_run / "cv.json").read_text())
    for key in (
        "spinal",
        "foraminal",
        "subarticular",
        "any_severe_spinal",
        "score",
        "pooled_weighted_ce",
        "prior_score",
    ):
        assert np.isfinite(cv[key]), key
    sub = pd.read_csv(tiny_run / "oof_submission.csv")
    assert len(sub) == 25 * cv["studies"]
    assert np.allclose(sub[["normal_mild", "moderate", "severe"]].sum(axis=1), 1)
    prior = json.loads((tiny_run / "prior.json").read_text())
    assert prior["targets"] == list(TARGETS) and np.allclose(np.sum(prior["prior"], axis=1), 1)
    state = torch.load(tiny_run / "axial_t2" / "fold0" / "best.pt", weights_only=True)
    assert "head.fc.weight" in state["model"]
    metrics = pd.read_csv(tiny_run / "metrics.csv")
    assert set(metrics["model"]) == {"sagittal_t1", "sagittal_t2_stir", "axial_t2"}


def test_an_existing_run_is_not_overwritten(tiny_run, synth12):
    cfg = TrainConfig.for_variant("tiny_split", synth12, tiny_run, folds=[0], epochs=1)
    with pytest.raises(ZooError, match="already holds a run"):
        run_training(cfg)


def small_config(data, out, **kw):
    # device cpu: exact repeats hold on the CPU; CUDA kernels are not deterministic.
    options = dict(folds=[0], epochs=2, batch_size=4, workers=0, size=32, seed=3, device="cpu")
    options.update(kw)
    return TrainConfig.for_variant("tiny_split", data, out, **options)


def test_cpu_runs_repeat_exactly_for_a_seed(tmp_path, synth12, tiny_cache):
    cache = tiny_cache
    runs = []
    for name in ("a", "b"):
        run_training(
            small_config(
                synth12,
                tmp_path / name,
                cache=str(cache),
                models=["sagittal_t2_stir"],
                aug="seed0828",
            )
        )
        runs.append(pd.read_csv(tmp_path / name / "metrics.csv").drop(columns="seconds"))
    pd.testing.assert_frame_equal(runs[0], runs[1])


def zoo_train_command(data, out, cache, epochs):
    return [
        sys.executable,
        "-m",
        "zoo.cli",
        "train",
        "tiny_split",
        "--data",
        str(data),
        "--out",
        str(out),
        "--cache",
        str(cache),
        "--folds",
        "0",
        "--epochs",
        str(epochs),
        "--batch-size",
        "4",
        "--size",
        "32",
        "--workers",
        "0",
        "--seed",
        "5",
        "--models",
        "axial_t2",
        "--device",
        "cpu",  # exact repeats hold on the CPU; CUDA kernels are not deterministic
    ]


def test_resume_after_a_kill_continues_from_the_last_epoch(tmp_path, synth12, tiny_cache):
    cache = tiny_cache
    subprocess.run(
        zoo_train_command(synth12, tmp_path / "full", cache, 4), check=True, capture_output=True
    )
    history = tmp_path / "killed" / "axial_t2" / "fold0" / "history.json"
    proc = subprocess.Popen(
        zoo_train_command(synth12, tmp_path / "killed", cache, 4),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if history.is_file() and len(json.loads(history.read_text())) >= 1:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (tmp_path / "killed" / "cv.json").exists()
    done_before = len(json.loads(history.read_text()))
    resumed = subprocess.run(
        zoo_train_command(synth12, tmp_path / "killed", cache, 4) + ["--resume"],
        capture_output=True,
        text=True,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resuming after epoch {done_before}" in resumed.stderr
    full = pd.read_csv(tmp_path / "full" / "metrics.csv").drop(columns=["seconds"])
    again = pd.read_csv(tmp_path / "killed" / "metrics.csv").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(full, again)  # as if it had never been interrupted


def test_two_process_gloo_run(tmp_path, synth12, tiny_cache):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29517",
        "-m",
        "zoo.cli",
        "train",
        "tiny_split",
        "--data",
        str(synth12),
        "--out",
        str(tmp_path / "ddp"),
        "--cache",
        str(tiny_cache),
        "--folds",
        "0",
        "--epochs",
        "2",
        "--batch-size",
        "2",
        "--size",
        "32",
        "--workers",
        "0",
        "--device",
        "cpu",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    cv = json.loads((tmp_path / "ddp" / "cv.json").read_text())
    assert np.isfinite(cv["score"])
    metrics = pd.read_csv(tmp_path / "ddp" / "metrics.csv")
    assert len(metrics) == 3 * 2  # written once (rank 0), not once per process


@pytest.fixture(scope="module")
def synth40(tmp_path_factory):
    from zoo.synth import make_synthetic_dataset

    out = tmp_path_factory.mktemp("synth40") / "s40"
    make_synthetic_dataset(out, studies=40, test_studies=0, seed=1, size=64, progress=False)
    return out


def test_training_beats_the_class_prior(tmp_path, synth40):
    """Out-of-fold over all five folds, so the comparison is not 8 studies' noise."""
    cfg = TrainConfig.for_variant(
        "tiny_split", synth40, tmp_path / "run", size=64, workers=0, folds=list(range(5))
    )
    cv = run_training(cfg)
    assert cv["studies"] == 40
    assert cv["score"] < cv["prior_score"] - 0.03, cv


def test_studies_without_a_models_series_are_left_out_and_get_the_prior(tiny_run, tiny_cache):
    """synth12 lacks some series (and has a localiser-only Axial T2): those studies are neither
    trained nor validated on black images; their OOF rows are the fold's training prior."""
    index = pd.read_csv(tiny_cache / "index.csv")
    cv = json.loads((tiny_run / "cv.json").read_text())
    config = json.loads((tiny_run / "config.json").read_text())
    labels = encode_labels(read_csv(Path(config["train"]["data"]) / "train.csv"))
    prior = class_prior(labels[np.setdiff1d(np.arange(12), kfold(12)[0])])
    oof = pd.read_csv(tiny_run / "oof_submission.csv").set_index("row_id")
    lacking_somewhere = 0
    for spec in config["models"]:
        rows = index[index["series_type"] == spec["plan"]["series_types"][0]]
        lacking = set(rows.loc[~rows["status"].isin(["ok", "partial"]), "study_id"])
        lacking_somewhere += len(lacking)
        done = json.loads((tiny_run / spec["name"] / "fold0" / "done.json").read_text())
        left = set(done["left_out"]["train"]) | set(done["left_out"]["val"])
        assert left == lacking  # all 12 studies are in fold 0's train or val
        assert not lacking & set(done["val_ids"])
        assert cv["left_out"][spec["name"]]["val"] == len(done["left_out"]["val"])
        for study in done["left_out"]["val"]:
            for target in spec["targets"]:
                got = oof.loc[f"{study}_{target}"].to_numpy()
                assert np.allclose(got, prior[TARGETS.index(target)], atol=1e-6), target
    assert lacking_somewhere >= 2


def test_the_run_records_the_caches_policy_and_refuses_a_mismatch(
    tiny_run, tiny_cache, synth12, tmp_path
):
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["train"]["policy"] == "itk8191"
    assert {m["plan"]["policy"] for m in config["models"]} == {"itk8191"}
    cfg = small_config(synth12, tmp_path / "r", cache=str(tiny_cache), policy="center")
    with pytest.raises(ZooError) as err:
        run_training(cfg)
    message = str(err.value)
    assert "--policy center" in message and "prepared with 'itk8191'" in message
    assert "variant tiny_split designed for 'itk8191'" in message


def test_resume_refuses_changed_flags_and_adds_folds(tiny_run, synth12, tmp_path, capsys):
    from train.run import resolve_config

    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "config.json").write_text((tiny_run / "config.json").read_text())
    saved = json.loads((copy / "config.json").read_text())["train"]
    cfg = dataclasses.replace(small_config(synth12, copy), out=str(copy))
    with pytest.raises(ZooError, match=r"--epochs 7: the run in .* was started with 1"):
        resolve_config(cfg, resume=True, changes={"epochs": 7})
    with pytest.raises(ZooError, match=r"--models"):
        resolve_config(cfg, resume=True, changes={"models": ["axial_t2"]})
    merged = resolve_config(cfg, resume=True, changes={"folds": [1], "workers": 3})
    assert merged.folds == [0, 1] and merged.workers == 3 and merged.epochs == saved["epochs"]
    assert saved["out"] != str(copy) and merged.out == str(copy)  # a copied run resumes in place
    assert "folds [0] of the saved run, now [0, 1]" in capsys.readouterr().out
    same = resolve_config(cfg, resume=True, changes={"data": synth12, "epochs": 1})
    assert same.epochs == 1


def test_cv_reports_every_condition_group_per_level(tiny_run):
    cv = json.loads((tiny_run / "cv.json").read_text())
    for key in ("level_terms", "prior_level_terms"):
        assert set(cv[key]) == {"spinal", "foraminal", "subarticular"}
        for levels in cv[key].values():
            assert list(levels) == ["l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1"]
            assert all(np.isfinite(v) for v in levels.values())
    from train.run import format_summary

    text = format_summary(cv, tiny_run)
    assert "per level (model / class prior)" in text and "subarticular" in text
