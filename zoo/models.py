"""Backbone + head models built from a `ModelSpec`, with offline-only pretrained weights.

Pretrained weights come from a local file through timm's `pretrained_cfg_overlay=dict(file=...)`,
so timm adapts the stem to 10/20/40 input channels and resets the classifier exactly as it does
for hub weights. Without a file the model starts from random init, with a warning saying how to
get weights. Nothing here touches the network (zoo/__init__ sets HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import logging
from pathlib import Path

import timm
import torch
from torch import nn

from zoo.errors import ZooError
from zoo.registry import ModelSpec

log = logging.getLogger(__name__)
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class ConvHead(nn.Module):
    """The notebooks' ClassificationModule: two 3x3 conv-BN-ReLU blocks, GAP, linear."""

    def __init__(self, in_channels: int, hidden: int, num_outputs: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, hidden, 3, padding=1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(hidden, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.convs(x)).flatten(1))


class ConvHeadModel(nn.Module):
    """timm features_only backbone (last stage only) -> ConvHead, as in the notebooks.

    features_only keeps just the stages, so no parameter goes unused (DDP requires that)."""

    def __init__(self, backbone: nn.Module, hidden: int, num_outputs: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = ConvHead(backbone.feature_info.channels()[-1], hidden, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[-1])


def resolve_weights(backbone: str, weights: Path | None) -> Path | None:
    """A weights file for `backbone`: `weights` itself, or a file in that folder named by the
    timm model (with or without its tag), e.g. edgenext_base.in21k_ft_in1k.safetensors or
    edgenext_base.in21k_ft_in1k/model.safetensors (the layout of a timm hub download)."""
    if weights is None:
        return None
    weights = Path(weights)
    if weights.is_file():
        return weights
    if not weights.is_dir():
        raise ZooError(f"--weights: no such file or folder: {weights}")
    for stem in (backbone, backbone.split(".")[0]):
        for suffix in WEIGHT_SUFFIXES:
            for candidate in (
                weights / f"{stem}{suffix}",
                weights / stem / f"model{suffix}",
                weights / stem / f"pytorch_model{suffix}",
            ):
                if candidate.is_file():
                    return candidate
    return None


def create_backbone(spec: ModelSpec, weights: Path | None = None, quiet: bool = False) -> nn.Module:
    """The timm backbone of a spec, pretrained from a local file when one is found."""
    kwargs = {"in_chans": spec.plan.in_chans}
    if spec.head == "timm":
        kwargs.update(num_classes=spec.num_outputs, global_pool="avg")
    else:
        kwargs.update(features_only=True, out_indices=(-1,))
    path = resolve_weights(spec.backbone, weights)
    if path is None:
        if not quiet:
            log.warning(
                "no pretrained weights for %s: random init. Download them where there is internet "
                "(timm.create_model(%r, pretrained=True) then save its state_dict, or attach the "
                "timm weights dataset on Kaggle) and pass --weights FILE_OR_FOLDER",
                spec.backbone,
                spec.backbone,
            )
        return timm.create_model(spec.backbone, pretrained=False, **kwargs)
    log.info("pretrained weights for %s from %s", spec.backbone, path)
    try:
        return timm.create_model(
            spec.backbone, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs
        )
    except (RuntimeError, KeyError, ValueError, OSError) as err:
        raise ZooError(f"--weights: {path} does not fit {spec.backbone}: {err}") from None


def build_model(spec: ModelSpec, weights: Path | None = None, quiet: bool = False) -> nn.Module:
    """A trainable model for a spec: logits shaped (batch, 3 * len(spec.targets))."""
    backbone = create_backbone(spec, weights, quiet)
    if spec.head == "timm":
        return backbone
    if spec.head == "conv":
        return ConvHeadModel(backbone, spec.head_hidden, spec.num_outputs)
    raise ZooError(f"unknown head {spec.head!r} in model {spec.name!r}")


def load_trained(spec: ModelSpec, checkpoint: Path, map_location: str = "cpu") -> nn.Module:
    """A model with fine-tuned weights from a state-dict checkpoint (no pickles executed)."""
    model = build_model(spec, quiet=True)
    state = torch.load(checkpoint, map_location=map_location, weights_only=True)
    model.load_state_dict(state["model"] if "model" in state else state)
    return model.eval()
