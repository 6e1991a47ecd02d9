"""Slice selection policies are pure functions: indices in, indices out."""

import pytest

from zoo.errors import ZooError
from zoo.policies import POLICIES, select_slices


@pytest.mark.parametrize("policy", sorted(POLICIES))
@pytest.mark.parametrize("n", [1, 3, 10, 15, 17, 40])
@pytest.mark.parametrize(("wanted", "view"), [(10, "sagittal"), (20, "axial")])
def test_every_policy_returns_wanted_valid_positions(policy, n, wanted, view):
    picked = select_slices(policy, n, wanted, view)
    assert len(picked) == wanted
    assert all(0 <= p < n for p in picked)


def test_itk8191_stepped_rule_matches_the_formula():
    # index_k = max(0, round(n (k+1) / 10 - 0.5001)) from seed_pipeline.md
    assert select_slices("itk8191", 15, 10, "sagittal") == [1, 2, 4, 5, 7, 8, 10, 11, 13, 14]
    assert select_slices("itk8191", 10, 10, "sagittal") == list(range(10))
    assert select_slices("itk8191", 40, 10, "sagittal")[-1] == 39


def test_itk8191_keeps_both_lateral_sides_where_center_does_not():
    n = 19  # foramina sit on the outer slices of each side
    spread = select_slices("itk8191", n, 10, "sagittal")
    center = select_slices("center", n, 10, "sagittal")
    assert min(spread) <= 2 and max(spread) >= n - 2
    assert min(center) > 2 and max(center) < n - 3


def test_center_is_the_notebooks_test_reader():
    assert select_slices("center", 17, 10, "sagittal") == list(range(3, 13))
    assert select_slices("center", 4, 10, "sagittal") == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]
    assert select_slices("center", 33, 20, "axial")[:4] == [0, 1, 3, 5]
    assert select_slices("center", 33, 20, "axial")[-1] == 32


def test_seed_includes_every_labelled_slice_in_order():
    labelled = [0, 3, 4, 16]
    picked = select_slices("seed", 17, 10, "sagittal", labelled)
    assert set(labelled) <= set(picked)
    assert picked == sorted(picked) and len(set(picked)) == 10


def test_seed_with_more_labels_than_slots_keeps_an_even_subset():
    picked = select_slices("seed", 30, 10, "sagittal", list(range(0, 30, 2)))
    assert len(picked) == 10 and all(p % 2 == 0 for p in picked)


def test_seed_without_labels_is_computable_at_test_time():
    picked = select_slices("seed", 30, 10, "sagittal")
    assert picked[0] == 0 and picked[-1] == 29 and len(set(picked)) == 10


def test_unknown_policy_names_the_flag():
    with pytest.raises(ZooError, match="--policy"):
        select_slices("middle", 10, 10, "sagittal")
