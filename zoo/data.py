"""Model inputs from the PNG cache: one H x W x C uint8 stack per study and model.

Channels follow the model's SeriesPlan: series types in plan order, slices in anatomical order.
A series type the study lacks stays black (it becomes -1 after normalisation, as in the
notebooks). A plan may take fewer slices than the cache holds (itk8191_b3 takes 10 of the 20
axial): they are re-stepped with the itk8191 rule, as that notebook did at load time.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.constants import SLICES_PER_SERIES, series_folder
from zoo.policies import select_itk8191
from zoo.registry import ModelSpec, SeriesPlan


def channel_picks(series_type: str, wanted: int) -> range | list[int]:
    """Which of the cache's slices of a series type a plan takes, in anatomical order.

    Shared by training (from PNGs) and `zoo predict` (from DICOM), so both agree."""
    held = SLICES_PER_SERIES[series_type]
    return range(held) if wanted == held else select_itk8191(held, wanted)


def read_png_stack(study_dir: Path, plan: SeriesPlan, size: int) -> np.ndarray:
    """The plan's channels for one study from the cache, H x W x C uint8 at the cache size."""
    channels = []
    for series_type, wanted in zip(plan.series_types, plan.slices, strict=True):
        folder = study_dir / series_folder(series_type)
        for k in channel_picks(series_type, wanted):
            path = folder / f"{k + 1:02d}.png"
            image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.is_file() else None
            channels.append(image if image is not None else np.zeros((size, size), np.uint8))
    return np.stack(channels, axis=-1)


class CacheDataset(Dataset):
    """(input, labels) pairs of one model's inputs for a list of studies.

    `labels` is (studies, 25) encoded; each item returns only the model's own targets.
    """

    def __init__(
        self,
        cache: Path,
        study_ids: list[int],
        labels: np.ndarray | None,
        spec: ModelSpec,
        transform,
        cache_size: int,
    ) -> None:
        self.cache = Path(cache)
        self.study_ids = list(study_ids)
        self.labels = None if labels is None else labels[:, spec.target_index]
        self.spec = spec
        self.transform = transform
        self.cache_size = cache_size
        self.epoch_seed: int | None = None  # set by training: augmentations repeat exactly

    def __len__(self) -> int:
        return len(self.study_ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        stack = read_png_stack(self.cache / str(self.study_ids[i]), self.spec.plan, self.cache_size)
        if self.epoch_seed is not None:
            # Seeded per item, so results do not depend on which worker loads which study.
            self.transform.set_random_seed(self.epoch_seed * 100_003 + i)
        image = self.transform(image=stack)["image"]
        x = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        y = torch.from_numpy(self.labels[i]) if self.labels is not None else torch.zeros(0)
        return x, y
