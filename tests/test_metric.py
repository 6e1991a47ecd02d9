"""The official metric on competition.md 2.4's worked examples, through `zoo score --json`."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from zoo.cli import main
from zoo.constants import TARGETS
from zoo.metric import class_prior, score_terms, solution_from_labels, submission_from_probs


def run_score(tmp_path, labels, probs, study_ids):
    solution = solution_from_labels(study_ids, labels)
    submission = submission_from_probs(study_ids, probs)
    solution.to_csv(tmp_path / "solution.csv", index=False)
    submission.to_csv(tmp_path / "submission.csv", index=False)
    result = CliRunner().invoke(
        main,
        [
            "score",
            "--solution",
            str(tmp_path / "solution.csv"),
            "--submission",
            str(tmp_path / "submission.csv"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def example_b_labels():
    labels = np.zeros((2, 25), np.int64)
    labels[0, TARGETS.index("spinal_canal_stenosis_l4_l5")] = 2
    labels[0, TARGETS.index("left_neural_foraminal_narrowing_l5_s1")] = 1
    labels[0, TARGETS.index("right_subarticular_stenosis_l4_l5")] = 1
    labels[1, TARGETS.index("spinal_canal_stenosis_l3_l4")] = 1
    return labels


def test_example_a_uniform_all_normal(tmp_path):
    out = run_score(tmp_path, np.zeros((1, 25), np.int64), np.full((1, 25, 3), 1 / 3), [44036939])
    assert out["score"] == pytest.approx(0.925325, abs=1e-6)
    assert out["any_severe_spinal"] == pytest.approx(0.405465, abs=1e-6)
    assert set(out) == {"spinal", "foraminal", "subarticular", "any_severe_spinal", "score"}


def test_example_a2_one_severe_spinal(tmp_path):
    labels = np.zeros((1, 25), np.int64)
    labels[0, TARGETS.index("spinal_canal_stenosis_l4_l5")] = 2
    out = run_score(tmp_path, labels, np.full((1, 25, 3), 1 / 3), [44036939])
    assert out["score"] == pytest.approx(1.098612, abs=1e-6)


def test_example_b_two_studies(tmp_path):
    probs = np.tile([0.7, 0.2, 0.1], (2, 25, 1))
    out = run_score(tmp_path, example_b_labels(), probs, [1001, 1002])
    assert out["spinal"] == pytest.approx(1.091615, abs=1e-6)
    assert out["foraminal"] == pytest.approx(0.475986, abs=1e-6)
    assert out["subarticular"] == pytest.approx(0.475986, abs=1e-6)
    assert out["any_severe_spinal"] == pytest.approx(1.570177, abs=1e-6)
    assert out["score"] == pytest.approx(0.903441, abs=1e-6)


def test_example_c_unnormalised_rows_pay_in_any_severe():
    sol = solution_from_labels([1001, 1002], example_b_labels())
    sub = submission_from_probs([1001, 1002], np.ones((2, 25, 3)))
    assert score_terms(sol, sub)["score"] == pytest.approx(3.827597, abs=1e-6)


def test_example_d_perfect_prediction_scores_zero():
    labels = example_b_labels()
    sol = solution_from_labels([1001, 1002], labels)
    sub = submission_from_probs([1001, 1002], np.eye(3)[labels])
    assert score_terms(sol, sub)["score"] < 1e-12


def test_missing_labels_are_not_scored():
    labels = example_b_labels()
    labels[1, 0] = -100
    sol = solution_from_labels([1001, 1002], labels)
    assert len(sol) == 49
    assert "1002_spinal_canal_stenosis_l1_l2" not in set(sol["row_id"])


def test_bad_submissions_are_one_line_errors():
    sol = solution_from_labels([1001, 1002], example_b_labels())
    sub = submission_from_probs([1001, 1002], np.full((2, 25, 3), 1 / 3))
    with pytest.raises(Exception, match="missing row_id '1002_"):
        score_terms(sol, sub.iloc[:-1])
    bad = sub.copy()
    bad.loc[3, "severe"] = np.nan
    with pytest.raises(Exception, match="finite"):
        score_terms(sol, bad)
    with pytest.raises(Exception, match="missing column 'severe'"):
        score_terms(sol, sub.drop(columns="severe"))


def test_class_prior_beats_uniform_in_sample():
    rng = np.random.default_rng(0)
    labels = rng.choice(3, size=(200, 25), p=[0.8, 0.15, 0.05])
    ids = list(range(10_000_000_000, 10_000_000_200))  # 64-bit ids survive
    sol = solution_from_labels(ids, labels)
    prior = score_terms(sol, submission_from_probs(ids, np.tile(class_prior(labels), (200, 1, 1))))
    uniform = score_terms(sol, submission_from_probs(ids, np.full((200, 25, 3), 1 / 3)))
    assert prior["score"] < uniform["score"]
    assert np.allclose(class_prior(labels).sum(axis=1), 1)


def test_score_cli_reports_missing_file_in_one_line(tmp_path):
    (tmp_path / "solution.csv").write_text("row_id,normal_mild,moderate,severe\n")
    (tmp_path / "sub.csv").write_text("row_id,normal_mild,moderate,severe\n")
    result = CliRunner().invoke(
        main,
        [
            "score",
            "--solution",
            str(tmp_path / "solution.csv"),
            "--submission",
            str(tmp_path / "sub.csv"),
        ],
    )
    assert result.exit_code == 1
    assert "missing column 'sample_weight'" in result.output
    assert len(result.output.strip().splitlines()) == 1
