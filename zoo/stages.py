"""What each kind of model is fed from a run's cache, for training, export parity and bench:
the studies it can use and the datasets of its inputs and targets.

| kind      | input                          | target                                 |
|-----------|--------------------------------|----------------------------------------|
| series    | the cached series stack        | 3 classes per target                   |
| localiser | the cached series stack        | points and slices in [0, 1], NaN: none |
| crops     | crops around stage 1's points  | 3 classes per target                   |

Crop models train on ground-truth points (from the label coordinates, through the reader's
canonical transform) jittered by the stage-1 error measured out of fold, and validate on the
crops of stage 1's out-of-fold points of the same fold: never on ground truth.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from zoo.augment import build_transform
from zoo.crops import (
    Located,
    SeriesView,
    crop_input,
    decode,
    fill_gaps,
    jitter,
    localiser_targets,
    make_crops,
)
from zoo.data import CacheDataset, cache_reader, cache_views, has_input, model_input, stack_channels
from zoo.registry import ModelSpec
from zoo.runinfo import fold_dir

POINTS_FILE = "val_points.npy"  # a localiser's out-of-fold output, beside done.json


def localiser_oof(out: Path, name: str, folds: list[int]) -> Iterator[tuple[int, np.ndarray]]:
    """(study, output) of a localiser's out-of-fold predictions on these folds' validation
    studies; a fold not finished has none."""
    for fold in folds:
        folder = fold_dir(out, name, fold)
        if not (folder / "done.json").is_file():
            continue
        done = json.loads((folder / "done.json").read_text())
        points = np.load(folder / POINTS_FILE)
        for study, output in zip(done["val_ids"], points, strict=True):
            yield int(study), output


@dataclass
class StageData:
    """The cache, labels and earlier stages one fold of one run trains and validates on."""

    out: Path  # the run folder
    fold: int
    cache: Path
    cache_size: int
    usable: dict[int, set[str]]
    coordinates: pd.DataFrame | None  # train_label_coordinates.csv
    specs: dict[str, ModelSpec]  # every model of the variant, by name
    aug: str = "none"
    seed: int = 0
    _meta: dict = field(default_factory=dict)
    _targets: dict = field(default_factory=dict)
    _oof: dict = field(default_factory=dict)

    # -- the cache and the labels --------------------------------------------------------------

    def views(self, study: int, images: str | None = None) -> dict[str, SeriesView]:
        """The study's cached series from meta.json (read once, kept), with the slices of the one
        series type `images` names attached: a crop reads no other series' pixels."""
        usable = self.usable.get(study, set())
        if study not in self._meta:
            self._meta[study] = cache_views(self.cache, study, usable, self.cache_size, False)
        views = self._meta[study]
        if images is None or images not in views:
            return views
        read = cache_reader(self.cache, study, usable, self.cache_size)
        slices = np.stack(read(images, range(views[images].count)))
        return {**views, images: replace(views[images], images=slices)}

    def label_rows(self, study: int, series_type: str) -> pd.DataFrame:
        """The study's label coordinates on the series the cache read for `series_type`."""
        if self.coordinates is None:
            return pd.DataFrame(columns=["condition", "level", "instance_number", "x", "y"])
        meta = json.loads((self.cache / str(study) / "meta.json").read_text())
        ids = [r["series_id"] for r in meta["series"] if r["series_type"] == series_type]
        c = self.coordinates
        return c[(c["study_id"] == study) & c["series_id"].isin(ids)]

    # -- stage 1 -------------------------------------------------------------------------------

    def target(self, spec: ModelSpec, study: int) -> np.ndarray:
        """A localiser's ground truth for a study (NaN where a label is missing)."""
        key = (spec.name, study)
        if key not in self._targets:
            series = spec.plan.series_types[0]
            view = self.views(study).get(series)
            self._targets[key] = (
                np.full(spec.num_outputs, np.nan, np.float32)
                if view is None
                else localiser_targets(spec, view, self.label_rows(study, series))
            )
        return self._targets[key]

    def oof_points(self, localiser: ModelSpec) -> dict[int, np.ndarray]:
        """A localiser's out-of-fold output on this fold's validation studies."""
        if localiser.name not in self._oof:
            self._oof[localiser.name] = dict(localiser_oof(self.out, localiser.name, [self.fold]))
        return self._oof[localiser.name]

    def stage1_error(self, localiser: ModelSpec) -> tuple[float, float]:
        """Robust spread of a localiser's out-of-fold error: (cache pixels, cached slices)."""
        split = 2 * len(localiser.points)
        pixels, slices = [], []
        for study, output in self.oof_points(localiser).items():
            error = np.abs(output - self.target(localiser, study))
            count = self.views(study)[localiser.plan.series_types[0]].count
            pixels += list(error[:split][np.isfinite(error[:split])] * self.cache_size)
            slices += list(error[split:][np.isfinite(error[split:])] * (count - 1))
        spread = [1.4826 * float(np.median(e)) if e else 0.0 for e in (pixels, slices)]
        return spread[0], spread[1]

    # -- stage 2 -------------------------------------------------------------------------------

    def located(self, spec: ModelSpec, study: int, train: bool) -> Located:
        """Where a crop model's points are: ground truth to train, stage 1's OOF to validate."""
        localiser = self.specs[spec.crop.localiser]
        count = self.views(study)[localiser.plan.series_types[0]].count
        if train:
            vector = fill_gaps(localiser, self.target(localiser, study))
        else:
            vector = self.oof_points(localiser)[study]
        return decode(localiser, vector, self.cache_size, count)

    # -- per kind ------------------------------------------------------------------------------

    def has_input(self, spec: ModelSpec, study: int, train: bool) -> bool:
        usable = self.usable.get(study, set())
        if spec.kind == "series":
            return has_input(spec.plan, usable)
        if spec.kind == "localiser":
            if spec.plan.series_types[0] not in usable:
                return False
            return not train or bool(np.isfinite(self.target(spec, study)).any())
        localiser = self.specs[spec.crop.localiser]
        needed = {localiser.plan.series_types[0], spec.crop.source}
        views = self.views(study)
        if not needed <= set(views):
            return False
        if not train and study not in self.oof_points(localiser):
            return False
        if train and fill_gaps(localiser, self.target(localiser, study)) is None:
            return False  # too few ground-truth points to place the crops
        return all(any(p.get("world") for p in views[t].picked) for t in needed)  # mm known

    def dataset(self, spec: ModelSpec, ids: list[int], labels: np.ndarray, train: bool) -> Dataset:
        if spec.kind == "localiser":
            return StackDataset(self, spec, ids)
        if spec.kind == "crops":
            return CropDataset(self, spec, ids, labels, train)
        transform = build_transform(self.aug, spec.plan.size, train=train)
        return CacheDataset(self.cache, ids, labels, spec, transform, self.cache_size, self.usable)


class StackDataset(Dataset):
    """A localiser's items: the series stack and its float target vector."""

    def __init__(self, data: StageData, spec: ModelSpec, ids: list[int]) -> None:
        self.data, self.spec, self.ids = data, spec, ids
        self.epoch_seed: int | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        data, study = self.data, self.ids[i]
        read = cache_reader(data.cache, study, data.usable.get(study, set()), data.cache_size)
        plan = self.spec.plan  # resized straight from the slices, as in the kernel
        x = model_input(stack_channels(plan, read, data.cache_size, plan.size), plan.size)
        return torch.from_numpy(x), torch.from_numpy(data.target(self.spec, study))


class CropDataset(Dataset):
    """A crop model's items: one crop stack per target row, and the labels."""

    def __init__(
        self, data: StageData, spec: ModelSpec, ids: list[int], labels: np.ndarray, train: bool
    ) -> None:
        self.data, self.spec, self.ids, self.train = data, spec, ids, train
        self.labels = labels[:, spec.target_index]
        self.epoch_seed: int | None = None
        self.spread = data.stage1_error(data.specs[spec.crop.localiser]) if train else (0, 0)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        study = self.ids[i]
        located = self.data.located(self.spec, study, self.train)
        if self.train:  # stage-1-sized mistakes, so stage 2 learns to tolerate them
            rng = np.random.default_rng([self.data.seed, self.epoch_seed or 0, study % 2**32])
            located = jitter(located, rng, *self.spread)
        crops = make_crops(self.spec, self.data.views(study, self.spec.crop.source), located)
        return torch.from_numpy(crop_input(crops)), torch.from_numpy(self.labels[i])
