"""One series type of one study -> its selected slices as canonical uint8 images.

The single code path from DICOM files to model channels: `zoo prepare` writes its output as
PNGs for training, and `zoo predict` feeds it straight to the models, so the training cache
and the test-time reader cannot drift apart. It never raises on data: a series that cannot be
used comes back with a status and the reason, and the caller leaves it out (training) or falls
back to the prior (predict).

| status   | meaning                                                      | model input      |
|----------|--------------------------------------------------------------|------------------|
| ok       | every picked slice decoded                                   | the images       |
| partial  | some files unreadable (skipped) or picked slices black       | the images       |
| missing  | no series of this type in the study                          | none             |
| unusable | fewer than MIN_USABLE_SLICES slices of the view              | none             |
| failed   | no picked slice could be decoded                             | none             |
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zoo.constants import SLICES_PER_SERIES, VIEW_OF_SERIES
from zoo.dicom import (
    DecoderMissing,
    Series,
    SliceHeader,
    decode_frames,
    file_label,
    read_series,
    to_uint8,
)
from zoo.errors import ZooError
from zoo.geometry import cache_frame, canonical_inplane, to_cache
from zoo.policies import select_slices

log = logging.getLogger(__name__)
MIN_USABLE_SLICES = 3  # fewer: the series is treated as missing (README, "Real-world series")
USABLE = ("ok", "partial")


@dataclass
class SeriesImages:
    """The picked slices of one series type, what was picked from where, and what was not."""

    series_type: str
    images: list[np.ndarray] = field(default_factory=list)  # empty unless status is usable
    status: str = "missing"
    problem: str = ""  # why a series is missing, unusable or failed
    series_id: int = -1
    n_slices: int = 0  # usable slices of the view
    ordered_by: str = ""
    planes: int = 0
    picked: list[dict] = field(default_factory=list)  # per image: file, position, transform, world
    order: list[int] = field(default_factory=list)  # instance numbers in anatomical order
    skipped: list[str] = field(default_factory=list)  # "file: reason", unreadable or undecodable
    dropped: list[str] = field(default_factory=list)  # "file: reason", not of the view
    notes: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.status in USABLE

    @property
    def instance_numbers(self) -> list[int]:
        return [p["instance"] for p in self.picked]

    def summary(self) -> str:
        """One phrase for the per-study line: what the model gets from this series."""
        name = self.series_type + (f" series {self.series_id}" if self.series_id != -1 else "")
        if not self.usable:
            return f"{name} {self.status} ({self.problem})"
        extras = [f"{self.planes} blocks"] if self.planes > 1 else []
        extras += [f"{len(self.dropped)} dropped"] if self.dropped else []
        extras += [f"{len(self.skipped)} unreadable"] if self.skipped else []
        turned = {p["transform"] for p in self.picked} - {"canonical"}
        extras += [f"{', '.join(sorted(turned))} -> canonical"] if turned else []
        return f"{name} {self.status}" + (f" ({'; '.join(extras)})" if extras else "")


def choose_series(study_dir: Path, series_ids: list[int], view: str) -> tuple[int, Series] | None:
    """Of several series with one description, the one with the most usable slices."""
    best = None
    for series_id in series_ids:
        folder = study_dir / str(series_id)
        if not folder.is_dir():
            log.warning(
                "study %s series %s: folder missing (%s)", study_dir.name, series_id, folder
            )
            continue
        series = read_series(folder, view)
        if best is None or len(series) > len(best[1]):
            best = (series_id, series)
    return best


def decode_selected(
    series: Series, positions: list[int], size: int, view: str
) -> tuple[list[np.ndarray], list[dict], list[str]]:
    """Decode the picked slices in the view's canonical orientation.

    A slice that fails to decode becomes a black channel (logged); a missing decoder fails the
    whole series (raises DecoderMissing), since every file of it would fail the same way.
    """
    images, picked, failed = [], [], []
    decoded: dict[int, np.ndarray] = {}
    frames_of: dict[Path, np.ndarray] = {}  # a multi-frame file is decoded once
    for pos in positions:
        header = series.slices[pos]
        transform = canonical_inplane(header.orientation, view)
        if pos not in decoded:
            try:
                if header.path not in frames_of:
                    frames_of[header.path] = decode_frames(header.path)
                pixels = frames_of[header.path][header.frame or 0]
                decoded[pos] = to_uint8(transform.apply(pixels), size)
            except DecoderMissing:
                raise
            except Exception as err:  # noqa: BLE001 - any decoder failure is one bad file
                reason = str(err).splitlines()[0] if str(err) else type(err).__name__
                log.warning(
                    "%s: cannot decode (%s): black channel", file_label(header.path), reason
                )
                failed.append(f"{header.path}: {reason}")
                decoded[pos] = np.zeros((size, size), np.uint8)
        images.append(decoded[pos])
        picked.append(
            {
                "file": header.path.name,
                "instance": header.instance_number,
                "frame": header.frame,
                "position": pos,  # in the series' anatomical order
                "shape": list(header.shape),
                "transform": transform.describe(),
                "inplane": [transform.transpose, transform.flip_rows, transform.flip_cols],
                "world": cache_frame(
                    header.position,
                    header.orientation,
                    header.spacing,
                    header.shape,
                    transform,
                    size,
                ),
            }
        )
    return images, picked, failed


def read_series_images(
    study_dir: Path,
    series_type: str,
    series_ids: list[int],
    policy: str,
    size: int,
    labelled: dict[int, list[int]] | None = None,
) -> SeriesImages:
    """The policy's slices of the best series of one type, as size x size canonical uint8
    images; never raises on data (see the status table above)."""
    view, wanted = VIEW_OF_SERIES[series_type], SLICES_PER_SERIES[series_type]
    result = SeriesImages(series_type)
    try:
        chosen = choose_series(study_dir, series_ids, view)
    except ZooError as err:
        return _give_up(result, "failed", str(err), study_dir)
    if chosen is None:
        result.problem = "no series of this type"
        return result
    series_id, series = chosen
    result.series_id, result.n_slices, result.planes = series_id, len(series), series.planes
    result.ordered_by = series.ordered_by
    result.order = [s.instance_number for s in series.slices]
    result.skipped, result.dropped = list(series.skipped), list(series.dropped)
    result.notes = series.notes + series.info
    if len(series) < MIN_USABLE_SLICES:
        reason = f"{len(series)} usable slice(s) of the {view} view, fewer than {MIN_USABLE_SLICES}"
        return _give_up(result, "unusable", reason, study_dir)
    wanted_instances = set((labelled or {}).get(series_id, []))
    marked = [k for k, s in enumerate(series.slices) if s.instance_number in wanted_instances]
    positions = select_slices(policy, len(series), wanted, view, marked)
    try:
        images, result.picked, failed = decode_selected(series, positions, size, view)
    except DecoderMissing as err:
        return _give_up(result, "failed", str(err), study_dir)
    result.skipped += failed
    if len(failed) == len(positions):
        return _give_up(result, "failed", "no picked slice could be decoded", study_dir)
    result.images = images
    result.status = "partial" if result.skipped else "ok"
    return result


def label_point(
    header: SliceHeader, view: str, x: float, y: float, size: int
) -> tuple[float, float]:
    """A train_label_coordinates.csv point (x, y: pixels of the stored file) in the cache image:
    through the slice's canonical transform, then the resize to size x size (pixel centres
    map as cv2.resize maps them)."""
    return to_cache(canonical_inplane(header.orientation, view), header.shape, x, y, size)


def _give_up(result: SeriesImages, status: str, reason: str, study_dir: Path) -> SeriesImages:
    """A series the model cannot use: logged once, with the study and series named."""
    result.status, result.problem, result.images = status, reason, []
    series = f"series {result.series_id}" if result.series_id != -1 else "series"
    log.warning(
        "study %s %s (%s): %s, %s: treated as missing",
        study_dir.name,
        series,
        result.series_type,
        status,
        reason,
    )
    return result
