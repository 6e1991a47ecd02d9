"""Ensembles and calibration fitted on out-of-fold predictions, and the kernel that ships them."""

import json
import logging
import shutil

import numpy as np
import pandas as pd
import pytest

from zoo.calibration import IDENTITY, calibrate, cross_fitted_calibration
from zoo.constants import MISSING_LABEL, SUBMISSION_COLUMNS, TARGETS
from zoo.ensemble import (
    OutOfFold,
    align,
    carry_weights,
    cross_fit,
    fit_ensemble,
    fit_weights,
    mix,
    read_oof,
    write_ensemble,
)
from zoo.errors import ZooError
from zoo.metric import GROUP_OF_TARGET, array_terms, score_predictions


def random_case(seed: int, studies: int = 60):
    rng = np.random.default_rng(seed)
    labels = rng.choice(3, (studies, len(TARGETS)), p=[0.7, 0.2, 0.1])
    labels[rng.random(labels.shape) < 0.05] = MISSING_LABEL
    return rng, labels


def noisy(rng, labels, signal: float) -> np.ndarray:
    onehot = np.eye(3)[np.where(labels == MISSING_LABEL, 0, labels)]
    noise = rng.dirichlet([1, 1, 1], labels.shape)
    return signal * onehot + (1 - signal) * noise


def by_target(submission: pd.DataFrame) -> np.ndarray:
    """A submission's rows as (studies, 25, 3), studies sorted, targets in TARGETS order."""
    study = submission["row_id"].str.split("_", n=1).str[0].astype(int)
    target = submission["row_id"].str.split("_", n=1).str[1].map(TARGETS.index)
    frame = submission.assign(_s=study, _t=target).sort_values(["_s", "_t"])
    return frame[list(SUBMISSION_COLUMNS)].to_numpy().reshape(-1, len(TARGETS), 3)


def test_array_metric_matches_the_official_frames():
    rng, labels = random_case(0)
    labels[3, :5] = MISSING_LABEL  # a study without spinal labels: no any-severe row
    probs = rng.dirichlet([1, 1, 1], labels.shape)
    ids = list(range(1000, 1000 + len(labels)))
    expected = score_predictions(ids, labels, probs)
    assert array_terms(labels, probs) == pytest.approx(expected, abs=1e-12)


def test_fitting_never_sees_the_fold_it_is_evaluated_on():
    """Member A is right on fold 0 only, member B everywhere else. Weights fitted without
    fold 0 back B, so fold 0's cross-fitted predictions are B's (bad there); a fit that had
    seen fold 0 would do better there than the honest one."""
    rng, labels = random_case(1, 100)
    folds = np.arange(100) % 5
    good, bad = noisy(rng, labels, 0.9), noisy(rng, labels, 0.0)
    a = np.where((folds == 0)[:, None, None], good, bad)
    b = np.where((folds == 0)[:, None, None], bad, good)
    probs = np.stack([a, b])
    seen = []

    def fit(rows):
        seen.append(rows.copy())
        return fit_weights(probs[:, rows], labels[rows])

    cross, fitted = cross_fit(folds, fit, lambda w, rows: mix(probs[:, rows], w))
    for k, rows in zip(sorted(fitted), seen, strict=True):
        assert not rows[folds == k].any() and rows[folds != k].all()
    assert all(fitted[0][g][0] < 0.05 for g in fitted[0])  # B's weights, fitted without fold 0
    honest = array_terms(labels[folds == 0], cross[folds == 0])["score"]
    leaked = fit_weights(probs[:, folds == 0], labels[folds == 0])
    peeked = array_terms(labels[folds == 0], mix(probs[:, folds == 0], leaked))["score"]
    assert peeked < honest - 0.5


def test_weights_favour_the_better_member_per_group():
    rng, labels = random_case(2, 120)
    folds = np.arange(120) % 4
    strong, weak = noisy(rng, labels, 0.6), noisy(rng, labels, 0.1)
    members = [
        OutOfFold("strong", None, np.arange(120), folds, labels, strong),
        OutOfFold("weak", None, np.arange(120), folds, labels, weak),
    ]
    fit = fit_ensemble(members)
    assert all(w[0] > 0.8 and w.sum() == pytest.approx(1) for w in fit.weights.values())
    assert fit.terms["ensemble"]["score"] < fit.terms["weak"]["score"]


def test_a_row_one_member_left_to_the_prior_is_carried_by_the_other():
    """Member B has no subarticular model input for a third of the studies (its OOF rows there
    are the prior, as the kernel would give it): the fit and the cross-fitted ensemble take
    those rows from A, as the kernel does, instead of mixing in B's prior."""
    rng, labels = random_case(4, 90)
    folds = np.arange(90) % 3
    a, b = noisy(rng, labels, 0.5), noisy(rng, labels, 0.5)
    lost = np.zeros(labels.shape, bool)
    lost[::3, [j for j, t in enumerate(TARGETS) if "subarticular" in t]] = True
    b[lost] = [0.7, 0.2, 0.1]
    members = [
        OutOfFold("a", None, np.arange(90), folds, labels, a),
        OutOfFold("b", None, np.arange(90), folds, labels, b, ~lost),
    ]
    fit = fit_ensemble(members)
    assert np.abs(fit.cross_fitted[lost] - a[lost]).max() < 1e-12
    assert 0.2 < fit.weights["subarticular"][1] < 0.8  # B still weighs where it predicted
    blind = fit_ensemble([members[0], OutOfFold("b", None, np.arange(90), folds, labels, b)])
    assert fit.terms["ensemble"]["subarticular"] < blind.terms["ensemble"]["subarticular"]
    # the kernel's rule for one study, as `combine` applies it
    per_target = np.stack([fit.weights[g] for g in GROUP_OF_TARGET], axis=1)
    row = carry_weights(per_target, np.stack([np.ones(25, bool), ~lost[0]]))
    assert np.allclose(row[:, lost[0]], [[1.0], [0.0]]) and np.allclose(row.sum(axis=0), 1)


def test_out_of_fold_files_read_back_with_and_without_prior_rows(tmp_path, caplog):
    rng, labels = random_case(5, 20)
    probs = rng.dirichlet([1, 1, 1], labels.shape)
    ids = list(range(500, 520))
    for name, predicted in (("all", np.ones(labels.shape, bool)), ("some", probs[..., 0] > 0.2)):
        member = OutOfFold(
            name, tmp_path, np.array(ids), np.arange(20) % 2, labels, probs, predicted
        )
        write_ensemble(fit_ensemble([member]), tmp_path / name)
        again = read_oof(tmp_path / name)
        assert (again.predicted == predicted).all() and np.allclose(again.probs, probs)
    (tmp_path / "some" / "oof_prior_rows.csv").unlink()  # as a run made by an older zoo
    with caplog.at_level(logging.WARNING, logger="zoo.ensemble"):
        assert read_oof(tmp_path / "some").predicted.all()
    assert "oof_prior_rows.csv missing" in caplog.text and "--resume" in caplog.text
    with (tmp_path / "all" / "oof_prior_rows.csv").open("a") as f:
        f.write("123_spinal_canal_stenosis_l1_l2\n")  # a study the run never saw
    with pytest.raises(ZooError, match=r"oof_prior_rows.csv: row_id '123_spinal_canal"):
        read_oof(tmp_path / "all")


def test_runs_must_share_the_fold_split():
    rng, labels = random_case(3, 20)
    probs = rng.dirichlet([1, 1, 1], labels.shape)
    ids = np.arange(20)
    a = OutOfFold("a", None, ids, ids % 5, labels, probs)
    b = OutOfFold("b", None, ids, (ids + 1) % 5, labels, probs)
    with pytest.raises(ZooError, match="a and b do not share the fold split: study 0"):
        align([a, b])
    with pytest.raises(ZooError, match="at least 2 folds"):
        cross_fit(np.zeros(20, int), lambda rows: None, lambda p, rows: probs[rows])


def test_calibration_keeps_rows_normalised_and_raises_the_any_severe_maximum():
    rng, labels = random_case(4)
    probs = rng.dirichlet([1, 1, 1], labels.shape)
    assert np.allclose(calibrate(probs, IDENTITY), probs)
    params = {"temperature": {"spinal": 0.8, "foraminal": 1.2, "subarticular": 1.0}}
    out = calibrate(probs, {**params, "any_severe_scale": 1.5})
    assert np.allclose(out.sum(axis=-1), 1)
    plain = calibrate(probs, {**params, "any_severe_scale": 1.0})
    assert (out[:, :5, 2].max(axis=1) > plain[:, :5, 2].max(axis=1)).all()
    assert np.allclose(out[:, 5:], plain[:, 5:])  # the scale touches spinal rows only


def test_calibration_fixes_overconfidence_and_never_ships_a_loss():
    """Labels drawn from known posteriors: predictions three times too sharp are softened
    (temperature well above 1); the posteriors themselves gain nothing worth shipping."""
    rng = np.random.default_rng(5)
    posterior = rng.dirichlet([2, 1, 0.5], (300, len(TARGETS)))
    labels = (rng.random((300, len(TARGETS), 1)) > posterior.cumsum(-1)).sum(-1)
    folds = np.arange(300) % 5
    sharp = posterior**3 / (posterior**3).sum(-1, keepdims=True)
    report = cross_fitted_calibration(labels, sharp, folds)
    assert report["after"]["score"] < report["before"]["score"] - 0.05
    assert all(t > 1.5 for t in report["params"]["temperature"].values())
    again = cross_fitted_calibration(labels, posterior, folds)
    assert again["after"]["score"] <= again["before"]["score"] + 1e-12
    for group, kept in again["kept"].items():
        if not kept:
            assert again["params"]["temperature"][group] == 1.0
            assert any(note.startswith(group) for note in again["notes"])


def test_ensemble_of_two_real_runs_writes_a_source_calibrate_can_read(ensemble_runs, tmp_path):
    members = [read_oof(r) for r in ensemble_runs]
    fit = fit_ensemble(members)
    content = write_ensemble(fit, tmp_path / "ens")
    assert [m["variant"] for m in content["members"]] == ["tiny_split", "tiny_split"]
    assert set(content["fold_weights"]) == {"0", "1"}
    again = read_oof(tmp_path / "ens")
    assert np.allclose(again.probs, fit.cross_fitted)
    # the rows a model could not predict (a study missing its series) are on record as such
    left_out = set()
    for done in ensemble_runs[0].glob("*/fold*/done.json"):
        left_out |= set(json.loads(done.read_text())["left_out"]["val"])
    assert (
        left_out
        and {int(s) for s in members[0].study_ids[~members[0].predicted.all(1)]} == left_out
    )
    assert (again.predicted == np.stack([m.predicted for m in members]).any(axis=0)).all()
    assert (again.folds == members[0].folds).all()
    assert (tmp_path / "ens" / "ensemble.png").stat().st_size > 1000


def test_two_run_package_reproduces_the_ensemble_offline(ensemble_runs, synth12, tmp_path, caplog):
    """Each run packaged and predicted alone, then averaged with the ensemble's weights and
    calibrated by hand, equals what the kernel writes from the two-run package."""
    from kaggle_kernel.package import package
    from kaggle_kernel.predict import finish_rows, predict

    ens = tmp_path / "ens"
    fit = fit_ensemble([read_oof(r) for r in ensemble_runs])
    write_ensemble(fit, ens)
    params = {
        "temperature": {"spinal": 0.8, "foraminal": 1.3, "subarticular": 1.1},
        "any_severe_scale": 1.4,
    }
    (ens / "calibration.json").write_text(json.dumps({"params": params, "family": "test"}))
    alone = []
    for i, run in enumerate(ensemble_runs):
        package(run, tmp_path / f"p{i}", dataset_id=f"tester/zoo-member-{i}")
        predict(tmp_path / f"p{i}", synth12, tmp_path / f"s{i}.csv", workers=0, progress=False)
        alone.append(pd.read_csv(tmp_path / f"s{i}.csv"))
    package(ens, tmp_path / "both", dataset_id="tester/zoo-ensemble")
    saved = json.loads((tmp_path / "both" / "ensemble.json").read_text())
    assert saved["calibration"] == params and len(saved["members"]) == 2
    predict(tmp_path / "both", synth12, tmp_path / "both.csv", workers=0, progress=False)
    got = pd.read_csv(tmp_path / "both.csv")

    probs = np.stack([by_target(a) for a in alone])
    expected = calibrate(mix(probs, fit.weights), params)
    expected = finish_rows(expected, np.full((len(TARGETS), 3), 1 / 3))
    assert np.abs(by_target(got) - expected).max() < 1e-5

    # a member that cannot predict some rows (its axial model will not load) leaves them to
    # the other member; the rest is still the weighted mix
    partial = tmp_path / "partial"
    shutil.copytree(tmp_path / "both", partial)
    member = partial / "members" / saved["members"][1]["manifest"]["path"].split("/")[1]
    for path in (member / "axial_t2").rglob("model.*"):
        path.write_bytes(b"not a model")
    predict(partial, synth12, tmp_path / "partial.csv", workers=0, progress=False)
    predicted = np.ones(probs.shape[:-1], bool)
    predicted[1][:, [j for j, t in enumerate(TARGETS) if "subarticular" in t]] = False
    expected = calibrate(mix(probs, fit.weights, predicted), params)  # the fit's carry rule
    expected = finish_rows(expected, np.full((len(TARGETS), 3), 1 / 3))
    assert np.abs(by_target(pd.read_csv(tmp_path / "partial.csv")) - expected).max() < 1e-5

    # a member none of whose models loads drops out, and the other's rows remain, calibrated
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "both", broken)
    member = broken / "members" / saved["members"][1]["manifest"]["path"].split("/")[1]
    for onnx in member.rglob("*.onnx"):
        onnx.write_bytes(b"not a model")
    for checkpoint in member.rglob("*.pt"):
        checkpoint.write_bytes(b"not a checkpoint")
    with caplog.at_level(logging.ERROR, logger="kaggle_kernel"):
        predict(broken, synth12, tmp_path / "broken.csv", workers=0, progress=False)
    assert "drops out and the weights are renormalised" in caplog.text
    first = finish_rows(calibrate(probs[0], params), np.full((len(TARGETS), 3), 1 / 3))
    assert np.abs(by_target(pd.read_csv(tmp_path / "broken.csv")) - first).max() < 1e-5
