"""Where things are when the user does not say: the data, the runs and the cache.

Conventions users of Ultralytics and nanoGPT already know, so `zoo train edgenext_split`,
`zoo export --fmt onnx` and `zoo bench` run with nothing else typed:

- data: --data, else $ZOO_DATA, else the Kaggle mount, else ./rsna-2024-lumbar-spine-degenerative-
  classification, else ./data; the first that holds the split's CSV wins and is named;
- runs: `zoo train VARIANT` writes runs/VARIANT-N (N increasing) and points runs/latest (a
  one-line text file, so it works on every OS) at it; commands taking a RUN use runs/latest;
- cache: next to the runs, named by slice policy, size and the data it came from, so a second
  run on the same data reuses it.
An explicit path always wins.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path

from zoo.constants import DEFAULT_CACHE_LAYOUT
from zoo.errors import ZooError
from zoo.io import atomic_write

log = logging.getLogger(__name__)
COMPETITION = "rsna-2024-lumbar-spine-degenerative-classification"
KAGGLE_DATA = Path("/kaggle/input") / COMPETITION
RUNS = Path("runs")
LATEST = "latest"
# The file that shows a folder holds the split's data.
MARKER = {"train": "train.csv", "test": "test_series_descriptions.csv"}


def data_candidates() -> list[tuple[Path, str]]:
    """(folder, where it comes from), in the order they are tried."""
    places = []
    if os.environ.get("ZOO_DATA"):
        places.append((Path(os.environ["ZOO_DATA"]), "$ZOO_DATA"))
    places += [
        (KAGGLE_DATA, "the Kaggle mount"),
        (Path(COMPETITION), "the working folder"),
        (Path("data"), "the working folder"),
    ]
    return places


def find_data(given: Path | None, split: str = "train") -> Path:
    """--data if given, else the first conventional place holding the split's CSV."""
    if given is not None:
        return Path(given)
    marker = MARKER[split]
    for folder, origin in data_candidates():
        if (folder / marker).is_file():
            print(f"data: {_shown(folder)} ({origin})")
            return folder
    looked = ", ".join(_shown(folder) for folder, _ in data_candidates())
    raise ZooError(
        f"--data not given and no {marker} found in {looked}; pass --data DIR or set "
        "ZOO_DATA=DIR (the folder `kaggle competitions download -c "
        f"{COMPETITION}` unzips to)"
    )


def _shown(folder: Path) -> str:
    return str(folder) if folder.is_absolute() else f"./{folder}"


def new_run_dir(variant: str, runs: Path = RUNS) -> Path:
    """runs/VARIANT-N with N one more than any earlier run of the variant; created."""
    runs.mkdir(parents=True, exist_ok=True)
    pattern = re.compile(rf"{re.escape(variant)}-(\d+)")
    taken = [int(m.group(1)) for p in runs.iterdir() if (m := pattern.fullmatch(p.name))]
    n = max(taken, default=0) + 1
    while True:  # another process may take a number between the listing and mkdir
        run = runs / f"{variant}-{n}"
        try:
            run.mkdir()
            return run
        except FileExistsError:
            n += 1


def point_latest(run: Path, runs: Path = RUNS) -> None:
    """runs/latest names `run` (a text file: links need privileges on Windows)."""
    atomic_write(runs / LATEST, lambda p: p.write_text(Path(run).name + "\n"))


def latest_run(runs: Path = RUNS) -> Path:
    """The run runs/latest names; a clear error when there is none."""
    pointer = runs / LATEST
    if not pointer.is_file():
        raise ZooError(
            f"RUN not given and no {pointer}: train first (zoo train VARIANT) or pass RUN"
        )
    run = runs / pointer.read_text().strip()
    if not run.is_dir():
        raise ZooError(f"{pointer} names {run}, which does not exist; pass RUN")
    return run


def resolve_run(given: Path | None) -> Path:
    """RUN if given, else runs/latest, saying which."""
    if given is not None:
        if not Path(given).is_dir():
            raise ZooError(f"RUN: folder not found: {given}")
        return Path(given)
    run = latest_run()
    print(f"run: {run} (runs/{LATEST})")
    return run


def default_cache(
    runs: Path, data: Path, policy: str, size: int, layout: str = DEFAULT_CACHE_LAYOUT
) -> Path:
    """The cache beside the runs for this data, policy, size and layout: shared by every run
    on them (PNG caches keep the name they had before there were layouts)."""
    source = hashlib.sha256(str(Path(data).resolve()).encode()).hexdigest()[:8]
    kind = "" if layout == "png" else f"-{layout}"
    return Path(runs) / f"cache-{policy}-{size}px{kind}-{source}"
