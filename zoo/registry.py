"""The variant registry: one table, timm-style. Everything else is derived from it.

A variant is one or more per-series models. Each `ModelSpec` names a timm backbone, a head, a
`SeriesPlan` (which series types become channels, how many slices of each, image size, slice
policy) and the targets it predicts. CLI choices, `zoo list`, tests and docs read `VARIANTS`.

Notebook -> variant (seed_pipeline.md 3):
    itk8191 baseline (30 ch, b3)          itk8191_b3
    0816 b3 / 0816 edgenext (40 ch)       b3_concat40 / edgenext_concat40
    0823 edgenext + conv head (512 px)    edgenext_convhead
    0828 split (three models, 224 px)     edgenext_split
    0828 convnextv2 tries, as splits      convnextv2_tiny_split / convnextv2_large_split
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from zoo.constants import CONDITIONS_OF_SERIES, LEVELS, SERIES_TYPES, SLICES_PER_SERIES, TARGETS
from zoo.errors import ZooError
from zoo.policies import DEFAULT_POLICY


@dataclass(frozen=True)
class SeriesPlan:
    """Which slices of which series types are stacked into the input channels, in order."""

    series_types: tuple[str, ...]
    slices: tuple[int, ...]  # per series type; at most what the cache holds (10/10/20)
    size: int
    policy: str = DEFAULT_POLICY

    @property
    def in_chans(self) -> int:
        return sum(self.slices)


@dataclass(frozen=True)
class CropPlan:
    """How a stage-2 model cuts its crops from one cached series type: per target row (level,
    and side) a stack of adjacent slices around the point its localiser placed, a square window
    in millimetres resized to `size` pixels. `centre="canal"` (axial): the sagittal level point
    carried into each axial slice by the DICOM geometry, then `side_offset_mm` to each side."""

    source: str  # the series type cropped
    localiser: str  # the stage-1 model that places the points
    slices: int = 3
    window_mm: float = 40.0
    size: int = 32
    centre: str = "point"  # "point" | "canal"
    side_offset_mm: float = 0.0
    mirror_right: bool = False  # flip right-side crops, so one model learns one side


@dataclass(frozen=True)
class ModelSpec:
    """One model: backbone + head, its input and what it predicts.

    kind "series": a stack of series slices -> 3 logits per target (the notebooks' design);
    kind "localiser": a stack of series slices -> (x, y) of each named point and the position
    of each named slice, in [0, 1] of the image and of the cached stack (stage 1);
    kind "crops": one crop stack per target row -> 3 logits per target (stage 2).
    """

    name: str
    backbone: str  # timm name, with pretrained tag
    head: str  # "timm", "conv" (the notebooks' conv+fc), "heatmap" (stage 1), "slices" (stage 2)
    plan: SeriesPlan
    targets: tuple[str, ...]
    head_hidden: int = 512
    kind: str = "series"
    stage: int = 1
    points: tuple[str, ...] = ()  # localiser: the 2-D points it places
    slice_points: tuple[str, ...] = ()  # localiser: the slices it places
    crop: CropPlan | None = None
    any_severe_loss: bool = False  # add the metric's any-severe-spinal term to the loss

    @property
    def num_outputs(self) -> int:
        if self.kind == "localiser":
            return 2 * len(self.points) + len(self.slice_points)
        return 3 * len(self.targets)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """One item's input: (channels, size, size), or (crops, slices, size, size)."""
        if self.kind == "crops":
            return (len(self.targets), self.crop.slices, self.crop.size, self.crop.size)
        return (self.plan.in_chans, self.plan.size, self.plan.size)

    @property
    def target_index(self) -> list[int]:
        """Positions of this model's targets among the 25 competition targets."""
        return [TARGETS.index(t) for t in self.targets]


@dataclass(frozen=True)
class TrainDefaults:
    """Training hyper-parameters of a variant; `zoo train` flags override them."""

    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 2e-4
    min_lr: float = 1e-6
    weight_decay: float = 1e-2
    epochs: int = 20
    warmup_epochs: float = 2.0
    patience: int = 3
    aug: str = "seed0828"


@dataclass(frozen=True)
class Variant:
    name: str
    models: tuple[ModelSpec, ...]  # in training order: every stage-1 model before stage 2
    train: TrainDefaults = field(default_factory=TrainDefaults)
    notes: str = ""

    @property
    def stages(self) -> tuple[tuple[ModelSpec, ...], ...]:
        """The models of each stage, in order: one stage for the notebooks' designs."""
        numbers = sorted({m.stage for m in self.models})
        return tuple(tuple(m for m in self.models if m.stage == n) for n in numbers)


VARIANTS: dict[str, Variant] = {}


def register(variant: Variant) -> Variant:
    if variant.name in VARIANTS:
        raise ValueError(f"variant {variant.name!r} registered twice")
    VARIANTS[variant.name] = variant
    return variant


def get_variant(name: str) -> Variant:
    """The registered variant; a misspelt name gets the closest names suggested."""
    if name in VARIANTS:
        return VARIANTS[name]
    close = difflib.get_close_matches(name, list(VARIANTS), n=3, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else "; see `zoo list`"
    raise ZooError(f"unknown variant {name!r}{hint}")


def targets_of(series_type: str) -> tuple[str, ...]:
    """Targets seen on one series type, condition-major as in train.csv."""
    return tuple(t for t in TARGETS if t.rsplit("_", 2)[0] in CONDITIONS_OF_SERIES[series_type])


ALL_SERIES = SERIES_TYPES
SPLIT_NAMES = {
    "Sagittal T1": "sagittal_t1",
    "Sagittal T2/STIR": "sagittal_t2_stir",
    "Axial T2": "axial_t2",
}


def concat_model(backbone: str, head: str, slices: tuple[int, ...], size: int) -> ModelSpec:
    """One model on all three series stacked (the notebooks' 30/40-channel inputs)."""
    plan = SeriesPlan(ALL_SERIES, slices, size)
    return ModelSpec("all", backbone, head, plan, TARGETS)


def split_models(
    backbone: str, size: int, head: str = "conv", hidden: int = 512
) -> tuple[ModelSpec, ...]:
    """Three models, one per series type, each predicting the conditions that series shows."""
    return tuple(
        ModelSpec(
            SPLIT_NAMES[s], backbone, head, SeriesPlan((s,), (n,), size), targets_of(s), hidden
        )
        for s, n in zip(ALL_SERIES, (10, 10, 20), strict=True)
    )


NB0816 = TrainDefaults(batch_size=16, grad_accum=2, lr=2e-4, min_lr=0.0, aug="seed0816")
NB0823 = TrainDefaults(batch_size=16, grad_accum=2, lr=4e-4, min_lr=0.0, aug="seed0823")
NB0828 = TrainDefaults(batch_size=32, grad_accum=1, lr=2e-4, min_lr=1e-6, aug="seed0828")
B3 = "tf_efficientnet_b3.ns_jft_in1k"
EDGENEXT = "edgenext_base.in21k_ft_in1k"

register(
    Variant(
        "itk8191_b3",
        (concat_model(B3, "timm", (10, 10, 10), 512),),
        NB0816,
        "itk8191 baseline: 30 channels, 10 axial of 20 re-stepped",
    )
)
register(
    Variant(
        "b3_concat40",
        (concat_model(B3, "timm", (10, 10, 20), 512),),
        NB0816,
        "0816 notebook: 40 channels, timm head",
    )
)
register(
    Variant(
        "edgenext_concat40",
        (concat_model(EDGENEXT, "timm", (10, 10, 20), 512),),
        NB0816,
        "0816 edgenext notebook: 40 channels, timm head",
    )
)
register(
    Variant(
        "edgenext_convhead",
        (concat_model(EDGENEXT, "conv", (10, 10, 20), 512),),
        NB0823,
        "0823 notebook: 40 channels, conv head, 512 px",
    )
)
register(
    Variant(
        "edgenext_split",
        split_models(EDGENEXT, 224),
        NB0828,
        "0828 split notebook: one model per series type, conv head, 224 px",
    )
)
register(
    Variant(
        "convnextv2_tiny_split",
        split_models("convnextv2_tiny.fcmae_ft_in22k_in1k", 224),
        NB0828,
        "0828 convnextv2 try, split: CC-BY-NC-4.0 weights",
    )
)
register(
    Variant(
        "convnextv2_large_split",
        split_models("convnextv2_large.fcmae_ft_in22k_in1k", 224),
        NB0828,
        "0828 convnextv2 try, split: about 10x edgenext_base",
    )
)
register(
    Variant(
        "tiny_split",
        split_models("test_convnext2", 128, hidden=64),
        # Small data, small batches: more optimizer steps, and patience for a noisy 12-study
        # validation fold. On zoo synth (60 studies, fold 0) no augmentation scored 0.77
        # against a class prior of 0.95, the "light" preset 0.89: 20 epochs are too few for it.
        TrainDefaults(
            batch_size=8, lr=1e-3, min_lr=1e-5, epochs=20, warmup_epochs=1, patience=6, aug="none"
        ),
        "CPU-sized split for the demo and tests: timm's test_convnext2 at 128 px",
    )
)


SIDES = ("left", "right")


def two_stage_models(
    localiser: str,
    localiser_size: int,
    classifier: str,
    crop_size: int,
    hidden: int = 512,
    windows_mm: tuple[float, float, float] = (40.0, 36.0, 32.0),
) -> tuple[ModelSpec, ...]:
    """Stage 1: a level localiser on Sagittal T2/STIR (disc points on the midline, the midline
    slice) and a foramen localiser on Sagittal T1 (each level's foramen per side, the slice of
    each side). Stage 2: crop classifiers per condition group; the axial crops come from the
    sagittal level points carried into the Axial T2 slices by the DICOM geometry."""
    t1, t2, axial = ALL_SERIES
    spinal_mm, foraminal_mm, axial_mm = windows_mm

    def plan(series_type: str) -> SeriesPlan:
        return SeriesPlan((series_type,), (SLICES_PER_SERIES[series_type],), localiser_size)

    def crops(name: str, series_type: str, crop: CropPlan, **kw) -> ModelSpec:
        targets = targets_of(series_type)
        return ModelSpec(
            name,
            classifier,
            "slices",
            plan(series_type),
            targets,
            hidden,
            "crops",
            2,
            crop=crop,
            **kw,
        )

    levels = ModelSpec(
        "sag_t2_levels",
        localiser,
        "conv",
        plan(t2),
        (),
        hidden,
        "localiser",
        points=LEVELS,
        slice_points=("midline",),
    )
    foramina = ModelSpec(
        "sag_t1_foramina",
        localiser,
        "conv",
        plan(t1),
        (),
        hidden,
        "localiser",
        points=tuple(f"{side}_{lv}" for side in SIDES for lv in LEVELS),
        slice_points=SIDES,
    )
    return (
        levels,
        foramina,
        crops(
            "spinal_crops",
            t2,
            CropPlan(t2, levels.name, 3, spinal_mm, crop_size),
            any_severe_loss=True,
        ),
        crops("foraminal_crops", t1, CropPlan(t1, foramina.name, 3, foraminal_mm, crop_size)),
        crops(
            "subarticular_crops",
            axial,
            CropPlan(axial, levels.name, 3, axial_mm, crop_size, "canal", 14.0, True),
        ),
    )


register(
    Variant(
        "two_stage_tiny",
        two_stage_models("test_convnext2", 128, "test_convnext2", 32, hidden=64),
        TrainDefaults(
            batch_size=8, lr=1e-3, min_lr=1e-5, epochs=20, warmup_epochs=1, patience=6, aug="none"
        ),
        "CPU-sized two-stage: localisers at 128 px, 32 px crop classifiers (test_convnext2)",
    )
)
register(
    Variant(
        "two_stage_convnext",
        two_stage_models(
            "convnext_tiny.in12k_ft_in1k",
            384,
            "convnext_small.in12k_ft_in1k",
            128,
            windows_mm=(48.0, 40.0, 36.0),
        ),
        TrainDefaults(batch_size=8, lr=2e-4, min_lr=1e-6, epochs=15, patience=4, aug="light"),
        "two-stage as the top solutions: ConvNeXt-T localisers at 384 px, ConvNeXt-S on 128 px "
        "crops of 3 slices with slice attention",
    )
)
