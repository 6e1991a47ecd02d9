"""The competition layout reader: typed ids, label encoding, one-line errors."""

import numpy as np
import pandas as pd
import pytest

from zoo.competition import (
    encode_labels,
    load_competition,
    normalise_description,
    read_csv,
    read_series_rows,
)
from zoo.constants import NOTEBOOK_DROPPED_STUDIES, TARGETS
from zoo.errors import ZooError


def write_minimal(root, study_ids=(3_000_000_001,)):
    (root / "train_images").mkdir(parents=True)
    labels = pd.DataFrame({"study_id": list(study_ids)})
    for t in TARGETS:
        labels[t] = "Normal/Mild"
    labels.loc[0, TARGETS[3]] = "Severe"
    labels.loc[0, TARGETS[7]] = np.nan
    labels.to_csv(root / "train.csv", index=False)
    pd.DataFrame(
        {
            "study_id": [study_ids[0]] * 2,
            "series_id": [4_000_000_001, 4_000_000_002],
            "series_description": ["Sagittal T1", "Coronal T2"],
        }
    ).to_csv(root / "train_series_descriptions.csv", index=False)


def test_labels_are_encoded_in_competition_order(tmp_path):
    write_minimal(tmp_path)
    data = load_competition(tmp_path, "train")
    labels = encode_labels(data.labels)
    assert labels.shape == (1, 25) and labels.dtype == np.int64
    assert labels[0, 3] == 2 and labels[0, 7] == -100 and labels[0, 0] == 0
    assert data.study_ids == [3_000_000_001]  # above 2**31, still exact


def test_unknown_series_description_is_ignored_not_fatal(tmp_path):
    write_minimal(tmp_path)
    series = load_competition(tmp_path, "train").series_of(3_000_000_001)
    assert series == {"Sagittal T1": [4_000_000_001], "Sagittal T2/STIR": [], "Axial T2": []}


def test_missing_file_is_named(tmp_path):
    write_minimal(tmp_path)
    (tmp_path / "train.csv").unlink()
    with pytest.raises(ZooError, match=r"missing file: .*train\.csv"):
        load_competition(tmp_path, "train")


def test_missing_column_is_named(tmp_path):
    write_minimal(tmp_path)
    df = pd.read_csv(tmp_path / "train.csv").drop(columns=TARGETS[-1])
    df.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(ZooError, match=f"missing column '{TARGETS[-1]}'"):
        load_competition(tmp_path, "train")


def test_unknown_label_value_names_the_column(tmp_path):
    write_minimal(tmp_path)
    df = pd.read_csv(tmp_path / "train.csv")
    df.loc[0, TARGETS[4]] = "Mild"
    df.to_csv(tmp_path / "train.csv", index=False)
    with pytest.raises(ZooError, match=f"column '{TARGETS[4]}' has unknown value 'Mild'"):
        load_competition(tmp_path, "train")


def test_non_integer_ids_are_a_clear_error(tmp_path):
    (tmp_path / "x.csv").write_text("study_id,series_id,series_description\nabc,1,Axial T2\n")
    with pytest.raises(ZooError, match="id columns must be integers"):
        read_csv(tmp_path / "x.csv", ("study_id", "series_id", "series_description"))


def test_missing_images_folder_is_named(tmp_path):
    write_minimal(tmp_path)
    (tmp_path / "train_images").rmdir()
    with pytest.raises(ZooError, match="missing folder: .*train_images"):
        load_competition(tmp_path, "train")


def test_descriptions_match_whatever_their_case_and_spaces(tmp_path, caplog):
    write_minimal(tmp_path)
    series = pd.read_csv(tmp_path / "train_series_descriptions.csv")
    series.loc[1, "series_description"] = "  axial   T2 "
    series.to_csv(tmp_path / "train_series_descriptions.csv", index=False)
    assert normalise_description("Sagittal T2/STIR ") == "Sagittal T2/STIR"
    assert normalise_description("Coronal T2") is None and normalise_description(None) is None
    found = load_competition(tmp_path, "train").series_of(3_000_000_001)
    assert found["Axial T2"] == [4_000_000_002]


def test_test_csv_rows_are_read_one_by_one(tmp_path, caplog):
    path = tmp_path / "test_series_descriptions.csv"
    path.write_text(
        "study_id,series_id,series_description\n"
        "44036939,2828203845,Sagittal T1\n"
        ",3481971518,Axial T2\n"  # line 3: no study id
        "44036939,3844393089,sagittal t2/stir \n"
        "44036939,12.5,Axial T2\n"  # line 5: not an integer
        "44036939,3481971518.0,Axial T2\n"  # a spreadsheet's float: still the id
        "44036939,99,Coronal T2\n"
    )
    rows = read_series_rows(path)
    assert rows == [
        (44036939, 2828203845, "Sagittal T1"),
        (44036939, 3844393089, "Sagittal T2/STIR"),
        (44036939, 3481971518, "Axial T2"),
    ]
    assert "line 3: ids" in caplog.text and "line 5: ids" in caplog.text
    assert "line 7: study 44036939 series 99: unknown series description 'Coronal T2'" in (
        caplog.text
    )


def test_the_notebooks_three_studies_are_dropped_before_the_fold_split():
    from train.folds import kfold
    from train.run import training_studies

    ids = list(range(1000, 1000 + 1972))
    for position, study in zip((5, 700, 1900), sorted(NOTEBOOK_DROPPED_STUDIES), strict=True):
        ids.insert(position, study)
    labels = pd.DataFrame({"study_id": ids, **{t: "Normal/Mild" for t in TARGETS}})
    kept, encoded = training_studies(labels)
    assert kept == list(range(1000, 1000 + 1972)) and encoded.shape == (1972, 25)
    assert [len(f) for f in kfold(len(kept))] == [395, 395, 394, 394, 394]  # the notebooks'
