"""Reader for the competition folder layout (competition.md 1.2).

    DATA/train.csv                          study_id + 25 targets
    DATA/train_label_coordinates.csv        study_id, series_id, instance_number, condition,
                                            level, x, y
    DATA/{train,test}_series_descriptions.csv
    DATA/sample_submission.csv
    DATA/{train,test}_images/<study>/<series>/<instance>.dcm

Ids are read as int64: real study and series ids exceed 2**31.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from zoo.constants import MISSING_LABEL, SERIES_TYPES, SEVERITY_CODE, TARGETS
from zoo.errors import ZooError

log = logging.getLogger(__name__)
ID_COLUMNS = ("study_id", "series_id")
REQUIRED_COLUMNS: dict[str, tuple[str, ...]] = {
    "train.csv": ("study_id", *TARGETS),
    "train_label_coordinates.csv": (
        "study_id",
        "series_id",
        "instance_number",
        "condition",
        "level",
        "x",
        "y",
    ),
    "train_series_descriptions.csv": ("study_id", "series_id", "series_description"),
    "test_series_descriptions.csv": ("study_id", "series_id", "series_description"),
    "sample_submission.csv": ("row_id", "normal_mild", "moderate", "severe"),
}


def read_csv(path: Path, required: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Read a competition CSV; a missing file or column is a one-line ZooError naming it."""
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"missing file: {path}")
    required = required if required is not None else REQUIRED_COLUMNS.get(path.name, ())
    dtypes = {c: "int64" for c in (*ID_COLUMNS, "instance_number") if c in required}
    try:
        df = pd.read_csv(path, dtype={c: str for c in TARGETS})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ZooError(f"{path}: not a readable CSV ({err})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ZooError(f"{path}: missing column {missing[0]!r}")
    try:
        return df.astype(dtypes)
    except (ValueError, TypeError) as err:
        raise ZooError(f"{path}: id columns must be integers ({err})") from None


_CANONICAL_DESCRIPTIONS = {" ".join(t.split()).casefold(): t for t in SERIES_TYPES}


def normalise_description(text: object) -> str | None:
    """The series type a description names, ignoring case and surrounding or repeated spaces
    ('sagittal t2/stir ' is 'Sagittal T2/STIR'); None for anything else."""
    if not isinstance(text, str):
        return None
    return _CANONICAL_DESCRIPTIONS.get(re.sub(r"\s+", " ", text).strip().casefold())


def _integer_id(text: str | None) -> int:
    """An id cell: digits, or digits with a zero fraction (a spreadsheet's 123.0)."""
    match = re.fullmatch(r"\s*(\d+)(?:\.0*)?\s*", text or "")
    if match is None:
        raise ValueError(text)
    return int(match.group(1))


def read_series_rows(path: Path) -> list[tuple[int, int, str]]:
    """(study_id, series_id, series type) of a series-descriptions CSV, row by row.

    For the submission path: a bad row (non-integer id, unknown description) is skipped with a
    warning naming its line, never the whole file. A missing file or column is a ZooError.
    """
    path = Path(path)
    if not path.is_file():
        raise ZooError(f"missing file: {path}")
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS[path.name] if c not in (reader.fieldnames or [])]
        if missing:
            raise ZooError(f"{path}: missing column {missing[0]!r}")
        rows = []
        for line, row in enumerate(reader, start=2):
            series_type = normalise_description(row["series_description"])
            try:
                ids = _integer_id(row["study_id"]), _integer_id(row["series_id"])
            except (TypeError, ValueError):
                log.warning(
                    "%s line %d: ids %r, %r are not integers: row skipped",
                    path,
                    line,
                    row["study_id"],
                    row["series_id"],
                )
                continue
            if series_type is None:
                log.warning(
                    "%s line %d: study %s series %s: unknown series description %r ignored",
                    path,
                    line,
                    *ids,
                    row["series_description"],
                )
                continue
            rows.append((*ids, series_type))
    return rows


def encode_labels(train: pd.DataFrame) -> np.ndarray:
    """(studies, 25) int64 labels: Normal/Mild 0, Moderate 1, Severe 2, missing -100."""
    labels = np.full((len(train), len(TARGETS)), MISSING_LABEL, dtype=np.int64)
    for j, target in enumerate(TARGETS):
        values = train[target]
        unknown = set(values.dropna()) - set(SEVERITY_CODE)
        if unknown:
            raise ZooError(f"train.csv: column {target!r} has unknown value {min(unknown)!r}")
        known = values.notna().to_numpy()
        labels[known, j] = values[known].map(SEVERITY_CODE).to_numpy()
    return labels


@dataclass
class CompetitionData:
    """The CSVs of one split of a competition folder, validated and typed."""

    root: Path
    split: str  # "train" or "test"
    series: pd.DataFrame  # study_id, series_id, series_description
    labels: pd.DataFrame | None = None  # train.csv (train split only)
    coordinates: pd.DataFrame | None = None  # train_label_coordinates.csv, when present

    @property
    def images_dir(self) -> Path:
        return self.root / f"{self.split}_images"

    @property
    def study_ids(self) -> list[int]:
        """Studies in file order: train.csv rows for train, first appearance for test."""
        if self.labels is not None:
            return [int(s) for s in self.labels["study_id"]]
        return [int(s) for s in self.series["study_id"].drop_duplicates()]

    def series_of(self, study_id: int) -> dict[str, list[int]]:
        """Series ids of one study grouped by description, in CSV order."""
        rows = self.series[self.series["study_id"] == study_id]
        return {
            desc: [int(s) for s in rows.loc[rows["series_description"] == desc, "series_id"]]
            for desc in SERIES_TYPES
        }

    def labelled_instances(self, study_id: int, series_id: int) -> list[int]:
        """Instance numbers of one series that carry a label coordinate."""
        if self.coordinates is None:
            return []
        c = self.coordinates
        rows = c[(c["study_id"] == study_id) & (c["series_id"] == series_id)]
        return sorted({int(i) for i in rows["instance_number"]})


def load_competition(root: Path, split: str = "train") -> CompetitionData:
    """Read and validate the CSVs of `split` ("train" or "test") in a competition folder."""
    root = Path(root)
    if split not in ("train", "test"):
        raise ZooError(f"--split must be 'train' or 'test', not {split!r}")
    if not root.is_dir():
        raise ZooError(f"data folder not found: {root}")
    path = root / f"{split}_series_descriptions.csv"
    series = read_csv(path)
    known = series["series_description"].map(normalise_description)
    for row in series[known.isna()].itertuples():
        # Unknown descriptions are kept out of the model inputs, never fatal.
        log.warning(
            "%s: study %s series %s: unknown series description %r ignored",
            path,
            row.study_id,
            row.series_id,
            row.series_description,
        )
    series = series.assign(series_description=known)[known.notna()]
    data = CompetitionData(root=root, split=split, series=series)
    if split == "train":
        data.labels = read_csv(root / "train.csv")
        encode_labels(data.labels)  # validate values early, with the column named
        coords = root / "train_label_coordinates.csv"
        data.coordinates = read_csv(coords) if coords.is_file() else None
    if not data.images_dir.is_dir():
        raise ZooError(f"missing folder: {data.images_dir}")
    return data
