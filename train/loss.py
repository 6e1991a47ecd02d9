"""Weighted cross-entropy per label column, safe when a batch lacks a label entirely."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from zoo.constants import CLASS_WEIGHTS, MISSING_LABEL


def column_losses(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted CE sum and weight sum per column: logits (B, 3T), labels (B, T) with -100."""
    b, t = labels.shape
    logits = logits.float().view(b, t, 3)
    valid = labels != MISSING_LABEL
    safe = torch.where(valid, labels, torch.zeros_like(labels))
    weights = torch.tensor(CLASS_WEIGHTS, device=logits.device)[safe] * valid
    nll = -F.log_softmax(logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return (weights * nll).sum(dim=0), weights.sum(dim=0)


def weighted_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over label columns of CrossEntropyLoss(weight=[1, 2, 4], ignore_index=-100).

    A column with no labelled study in the batch is left out of the mean instead of giving
    0/0 = NaN (seed_pipeline.md bug 10); a batch with no labels at all gives a zero loss.
    """
    loss_sum, weight_sum = column_losses(logits, labels)
    present = weight_sum > 0
    if not present.any():
        return logits.sum() * 0.0
    return (loss_sum[present] / weight_sum[present]).mean()


def pooled_weighted_ce(probs: torch.Tensor, labels: torch.Tensor) -> float:
    """The notebooks' val_wll: one weighted CE over every (triple, label) pair, -100 ignored."""
    valid = labels != MISSING_LABEL
    p = probs.reshape(-1, 3)[valid.reshape(-1)].double().clamp_min(1e-15)
    y = labels.reshape(-1)[valid.reshape(-1)]
    w = torch.tensor(CLASS_WEIGHTS, dtype=torch.float64)[y]
    nll = -torch.log(p.gather(1, y.unsqueeze(1)).squeeze(1))
    return float((w * nll).sum() / w.sum()) if len(y) else float("nan")


def any_severe_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The metric's any-severe-spinal term for a batch of studies: binary log loss of the
    largest predicted severe probability over the levels against 'any level is severe',
    weighted by the study's largest sample weight (1/2/4) over its labelled levels."""
    b, t = labels.shape
    severe = torch.softmax(logits.float().view(b, t, 3), dim=-1)[..., 2]
    valid = labels != MISSING_LABEL
    if not valid.any():
        return logits.sum() * 0.0
    p = torch.where(valid, severe, torch.zeros_like(severe)).amax(dim=1).clamp(1e-7, 1 - 1e-7)
    y = ((labels == 2) & valid).any(dim=1).float()
    safe = torch.where(valid, labels, torch.zeros_like(labels))
    w = (torch.tensor(CLASS_WEIGHTS, device=logits.device)[safe] * valid).amax(dim=1)
    keep = valid.any(dim=1)
    nll = -(y * torch.log(p) + (1 - y) * torch.log(1 - p))
    return (w * nll)[keep].sum() / w[keep].sum()
