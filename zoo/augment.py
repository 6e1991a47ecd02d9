"""Augmentation presets: the notebooks' three lists ported to albumentations 2.

Every transform acts on the whole H x W x C stack, so all slices get the same geometry and
photometry (as in the notebooks). Ports of 1.4-era APIs:
    ShiftScaleRotate(0.1, 0.1, 15, border_mode=0) -> Affine(translate 10 %, scale 0.9-1.1, +-15 deg)
    GaussNoise(var_limit=(a, b)) on 0..255      -> GaussNoise(std_range=(sqrt(a)/255, sqrt(b)/255))
    CoarseDropout(max_holes, max_height, ...)   -> CoarseDropout(num_holes_range, hole_*_range)
Hole sizes are fractions of the image side, as they were at the notebooks' sizes.
One deliberate change: Resize runs first, so the augmentations work at the model's size instead
of the cache's 512 px (same result, a fraction of the CPU cost).
"""

from __future__ import annotations

import math

import albumentations as A
import cv2

from zoo.errors import ZooError


def _affine(p: float) -> A.Affine:
    return A.Affine(
        translate_percent=(-0.1, 0.1),
        scale=(0.9, 1.1),
        rotate=(-15, 15),
        border_mode=cv2.BORDER_CONSTANT,
        fill=0,
        p=p,
    )


def _noise(var_lo: float, var_hi: float) -> A.GaussNoise:
    return A.GaussNoise(std_range=(math.sqrt(var_lo) / 255, math.sqrt(var_hi) / 255))


def _blur(k: int, gauss: tuple[int, int] | int, var: tuple[float, float], p: float) -> A.OneOf:
    return A.OneOf(
        [
            A.MotionBlur(blur_limit=k),
            A.MedianBlur(blur_limit=k),
            A.GaussianBlur(blur_limit=gauss),
            _noise(*var),
        ],
        p=p,
    )


def _distort(p: float) -> A.OneOf:
    return A.OneOf(
        [
            A.OpticalDistortion(distort_limit=1.0),
            A.GridDistortion(num_steps=5, distort_limit=1.0),
            A.ElasticTransform(alpha=3),
        ],
        p=p,
    )


def _dropout(
    holes: tuple[int, int], side: tuple[float, float], size: int, p: float
) -> A.CoarseDropout:
    lo, hi = max(1, int(side[0] * size)), max(1, int(side[1] * size))
    return A.CoarseDropout(
        num_holes_range=holes, hole_height_range=(lo, hi), hole_width_range=(lo, hi), fill=0, p=p
    )


def seed0816(size: int) -> list[A.BasicTransform]:
    """0816 notebooks (itk8191's list): everything at p=0.75, up to 16 holes of 8-64 px at 512."""
    return [
        A.RandomBrightnessContrast(0.2, 0.2, p=0.75),
        _blur(5, (3, 5), (5, 30), 0.75),
        _distort(0.75),
        _affine(0.75),
        _dropout((1, 16), (8 / 512, 64 / 512), size, 0.75),
    ]


def seed0823(size: int) -> list[A.BasicTransform]:
    """0823 notebook, including its second ShiftScaleRotate (seed_pipeline.md bug 7)."""
    return [
        A.RandomBrightnessContrast(0.2, 0.2, p=0.75),
        _affine(0.7),
        _blur(3, 3, (3, 9), 0.5),
        _distort(0.5),
        _affine(0.75),
        _dropout((1, 1), (0.275, 0.275), size, 0.3),
    ]


def seed0828(size: int) -> list[A.BasicTransform]:
    """0828 and split notebooks: 0823 with p=0.75 and up to 16 holes of S/32 to S/8."""
    return [
        A.RandomBrightnessContrast(0.2, 0.2, p=0.75),
        _affine(0.75),
        _blur(3, 3, (3, 9), 0.75),
        _distort(0.75),
        _affine(0.75),
        _dropout((1, 16), (0.03125, 0.125), size, 0.75),
    ]


def light(size: int) -> list[A.BasicTransform]:
    """Small CPU runs: brightness/contrast and a gentle affine, nothing that hides the lesion."""
    return [
        A.RandomBrightnessContrast(0.1, 0.1, p=0.5),
        A.Affine(
            translate_percent=(-0.03, 0.03),
            scale=(0.95, 1.05),
            rotate=(-5, 5),
            border_mode=cv2.BORDER_CONSTANT,
            fill=0,
            p=0.5,
        ),
    ]


PRESETS = {
    "seed0816": seed0816,
    "seed0823": seed0823,
    "seed0828": seed0828,
    "light": light,
    "none": lambda size: [],
}


def build_transform(preset: str, size: int, train: bool, seed: int | None = None) -> A.Compose:
    """Resize, the preset's augmentations (training only), Normalize(0.5, 0.5) to [-1, 1]."""
    if preset not in PRESETS:
        raise ZooError(f"unknown augmentation preset {preset!r}; choose from {sorted(PRESETS)}")
    augment = PRESETS[preset](size) if train else []
    return A.Compose(
        [
            A.Resize(size, size, interpolation=cv2.INTER_CUBIC),
            *augment,
            A.Normalize(mean=0.5, std=0.5, max_pixel_value=255.0),
        ],
        seed=seed,
    )
