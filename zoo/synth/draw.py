"""Drawing a synthetic study: a simplified lumbar spine in patient coordinates (mm), rendered
slice by slice in each view's canonical orientation (`zoo.geometry`). Vectorised; u/v are the
1-D world coordinates of an image's columns and rows."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from zoo.constants import LEVELS
from zoo.synth.plan import (
    AXIAL,
    BODY_DEPTH,
    BODY_GAP,
    CANAL_HALF_SPAN,
    FORAMEN_AXES,
    FORAMEN_OFFSET,
    LATERAL_FROM,
    MAX_PIXEL,
    RECESS_RADIUS,
    SAG_T1,
    SAG_T2,
    Anatomy,
    SynthSeries,
)


@dataclass(frozen=True)
class Contrast:
    """Tissue intensities of one sequence, before the study gain."""

    tissue: float
    anterior: float
    fat: float
    posterior: float
    body: float
    disc: float
    disc_loss: float  # how much a fully degenerated disc darkens
    csf: float
    ligament: float
    foramen: float


CONTRASTS: dict[str, Contrast] = {
    SAG_T1: Contrast(420, 380, 1500, 700, 1000, 620, 0.25, 320, 480, 1650),
    SAG_T2: Contrast(450, 320, 950, 380, 650, 1500, 0.6, 1900, 330, 1100),
    AXIAL: Contrast(450, 480, 950, 380, 650, 1400, 0.6, 1900, 330, 1100),
}


def _soft(distance: np.ndarray, pixel: float) -> np.ndarray:
    """Anti-aliased inside mask from a signed distance (negative inside)."""
    return np.clip(0.5 - distance / pixel, 0.0, 1.0)


def _band(
    u: np.ndarray, low: float | np.ndarray, high: float | np.ndarray, pixel: float
) -> np.ndarray:
    return _soft(np.maximum(low - u, u - high), pixel)


def _paint(image: np.ndarray, mask: np.ndarray, value: float | np.ndarray) -> None:
    image += mask * (value - image)


def _paint_ellipse(
    image: np.ndarray,
    u: np.ndarray,
    v: np.ndarray,
    centre: tuple[float, float],
    axes: tuple[float, float],
    value: float,
    weight: float = 1.0,
    power: int = 2,
) -> None:
    """Blend `value` into an ellipse (power 4: a rounded box), touching only its bounding box."""
    pixel = float(abs(u[1] - u[0]))
    cols = np.flatnonzero(np.abs(u - centre[0]) <= axes[0] + pixel)
    rows = np.flatnonzero(np.abs(v - centre[1]) <= axes[1] + pixel)
    if weight <= 0 or cols.size == 0 or rows.size == 0:
        return
    block = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    du = (u[block[1]][None, :] - centre[0]) / axes[0]
    dv = (v[block[0]][:, None] - centre[1]) / axes[1]
    radius = (du**power + dv**power) ** (1.0 / power)
    mask = _soft((radius - 1.0) * min(axes), pixel)
    _paint(image[block], weight * mask, value)


def _grid(series: SynthSeries, k: int) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates of slice k's canonical columns and rows (sagittal: y, z; axial: x, y).

    A tilted axial slice is drawn as the axial anatomy at its centre's height, its rows
    foreshortened by the tilt, so a lesion sits where `SynthSeries.to_pixel` puts its label.
    """
    steps = series.pixel_spacing * np.arange(series.size, dtype=np.float32)
    u0, v0 = series.origins[k]
    if series.axial:
        return u0 + steps, v0 + steps * np.float32(math.cos(series.tilts[k]))
    return u0 + steps, v0 - steps


def _disc_value(anatomy: Anatomy, contrast: Contrast) -> np.ndarray:
    return contrast.disc * (1.0 - contrast.disc_loss * anatomy.degeneration)


def _sagittal_background(anatomy: Anatomy, series: SynthSeries, k: int) -> np.ndarray:
    """What every sagittal slice shares: soft tissue, vertebral bodies and discs."""
    c, a, px = CONTRASTS[series.series_type], anatomy.scale, series.pixel_spacing
    y, z = _grid(series, k)
    body_back = anatomy.y_canal - BODY_GAP * a
    body_front = body_back - BODY_DEPTH * a
    row = np.full(series.size, c.tissue, dtype=np.float32)
    _paint(row, _band(y, -1e9, body_front - 0.04 * a, px), c.anterior)
    _paint(row, _band(y, anatomy.y_canal + 0.3 * a, 1e9, px), c.fat)
    _paint(row, _band(y, body_back, anatomy.y_canal + 0.2 * a, px), c.posterior)
    _paint(row, _band(y, body_front, body_back, px), c.body)
    image = np.repeat(row[None, :], series.size, axis=0)
    discs = _disc_value(anatomy, c)
    for k, disc_z in enumerate(anatomy.disc_z):
        axes = (0.52 * BODY_DEPTH * a, float(anatomy.disc_half_height[k]))
        centre = ((body_front + body_back) / 2, float(disc_z))
        _paint_ellipse(image, y, z, centre, axes, float(discs[k]), power=4)
    return image


def _sagittal_slice(
    anatomy: Anatomy, series: SynthSeries, background: np.ndarray, k: int
) -> np.ndarray:
    image = background.copy()
    _draw_sagittal_canal(image, anatomy, series, k)
    _draw_foramina(image, anatomy, series, k)
    return image


def _draw_sagittal_canal(image: np.ndarray, anatomy: Anatomy, series: SynthSeries, k: int) -> None:
    """CSF canal on the middle slices, narrowed from the front and back at stenotic levels."""
    a, width, px = anatomy.scale, anatomy.canal_width, series.pixel_spacing
    x = series.positions[k]
    visible = float(np.clip((0.065 * a - abs(x - anatomy.x_mid)) / (0.02 * a), 0.0, 1.0))
    if visible <= 0:
        return
    c = CONTRASTS[series.series_type]
    y, z = _grid(series, k)
    bump = np.exp(-(((z[:, None] - anatomy.disc_z[None, 1:]) / (0.03 * a)) ** 2))
    squeeze = (bump @ anatomy.narrowing)[:, None]  # narrowing fraction along the canal
    front = anatomy.y_canal + 0.6 * width * squeeze
    back = anatomy.y_canal + width - 0.4 * width * squeeze
    _paint(image, visible * _band(y, anatomy.y_canal, anatomy.y_canal + width, px), c.ligament)
    _paint(image, visible * _band(y[None, :], front, back, px), c.csf * (1.0 - 0.4 * squeeze))


def _lateral_visibility(series: SynthSeries, anatomy: Anatomy, x: float) -> float:
    """0 on the middle slices, 1 beyond LATERAL_FROM (+0.1) of the stack's half-span."""
    half_span = max((series.positions[-1] - series.positions[0]) / 2, 1.0)  # 1 mm: one slice
    ratio = abs(x - anatomy.x_mid) / half_span
    return float(np.clip((ratio - LATERAL_FROM) / 0.1, 0.0, 1.0))


def foramen_centre(anatomy: Anatomy, level: int) -> tuple[float, float]:
    """(y, z) of a level's foramen: behind the back of the disc, a little above it."""
    a = anatomy.scale
    return (
        anatomy.y_canal + FORAMEN_OFFSET[0] * a,
        float(anatomy.disc_z[level + 1]) + FORAMEN_OFFSET[1] * a,
    )


def _draw_foramina(image: np.ndarray, anatomy: Anatomy, series: SynthSeries, k: int) -> None:
    """Bright foramina on the lateral slices, each side with its own severities."""
    x = series.positions[k]
    visible = _lateral_visibility(series, anatomy, x)
    if visible <= 0:
        return
    c, a = CONTRASTS[series.series_type], anatomy.scale
    y, z = _grid(series, k)
    side = 0 if x > anatomy.x_mid else 1  # larger x = patient left
    for level in range(len(LEVELS)):
        factor = float(anatomy.foramen[side, level])
        axes = (FORAMEN_AXES[0] * a * factor, FORAMEN_AXES[1] * a * factor)
        value = c.foramen * float(anatomy.foramen_dim[side, level])
        _paint_ellipse(image, y, z, foramen_centre(anatomy, level), axes, value, visible)


def recess_centre(anatomy: Anatomy, side: int) -> tuple[float, float]:
    """(x, y) of a subarticular recess; side 0 = patient left = larger x."""
    offset = (CANAL_HALF_SPAN + 0.01) * anatomy.scale
    return (
        anatomy.x_mid + (offset if side == 0 else -offset),
        anatomy.y_canal + 0.3 * anatomy.canal_width,
    )


def _axial_background(anatomy: Anatomy, series: SynthSeries, k: int) -> np.ndarray:
    """What every axial slice shares: air, fat, muscles and the posterior elements."""
    c, a = CONTRASTS[AXIAL], anatomy.scale
    x, y = _grid(series, k)
    xm, yc = anatomy.x_mid, anatomy.y_canal
    image = np.full((series.size, series.size), 40.0, dtype=np.float32)
    _paint_ellipse(image, x, y, (xm, yc - 0.12 * a), (0.46 * a, 0.36 * a), c.fat)
    _paint_ellipse(image, x, y, (xm, yc - 0.12 * a), (0.41 * a, 0.32 * a), c.tissue)
    for sign in (-1.0, 1.0):
        psoas = (xm + sign * 0.12 * a, yc - 0.08 * a)
        _paint_ellipse(image, x, y, psoas, (0.04 * a, 0.05 * a), c.anterior)
        back_muscle = (xm + sign * 0.075 * a, yc + 0.14 * a)
        _paint_ellipse(image, x, y, back_muscle, (0.065 * a, 0.07 * a), c.tissue + 70)
    _paint_ellipse(image, x, y, (xm, yc + 0.06 * a), (0.09 * a, 0.075 * a), c.posterior)
    return image


def _axial_slice(
    anatomy: Anatomy, series: SynthSeries, background: np.ndarray, k: int
) -> np.ndarray:
    """The nearest disc (or the vertebral body between discs), canal and recesses."""
    c, a = CONTRASTS[AXIAL], anatomy.scale
    x, y = _grid(series, k)
    z = series.positions[k]
    image = background.copy()
    level = int(np.argmin(np.abs(anatomy.disc_z[1:] - z)))
    weight = _disc_weight(series, abs(float(anatomy.disc_z[level + 1]) - z))
    body_centre = (anatomy.x_mid, anatomy.y_canal - (BODY_GAP + 0.5 * BODY_DEPTH) * a)
    value = c.body + weight * (float(_disc_value(anatomy, c)[level + 1]) - c.body)
    _paint_ellipse(image, x, y, body_centre, (0.10 * a, 0.5 * BODY_DEPTH * a), value)
    _draw_axial_canal(image, anatomy, x, y, float(anatomy.narrowing[level]) * weight)
    for side in (0, 1):
        radius = RECESS_RADIUS * a * float(anatomy.recess[side, level])
        value = c.csf * float(anatomy.recess_dim[side, level])
        centre = recess_centre(anatomy, side)
        _paint_ellipse(image, x, y, centre, (radius, radius), value, weight)
    return image


def _disc_weight(series: SynthSeries, distance: float) -> float:
    """1 within one slice spacing of a disc, fading out by 1.6 spacings.

    So every disc is fully visible on at least two neighbouring slices, and any pick of every
    first or second slice (20 evenly spaced of up to 35) sees all five levels.
    """
    spacing = max(series.spacing, 3.0)
    return float(np.clip((1.6 * spacing - distance) / (0.6 * spacing), 0.0, 1.0))


def _draw_axial_canal(
    image: np.ndarray, anatomy: Anatomy, x: np.ndarray, y: np.ndarray, squeeze: float
) -> None:
    width, yc = anatomy.canal_width, anatomy.y_canal
    front, back = yc + 0.6 * width * squeeze, yc + width - 0.4 * width * squeeze
    axes = (CANAL_HALF_SPAN * anatomy.scale * (1.0 - 0.5 * squeeze), (back - front) / 2)
    value = CONTRASTS[AXIAL].csf * (1.0 - 0.4 * squeeze)
    _paint_ellipse(image, x, y, (anatomy.x_mid, (front + back) / 2), axes, value)


def _finish(
    image: np.ndarray, rng: np.random.Generator, anatomy: Anatomy, bias: float
) -> np.ndarray:
    """Rician noise, a gentle left-right bias field and the study gain, as uint16."""
    noise = np.float32(anatomy.noise)
    real = image + noise * rng.standard_normal(image.shape, dtype=np.float32)
    imaginary = noise * rng.standard_normal(image.shape, dtype=np.float32)
    ramp = np.linspace(1.0 - bias, 1.0 + bias, image.shape[1], dtype=np.float32)
    magnitude = np.sqrt(real * real + imaginary * imaginary)
    scaled = magnitude * (ramp * np.float32(anatomy.gain))[None, :]
    return np.clip(np.rint(scaled), 0, MAX_PIXEL).astype(np.uint16)


def render_series(
    anatomy: Anatomy, series: SynthSeries, rng: np.random.Generator
) -> list[np.ndarray]:
    """The series' canonical slices (uint16) in anatomical order (that of `series.positions`).

    Slices sharing an in-plane origin and tilt share their background."""
    background_of, draw = (
        (_axial_background, _axial_slice)
        if series.axial
        else (_sagittal_background, _sagittal_slice)
    )
    backgrounds: dict[tuple, np.ndarray] = {}
    bias = float(rng.uniform(-0.08, 0.08))
    images = []
    for k in range(len(series.positions)):
        key = (series.origins[k], series.tilts[k])
        if key not in backgrounds:
            backgrounds[key] = background_of(anatomy, series, k)
        images.append(_finish(draw(anatomy, series, backgrounds[key], k), rng, anatomy, bias))
    return images


def render_localiser(
    anatomy: Anatomy, series: SynthSeries, rng: np.random.Generator
) -> list[tuple[str, np.ndarray]]:
    """A three-plane localiser: (plane, canonical image) for an axial slice through L3/L4, a
    midline sagittal slice and a coronal one (drawn as soft tissue only)."""
    axial = replace(
        series, positions=(float(anatomy.disc_z[3]),), origins=series.origins[:1], tilts=(0.0,)
    )
    a = anatomy.scale
    sagittal = replace(
        series,
        series_type=SAG_T2,
        positions=(anatomy.x_mid,),
        origins=((anatomy.y_canal - 0.55 * a, anatomy.z_top),),
        tilts=(0.0,),
    )
    coronal = np.full((series.size, series.size), CONTRASTS[AXIAL].tissue, np.float32)
    coronal[:, series.size // 3 : 2 * series.size // 3] = CONTRASTS[AXIAL].disc  # the spine
    return [
        ("axial", render_series(anatomy, axial, rng)[0]),
        ("sagittal", render_series(anatomy, sagittal, rng)[0]),
        ("coronal", _finish(coronal, rng, anatomy, 0.0)),
    ]
