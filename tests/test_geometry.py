"""Series geometry as pure functions: plane grouping, anatomical order, canonical orientation."""

import itertools
import math

import numpy as np
import pytest

from zoo.geometry import InPlane, arrange_slices, canonical_inplane, group_planes

ALL_TRANSFORMS = [InPlane(*flags) for flags in itertools.product((False, True), repeat=3)]
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)


@pytest.mark.parametrize("transform", ALL_TRANSFORMS, ids=lambda t: t.describe())
def test_a_point_follows_its_pixel_through_every_transform(transform):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 1000, size=(5, 7))
    out = transform.apply(image)
    for y, x in itertools.product(range(5), range(7)):
        cx, cy = transform.map_point(x, y, image.shape)
        assert out[int(cy), int(cx)] == image[y, x]
    back = transform.inverse()
    assert np.array_equal(back.apply(out), image)
    assert back.map_point(*transform.map_point(2.5, 1.25, (5, 7)), out.shape) == (2.5, 1.25)


@pytest.mark.parametrize(
    ("orientation", "view", "expected"),
    [
        (AXIAL, "axial", InPlane()),
        (SAGITTAL, "sagittal", InPlane()),
        ((-1.0, 0.0, 0.0, 0.0, 1.0, 0.0), "axial", InPlane(flip_cols=True)),  # rows to the right
        ((0.0, 1.0, 0.0, 0.0, 0.0, 1.0), "sagittal", InPlane(flip_rows=True)),  # columns to head
        ((0.0, 1.0, 0.0, 1.0, 0.0, 0.0), "axial", InPlane(transpose=True)),
        ((0.0, 0.0, -1.0, 0.0, -1.0, 0.0), "sagittal", InPlane(True, False, True)),
        (None, "axial", InPlane()),
    ],
)
def test_canonical_transform_from_the_orientation_tags(orientation, view, expected):
    assert canonical_inplane(orientation, view) == expected


def test_a_tilted_axial_slice_keeps_its_canonical_orientation():
    t = math.radians(25)
    assert canonical_inplane((1, 0, 0, 0, math.cos(t), -math.sin(t)), "axial").identity


def test_planes_group_by_angle_so_jitter_never_splits_a_stack():
    # Normal y-components 0.05 -+ 1e-6 straddle a 0.1 rounding edge: rounding split them.
    normals = []
    for k in range(10):
        s = 0.05 + (1e-6 if k % 2 else -1e-6)
        normals.append(np.array([0.0, s, math.sqrt(1 - s * s)]))
    assert group_planes(np.stack(normals)) == [list(range(10))]
    tilted = np.array([[0.0, 0.0, 1.0], [0.0, math.sin(0.2), math.cos(0.2)], [0.0, 0.0, -1.0]])
    assert group_planes(tilted) == [[0, 2], [1]]  # 11.5 degrees apart; n and -n are one plane


def test_slices_of_another_plane_are_dropped_and_no_plane_of_the_view_keeps_nothing():
    positions = [(0.0, 0.0, z) for z in (0.0, 5.0, 10.0)] + [(0.0, 0.0, 0.0)]
    orientations = [AXIAL] * 3 + [SAGITTAL]
    arranged = arrange_slices(positions, orientations, [None] * 4, "axial")
    assert arranged.order == [2, 1, 0] and arranged.dropped_other_plane == [3]
    none = arrange_slices(positions[3:] * 2, orientations[3:] * 2, [None] * 2, "axial")
    assert none.order == [] and "no slice lies in the axial plane" in none.notes[0]


def test_too_few_located_slices_fall_back_to_instance_order():
    arranged = arrange_slices(
        [None, (0.0, 0.0, 1.0), None], [None, AXIAL, None], [None] * 3, "axial"
    )
    assert arranged.ordered_by == "instance_number" and arranged.order == [0, 1, 2]
