"""Competition constants: the 25 targets, their order, series types and severity codes.

Everything that names a condition, a level or a series type derives from these tables, so the
order used by training, the metric and the submission can never drift apart.
"""

from __future__ import annotations

CONDITIONS: tuple[str, ...] = (
    "spinal_canal_stenosis",
    "left_neural_foraminal_narrowing",
    "right_neural_foraminal_narrowing",
    "left_subarticular_stenosis",
    "right_subarticular_stenosis",
)
LEVELS: tuple[str, ...] = ("l1_l2", "l2_l3", "l3_l4", "l4_l5", "l5_s1")

# train.csv column order: condition-major, level-minor (competition.md 1.3).
TARGETS: tuple[str, ...] = tuple(f"{c}_{lv}" for c in CONDITIONS for lv in LEVELS)

SEVERITIES: tuple[str, ...] = ("Normal/Mild", "Moderate", "Severe")
SEVERITY_CODE: dict[str, int] = {s: i for i, s in enumerate(SEVERITIES)}
MISSING_LABEL = -100  # nn.CrossEntropyLoss's default ignore_index
SUBMISSION_COLUMNS: tuple[str, ...] = ("normal_mild", "moderate", "severe")
CLASS_WEIGHTS: tuple[float, ...] = (1.0, 2.0, 4.0)

# Title-cased names used by train_label_coordinates.csv ("Spinal Canal Stenosis", "L1/L2").
CONDITION_TITLES: dict[str, str] = {c: c.replace("_", " ").title() for c in CONDITIONS}
LEVEL_TITLES: dict[str, str] = {lv: lv.upper().replace("_", "/") for lv in LEVELS}

SERIES_TYPES: tuple[str, ...] = ("Sagittal T1", "Sagittal T2/STIR", "Axial T2")
VIEW_OF_SERIES: dict[str, str] = {
    "Sagittal T1": "sagittal",
    "Sagittal T2/STIR": "sagittal",
    "Axial T2": "axial",
}
# Slices per series type in the notebooks' 40-channel stack (10 + 10 + 20).
SLICES_PER_SERIES: dict[str, int] = {"Sagittal T1": 10, "Sagittal T2/STIR": 10, "Axial T2": 20}
# Which series shows which condition (competition.md 1.4, 3.2).
CONDITIONS_OF_SERIES: dict[str, tuple[str, ...]] = {
    "Sagittal T1": CONDITIONS[1:3],
    "Sagittal T2/STIR": CONDITIONS[:1],
    "Axial T2": CONDITIONS[3:],
}


def series_folder(series_type: str) -> str:
    """Cache folder name of a series type: the notebooks replaced '/' with '_'."""
    return series_type.replace("/", "_")


def row_id(study_id: int, target: str) -> str:
    """Submission row id, e.g. '44036939_spinal_canal_stenosis_l1_l2'."""
    return f"{study_id}_{target}"


# train.csv studies the notebooks dropped before their KFold split (seed_pipeline.md); dropping
# them too makes fold k here the notebooks' fold k.
NOTEBOOK_DROPPED_STUDIES: frozenset[int] = frozenset({3008676218, 2780132468, 2492114990})

# Cache layouts (`zoo prepare --layout`): npy, one memory-mapped array per series, or png, one
# file per slice as the notebooks wrote them. Here so the CLI can offer them without cv2.
CACHE_LAYOUTS: tuple[str, ...] = ("npy", "png")
DEFAULT_CACHE_LAYOUT = "npy"
