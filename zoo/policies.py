"""Slice selection policies: which slices of an ordered series become model channels.

Each policy is a pure function of the series length, the number of slices wanted, the view and
(for `seed` only) the positions of labelled slices. It returns positions into the series as
ordered by `zoo.dicom.order_slices`, so channel k always lies on the same side of the body.

| policy    | rule                                                               | test time? |
|-----------|--------------------------------------------------------------------|------------|
| itk8191   | stepped, evenly spaced across the whole series (default)           | yes        |
| center    | the notebooks' test reader: central contiguous sagittal window,    | yes        |
|           | evenly spaced axial slices, cyclic repeat when too few             |            |
| seed      | every labelled slice, the rest filled evenly (notebooks' training) | no         |

`itk8191` is the default because it is computable without labels and keeps the lateral
sagittal slices, where both foramina are seen; `center` loses them on series with more than
about 12 slices, and `seed` trains on label-informed inputs that the test set never has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from zoo.errors import ZooError

DEFAULT_POLICY = "itk8191"


def select_itk8191(
    n: int, wanted: int, view: str = "sagittal", labelled: Sequence[int] = ()
) -> list[int]:
    """itk8191's stepped rule: index_k = max(0, round(n (k+1) / wanted - 0.5001)), k < wanted.

    Evenly spaced over the whole series, last slice included; repeats slices when n < wanted.
    """
    return [min(n - 1, max(0, round(n * (k + 1) / wanted - 0.5001))) for k in range(wanted)]


def select_center(
    n: int, wanted: int, view: str = "sagittal", labelled: Sequence[int] = ()
) -> list[int]:
    """The notebooks' test-time rule (`select_images` of the 0817/0823 submissions)."""
    if n < wanted:
        return [i % n for i in range(wanted)]
    if n == wanted:
        return list(range(n))
    if view == "axial":
        return [int(i) for i in np.linspace(0, n - 1, wanted).astype(int)]
    start = max(0, n // 2 - wanted // 2)
    return list(range(start, start + wanted))


def select_seed(
    n: int, wanted: int, view: str = "sagittal", labelled: Sequence[int] = ()
) -> list[int]:
    """The notebooks' training rule, reconstructed: every labelled slice, then evenly filled.

    The original fill rule is lost (seed_pipeline.md 1), so this is ours:
    1. labelled positions are kept; if there are more than `wanted`, an evenly stepped subset;
    2. the free slots take the unlabelled slices nearest to an even grid over the series;
    3. the result is sorted, keeping anatomical order;
    4. with n < wanted, the stepped rule repeats slices as itk8191 does.
    Without labels (test time) this is an even spread like itk8191.
    """
    if n <= wanted:
        return select_itk8191(n, wanted, view)
    keep = sorted({p for p in labelled if 0 <= p < n})
    if len(keep) > wanted:
        keep = [keep[i] for i in select_itk8191(len(keep), wanted, view)]
    free = [p for p in range(n) if p not in keep]
    grid = np.linspace(0, n - 1, wanted - len(keep)) if len(keep) < wanted else []
    chosen = set(keep)
    for target in grid:
        best = min((p for p in free if p not in chosen), key=lambda p: abs(p - target))
        chosen.add(best)
    return sorted(chosen)


SlicePolicy = Callable[[int, int, str, Sequence[int]], list[int]]

POLICIES: dict[str, SlicePolicy] = {
    "itk8191": select_itk8191,
    "center": select_center,
    "seed": select_seed,
}


def select_slices(
    policy: str, n: int, wanted: int, view: str, labelled: Sequence[int] = ()
) -> list[int]:
    """Positions (0..n-1, in anatomical order) of the `wanted` slices a named policy picks."""
    if policy not in POLICIES:
        raise ZooError(f"--policy: unknown slice policy {policy!r}; choose from {sorted(POLICIES)}")
    if n <= 0:
        return []
    return POLICIES[policy](n, wanted, view, labelled)
