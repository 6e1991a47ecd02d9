"""The competition layout reader: typed ids, label encoding, one-line errors."""

import numpy as np
import pandas as pd
import pytest

from zoo.competition import encode_labels, load_competition, read_csv
from zoo.constants import TARGETS
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
