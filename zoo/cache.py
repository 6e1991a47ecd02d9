"""The cache written by `zoo prepare` and read by training, export and parity: its layout,
its settings (cache.json) and which series of each study it holds, all in one place.

    CACHE/cache.json                          format, size, policy, split, layout: must match
    CACHE/index.csv                           one row per study and series type, with status
    CACHE/<study>/meta.json                   what was picked from which files, and why
    CACHE/<study>/{Sagittal T1|Sagittal T2_STIR|Axial T2}/slices.npy    layout npy (default):
                                              one uint8 array (slices, size, size), anatomical order
    CACHE/<study>/{...}/NN.png                layout png: the notebooks' layout, 1-based

Both layouts are lossless, so a model sees the same pixels from either. npy is the default:
writing an array costs no encoding (prepare is about 1.8x the notebooks' loop with one worker,
where PNG encoding is over half of its time) and it is read memory-mapped with no decoding
(several times the PNG reader's samples/s, what a GPU needs: benchmarks/bench_train.py), at
about twice the disk of PNGs. A series type has images only when its status is usable
(`zoo.reader.USABLE`); training leaves a study out of a model whose series it lacks, as
`zoo predict` gives such a study the prior.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from zoo.constants import DEFAULT_CACHE_LAYOUT, series_folder
from zoo.errors import ZooError
from zoo.io import write_json
from zoo.reader import USABLE

# 2: canonical in-plane orientation, tilted blocks kept, odd files handled; 3: each picked
# slice's position in its series and its world frame (the two-stage crops need them).
CACHE_FORMAT = 3
INDEX_COLUMNS = (
    "study_id",
    "series_type",
    "series_id",
    "status",
    "problem",
    "n_slices",
    "planes",
    "dropped",
    "skipped",
    "ordered_by",
    "instance_numbers",
    "transforms",
)


SERIES_ARRAY = "slices.npy"


@dataclass(frozen=True)
class CacheSettings:
    size: int
    policy: str
    split: str = "train"
    format: int = CACHE_FORMAT
    layout: str = DEFAULT_CACHE_LAYOUT


def read_settings(cache: Path) -> CacheSettings:
    """cache.json of a prepared cache; a clear error when there is none or it is too old."""
    path = Path(cache) / "cache.json"
    try:
        saved = json.loads(path.read_text())
        settings = CacheSettings(
            int(saved["size"]),
            str(saved["policy"]),
            str(saved["split"]),
            int(saved["format"]),
            str(saved.get("layout", "png")),  # caches made before layouts were PNG
        )
    except FileNotFoundError:
        raise ZooError(
            f"{cache} is not a prepared cache (no cache.json); run `zoo prepare`"
        ) from None
    except (OSError, KeyError, TypeError, ValueError) as err:
        raise ZooError(f"{path}: unreadable cache settings ({err!r})") from None
    if settings.format != CACHE_FORMAT:
        raise ZooError(
            f"{path}: cache format {settings.format}, this zoo reads format {CACHE_FORMAT} "
            "(canonical orientation); prepare a new cache or delete this one"
        )
    return settings


def prepared_settings(cache: Path) -> CacheSettings | None:
    """The settings of a cache that exists, or None where none was prepared yet."""
    return read_settings(cache) if (Path(cache) / "cache.json").is_file() else None


def claim_settings(cache: Path, settings: CacheSettings) -> None:
    """Write cache.json, or check that an existing cache was made with the same settings."""
    path = Path(cache) / "cache.json"
    if path.is_file():
        old = asdict(read_settings(cache))
        for key, value in asdict(settings).items():
            if old.get(key) != value:
                raise ZooError(
                    f"{path}: cache was made with {key}={old.get(key)!r}, not {value!r}; "
                    "use another --out or delete it"
                )
    write_json(path, asdict(settings))


def series_dir(cache: Path, study_id: int, series_type: str) -> Path:
    return Path(cache) / str(study_id) / series_folder(series_type)


def slice_png(folder: Path, k: int) -> Path:
    """The k-th (0-based) picked slice of a series folder: 01.png, 02.png, ..."""
    return folder / f"{k + 1:02d}.png"


def write_series(folder: Path, images: list[np.ndarray], layout: str) -> None:
    """One series' picked slices, in anatomical order, in the cache's layout."""
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "npy":
        np.save(folder / SERIES_ARRAY, np.stack(images))
        return
    for k, image in enumerate(images):  # OpenCV's default level: its fastest (bench_prepare)
        cv2.imwrite(str(slice_png(folder, k)), image)


def read_series(folder: Path, picks: Sequence[int]) -> list[np.ndarray | None]:
    """The picked slices of one cached series, whichever layout wrote them; None for a slice
    that cannot be read."""
    array = folder / SERIES_ARRAY
    if array.is_file():
        stack = np.load(array, mmap_mode="r")
        return [np.array(stack[k]) if 0 <= k < len(stack) else None for k in picks]
    return [cv2.imread(str(slice_png(folder, k)), cv2.IMREAD_GRAYSCALE) for k in picks]


def read_meta(cache: Path, study_id: int) -> dict | None:
    path = Path(cache) / str(study_id) / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else None


def collect_index(cache: Path, study_ids: list[int]) -> pd.DataFrame:
    """index.csv's rows from every finished study's meta.json."""
    rows = []
    for study_id in study_ids:
        meta = read_meta(cache, study_id)
        rows += meta["series"] if meta else []
    return pd.DataFrame([{c: r.get(c) for c in INDEX_COLUMNS} for r in rows], columns=INDEX_COLUMNS)


def usable_series(cache: Path) -> dict[int, set[str]]:
    """Series types each study has images of; a study absent from index.csv has none."""
    path = Path(cache) / "index.csv"
    if not path.is_file():
        raise ZooError(f"{path} missing: the cache was not finished; run `zoo prepare` again")
    index = pd.read_csv(path)
    usable: dict[int, set[str]] = {}
    for row in index.itertuples():
        held = usable.setdefault(int(row.study_id), set())
        if row.status in USABLE:
            held.add(str(row.series_type))
    return usable
