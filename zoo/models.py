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


class SliceAttentionModel(nn.Module):
    """Stage 2: crops (batch, crops, slices, H, W) -> logits (batch, crops * 3). One 2-D
    backbone sees every slice, attention pools the slices of a crop, a linear head grades it;
    all shared across crops (levels and sides), as the top solutions' 2.5-D crop models."""

    def __init__(self, backbone: nn.Module, crops: int) -> None:
        super().__init__()
        self.backbone, self.crops = backbone, crops
        features = backbone.num_features
        self.attention = nn.Linear(features, 1)
        self.head = nn.Linear(features, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slices, height, width = x.shape[2], x.shape[3], x.shape[4]
        f = self.backbone(x.reshape(-1, 1, height, width)).reshape(
            -1, slices, self.attention.in_features
        )
        weights = torch.softmax(self.attention(f), dim=1)
        pooled = (weights * f).sum(dim=1)
        return self.head(pooled).reshape(-1, self.crops * 3)


class HeatmapLocaliser(nn.Module):
    """Stage 1: a series stack -> each point's (x, y) and each slice position, all in [0, 1].

    Points come from heatmaps read out by a soft-argmax (the expected position under a softmax
    over the map, differentiable: DSNT), far more data-efficient than regressing coordinates
    from pooled features. The map sits at the backbone's stride-16 stage with the stride-32
    stage added on top (a two-level FPN) and the pixel coordinates appended (CoordConv), so a
    point knows where in the image it is: which disc is L1/L2 is a matter of position. Slice
    positions are regressed from the pooled last stage."""

    def __init__(
        self, backbone: nn.Module, points: int, slices: int, hidden: int, input_shape: tuple
    ) -> None:
        super().__init__()
        self.backbone, self.points = backbone, points
        fine, coarse = backbone.feature_info.channels()[-2:]
        self.lateral = nn.Conv2d(fine, hidden, 1)
        self.top = nn.Conv2d(coarse, hidden, 1)
        self.heat = nn.Sequential(
            nn.Conv2d(hidden + 2, hidden, 3, padding=1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, points, 1),
        )
        self.slices = nn.Linear(coarse, slices) if slices else None
        # The map's pixel grid as constants (not shape arithmetic): exporters keep them as
        # plain initializers, which the fp16 ONNX twin and TensorRT take as they are.
        with torch.no_grad():
            h, w = backbone(torch.zeros(1, *input_shape))[-2].shape[-2:]
        ys, xs = (torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        self.register_buffer("coords", torch.stack([grid_x, grid_y]).unsqueeze(0), persistent=False)
        self.register_buffer(
            "grid", torch.stack([grid_x.flatten(), grid_y.flatten()], 1), persistent=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fine, coarse = self.backbone(x)
        merged = self.lateral(fine) + nn.functional.interpolate(
            self.top(coarse), size=fine.shape[-2:]
        )
        coords = self.coords.to(merged.dtype).expand(merged.shape[0], -1, -1, -1)
        maps = self.heat(torch.cat([merged, coords], dim=1))
        # The read-out runs in float32 whatever the model's dtype (an fp16 runtime): a half
        # softmax over h*w cells loses the small probabilities a position averages.
        prob = torch.softmax(maps.flatten(2).float(), dim=-1)  # (batch, points, h*w)
        out = (prob @ _cast_like(self.grid, prob)).flatten(1)  # x0, y0, x1, y1, ...
        if self.slices is None:
            return out
        pooled = coarse.float().mean(dim=(2, 3))
        slices = torch.sigmoid(self.slices(_cast_like(pooled, self.slices.weight)))
        return torch.cat([out, _cast_like(slices, out)], dim=1)


def _cast_like(t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`t` in `like`'s dtype, casting only where they differ: a float32 trace records no
    Cast, so the ONNX graph (and the fp16 twin converted from it) stays as it was."""
    return t if t.dtype == like.dtype else t.to(like.dtype)


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
    if spec.kind == "crops":  # one slice at a time, pooled features for the slice attention
        kwargs = {"in_chans": 1, "num_classes": 0, "global_pool": "avg"}
    elif spec.kind == "localiser":  # the last two stages, for the heatmaps
        kwargs = {"in_chans": spec.plan.in_chans, "features_only": True, "out_indices": (-2, -1)}
    elif spec.head == "timm":
        kwargs = {
            "in_chans": spec.plan.in_chans,
            "num_classes": spec.num_outputs,
            "global_pool": "avg",
        }
    else:
        kwargs = {"in_chans": spec.plan.in_chans, "features_only": True, "out_indices": (-1,)}
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
    """A trainable model for a spec: outputs shaped (batch, spec.num_outputs)."""
    backbone = create_backbone(spec, weights, quiet)
    if spec.kind == "crops":
        return SliceAttentionModel(backbone, len(spec.targets))
    if spec.kind == "localiser":
        return HeatmapLocaliser(
            backbone,
            len(spec.points),
            len(spec.slice_points),
            min(spec.head_hidden, 128),
            spec.input_shape,
        )
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
