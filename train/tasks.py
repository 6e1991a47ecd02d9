"""How each kind of model learns and is scored; what it is fed comes from `zoo.stages`.

| kind      | loss                                  | score (lower is better) | kept out of fold |
|-----------|---------------------------------------|-------------------------|------------------|
| series    | weighted CE (1/2/4)                   | official metric         | probabilities    |
| localiser | L1 on known points and slices         | mean absolute error     | points           |
| crops     | weighted CE (+ any-severe on spinal)  | official metric         | probabilities    |
"""

from __future__ import annotations

import numpy as np
import torch

from train.loss import any_severe_loss, weighted_ce
from zoo.metric import score_predictions
from zoo.registry import ModelSpec
from zoo.stages import POINTS_FILE, StageData


class Task:
    """A classifier (series or crops): 3 classes per target, scored by the official metric."""

    outputs_file = "val_probs.npy"

    def __init__(self, spec: ModelSpec, data: StageData) -> None:
        self.spec, self.data = spec, data

    def has_input(self, study: int, train: bool) -> bool:
        return self.data.has_input(self.spec, study, train)

    def dataset(self, ids: list[int], labels: np.ndarray, train: bool):
        return self.data.dataset(self.spec, ids, labels, train)

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = weighted_ce(out, y)
        return loss + any_severe_loss(out, y) if self.spec.any_severe_loss else loss

    def evaluate(
        self, ids: list[int], y: np.ndarray, out: np.ndarray
    ) -> tuple[float, float, np.ndarray]:
        """(score, validation loss, what to keep out of fold)."""
        logits = torch.from_numpy(out)
        probs = torch.softmax(logits.view(len(out), -1, 3), -1).numpy()
        val_loss = float(self.loss(logits, torch.from_numpy(y)))
        return score_predictions(ids, y, probs, self.spec.targets)["score"], val_loss, probs


class LocaliserTask(Task):
    """Stage 1: points and slices in [0, 1]; unknown targets (NaN) are left out of the loss."""

    outputs_file = POINTS_FILE

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        known = torch.isfinite(y)
        if not known.any():
            return out.sum() * 0.0
        return torch.nn.functional.l1_loss(out.float()[known], y[known])

    def evaluate(
        self, ids: list[int], y: np.ndarray, out: np.ndarray
    ) -> tuple[float, float, np.ndarray]:
        known = np.isfinite(y)
        error = float(np.abs(out - np.nan_to_num(y))[known].mean()) if known.any() else np.nan
        return error, error, out


def task_for(spec: ModelSpec, data: StageData) -> Task:
    return (LocaliserTask if spec.kind == "localiser" else Task)(spec, data)
