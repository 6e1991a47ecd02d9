"""One series type of one study -> its selected slices as uint8 images.

The single code path from DICOM files to model channels: `zoo prepare` writes its output as
PNGs for training, and `zoo predict` feeds it straight to the models, so the training cache
and the test-time reader cannot drift apart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zoo.constants import SLICES_PER_SERIES, VIEW_OF_SERIES
from zoo.dicom import Series, decode_slice, read_series, to_uint8
from zoo.errors import ZooError
from zoo.policies import select_slices

log = logging.getLogger(__name__)


@dataclass
class SeriesImages:
    """The picked slices of one series type, and what was picked from where."""

    series_type: str
    images: list[np.ndarray] = field(default_factory=list)  # empty when the series is missing
    series_id: int = -1
    n_slices: int = 0
    ordered_by: str = ""
    instance_numbers: list[int] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "file: reason" of unreadable files

    @property
    def status(self) -> str:
        if not self.images:
            return "missing"
        return "partial" if self.skipped else "ok"


def choose_series(study_dir: Path, series_ids: list[int], view: str) -> tuple[int, Series] | None:
    """Of several series with one description, the one with the most readable slices."""
    best = None
    for series_id in series_ids:
        folder = study_dir / str(series_id)
        if not folder.is_dir():
            log.warning("series folder missing: %s", folder)
            continue
        series = read_series(folder, view)
        if best is None or len(series) > len(best[1]):
            best = (series_id, series)
    return best


def decode_selected(
    series: Series, positions: list[int], size: int
) -> tuple[list[np.ndarray], list[str]]:
    """Decode only the picked slices; a file that fails to decode becomes a black channel."""
    images, failed, decoded = [], [], {}
    for pos in positions:
        if pos not in decoded:
            path = series.slices[pos].path
            try:
                decoded[pos] = to_uint8(decode_slice(path), size)
            except ZooError:
                raise
            except Exception as err:  # noqa: BLE001 - any decoder failure is one bad file
                log.warning("cannot decode %s (%s): black channel", path, err)
                failed.append(f"{path}: {type(err).__name__}: {err}")
                decoded[pos] = np.zeros((size, size), np.uint8)
        images.append(decoded[pos])
    return images, failed


def read_series_images(
    study_dir: Path,
    series_type: str,
    series_ids: list[int],
    policy: str,
    size: int,
    labelled: dict[int, list[int]] | None = None,
) -> SeriesImages:
    """The policy's slices of the best series of one type, as size x size uint8 images."""
    view, wanted = VIEW_OF_SERIES[series_type], SLICES_PER_SERIES[series_type]
    result = SeriesImages(series_type)
    chosen = choose_series(study_dir, series_ids, view)
    if chosen is None:
        return result
    series_id, series = chosen
    result.series_id, result.n_slices, result.ordered_by = series_id, len(series), series.ordered_by
    result.skipped += series.skipped
    if not len(series):
        return result
    instances = [s.instance_number for s in series.slices]
    marked = [instances.index(i) for i in (labelled or {}).get(series_id, []) if i in instances]
    positions = select_slices(policy, len(series), wanted, view, marked)
    result.images, failed = decode_selected(series, positions, size)
    result.skipped += failed
    result.instance_numbers = [instances[p] for p in positions]
    return result
