"""Model inputs: one H x W x C uint8 stack per study and model, built by `stack_channels` for
training (from the PNG cache) and for `zoo predict` (from DICOM) alike.

Channels follow the model's SeriesPlan: series types in plan order, slices in anatomical order.
A series type the study lacks stays black in a model that stacks several types (it becomes -1
after normalisation, as in the notebooks); a model with no series at all has no input, and the
study is left out of that model's training and validation, as `zoo predict` gives it the prior.
A plan may take fewer slices than the cache holds (itk8191_b3 takes 10 of the 20 axial): they
are re-stepped with the itk8191 rule, as that notebook did at load time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.cache import read_meta, read_series, series_dir
from zoo.constants import SLICES_PER_SERIES
from zoo.crops import SeriesView
from zoo.errors import ZooError
from zoo.policies import select_itk8191
from zoo.registry import ModelSpec, SeriesPlan

log = logging.getLogger(__name__)

# (series type, positions among the cached slices) -> those images, or None if it has none.
SeriesReader = Callable[[str, Sequence[int]], list[np.ndarray] | None]


def channel_picks(series_type: str, wanted: int) -> Sequence[int]:
    """Which of the cache's slices of a series type a plan takes, in anatomical order."""
    held = SLICES_PER_SERIES[series_type]
    return range(held) if wanted == held else select_itk8191(held, wanted)


def stack_channels(
    plan: SeriesPlan, read: SeriesReader, size: int, out_size: int | None = None
) -> np.ndarray | None:
    """The plan's channels, H x W x C uint8; None when the study has none of its series.

    `out_size`: resized by `resize_slices`, straight from the slices, which skips building the
    full-size stack (the same pixels as resizing that stack, in about half the time)."""
    channels, present = [], False
    for series_type, wanted in zip(plan.series_types, plan.slices, strict=True):
        picks = channel_picks(series_type, wanted)
        images = read(series_type, picks)
        present = present or images is not None
        channels += (
            images if images is not None else [np.zeros((size, size), np.uint8)] * len(picks)
        )
    if not present:
        return None
    if out_size is not None and out_size != size:
        return resize_slices(channels, out_size)
    return np.stack(channels, axis=-1)


def resize_slices(slices: list[np.ndarray], size: int) -> np.ndarray:
    """Cubic resize of the stack of these slices (H x W x C) exactly as training's
    albumentations resizes it: in chunks of 4 channels (a last chunk of 2 one channel at a
    time); cv2 on all channels at once differs by one grey level on some pixels, and so does
    one channel at a time."""
    if len(slices) <= 4:
        stack = np.stack(slices, axis=-1)
        return cv2.resize(stack, (size, size), interpolation=cv2.INTER_CUBIC).reshape(
            size, size, -1
        )
    chunks = []
    for k in range(0, len(slices), 4):
        width = 1 if len(slices) - k == 2 else 4
        for j in range(k, min(k + 4, len(slices)), width):
            chunks.append(resize_slices(slices[j : j + width], size))
    return np.concatenate(chunks, axis=-1)


def model_input(stack: np.ndarray, size: int) -> np.ndarray:
    """size x size x C uint8 (resized by `stack_channels`) -> C x size x size float32 in
    [-1, 1]: with that resize, the training transform without augmentation (cubic resize,
    Normalize(0.5, 0.5, 255)) in plain OpenCV and NumPy, so the kernel needs neither
    albumentations nor its version (a test proves them equal)."""
    if stack.shape[:2] != (size, size):
        raise ValueError(f"model_input: a {stack.shape[:2]} stack for {size} px (resize it first)")
    x = (stack.astype(np.float32) - np.float32(127.5)) / np.float32(127.5)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def has_input(plan: SeriesPlan, usable: set[str]) -> bool:
    """Whether a study with these usable series types gives this plan any input."""
    return any(t in usable for t in plan.series_types)


def cache_reader(cache: Path, study_id: int, usable: set[str], size: int) -> SeriesReader:
    """Reads a study's cached slices (either layout); series types not in `usable` have none."""

    def read(series_type: str, picks: Sequence[int]) -> list[np.ndarray] | None:
        if series_type not in usable:
            return None
        folder = series_dir(cache, study_id, series_type)
        images = read_series(folder, picks)
        for k, image in zip(picks, images, strict=True):
            if image is None:
                log.warning(
                    "study %s: cached slice %d of %s unreadable: black", study_id, k, folder
                )
        return [np.zeros((size, size), np.uint8) if i is None else i for i in images]

    return read


def cache_views(
    cache: Path, study_id: int, usable: set[str], size: int, images: bool = True
) -> dict[str, SeriesView]:
    """Every usable cached series of a study and where its slices lie (for two stages);
    `images=False` reads only meta.json."""
    meta = read_meta(cache, study_id) or {"series": []}
    views = {}
    for record in meta["series"]:
        series_type = record["series_type"]
        if series_type not in usable:
            continue
        view = SeriesView(record["picked"], record["order"], size)
        if images:
            read = cache_reader(cache, study_id, usable, size)
            view.images = np.stack(read(series_type, range(view.count)))
        views[series_type] = view
    return views


class CacheDataset(Dataset):
    """(input, labels) pairs of one model's inputs for a list of studies.

    `labels` is (studies, 25) encoded; each item returns only the model's own targets.
    `usable` maps each study to the series types the cache holds for it.
    """

    def __init__(
        self,
        cache: Path,
        study_ids: list[int],
        labels: np.ndarray | None,
        spec: ModelSpec,
        transform,
        cache_size: int,
        usable: dict[int, set[str]],
    ) -> None:
        self.cache = Path(cache)
        self.study_ids = list(study_ids)
        self.labels = None if labels is None else labels[:, spec.target_index]
        self.spec = spec
        self.transform = transform
        self.cache_size = cache_size
        self.usable = usable
        self.epoch_seed: int | None = None  # set by training: augmentations repeat exactly

    def __len__(self) -> int:
        return len(self.study_ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        study = self.study_ids[i]
        read = cache_reader(self.cache, study, self.usable.get(study, set()), self.cache_size)
        # Resized as read: the transform's own Resize (its first step) then has nothing to do.
        stack = stack_channels(self.spec.plan, read, self.cache_size, self.spec.plan.size)
        if stack is None:
            raise ZooError(f"study {study} has no series for model {self.spec.name}")
        if self.epoch_seed is not None:
            # Seeded per item, so results do not depend on which worker loads which study.
            self.transform.set_random_seed(self.epoch_seed * 100_003 + i)
        image = self.transform(image=stack)["image"]
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        y = torch.from_numpy(self.labels[i]) if self.labels is not None else torch.zeros(0)
        return x, y
