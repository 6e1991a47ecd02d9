"""What a perfect reader of `zoo synth` images would score against its labels.

Synth labels are a reader's grades of the drawn severities (`zoo.synth.plan.READER_SD`), so no
model scores zero. This grader knows each cell's drawn grade exactly and predicts the reader's
grade distribution for that grade, condition and level (counted on --calibration-studies other
planned studies); it knows nothing else about a study. A model could still beat it a little by
learning the study-level correlations that hint where a score lies within its grade.

    .venv/bin/python benchmarks/synth_floor.py [--studies 120] [--test-studies 10] [--seed 0]
"""

from __future__ import annotations

import argparse

import numpy as np

from zoo.constants import MISSING_LABEL
from zoo.metric import array_terms
from zoo.synth.plan import StudyPlan, plan_dataset

GRADES = 3


def reader_table(plans: list[StudyPlan]) -> np.ndarray:
    """(condition, level, drawn grade, read grade) frequencies, add-half smoothed."""
    drawn = np.stack([p.codes for p in plans])
    read = np.stack([p.labels for p in plans])
    conditions, levels = drawn.shape[1:]
    table = np.zeros((conditions, levels, GRADES, GRADES))
    for c in range(conditions):
        for lv in range(levels):
            for g in range(GRADES):
                seen = read[drawn[:, c, lv] == g, c, lv]
                table[c, lv, g] = (np.bincount(seen, minlength=GRADES) + 0.5) / (
                    len(seen) + 0.5 * GRADES
                )
    return table


def floor_terms(plans: list[StudyPlan], table: np.ndarray) -> dict[str, float]:
    """Scored like CV: on the labelled cells only (train.csv leaves a few empty)."""
    drawn = np.stack([p.codes for p in plans])
    labels = np.stack([p.labels for p in plans])
    labels[np.stack([p.unlabelled for p in plans])] = MISSING_LABEL
    conditions, levels = drawn.shape[1:]
    probs = table[np.arange(conditions)[:, None], np.arange(levels)[None, :], drawn]
    return array_terms(labels.reshape(len(plans), -1), probs.reshape(len(plans), -1, GRADES))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=120)
    parser.add_argument("--test-studies", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0, help="the `zoo synth --seed` to score")
    parser.add_argument("--calibration-studies", type=int, default=3000)
    args = parser.parse_args()
    table = reader_table(plan_dataset(args.calibration_studies, 0, args.seed + 1, 64))
    plans = plan_dataset(args.studies, args.test_studies, args.seed, 64)
    for split in ("train", "test"):
        terms = floor_terms([p for p in plans if p.split == split], table)
        print(f"{split:>5}: " + "  ".join(f"{k} {v:.4f}" for k, v in terms.items()))
    score = floor_terms([p for p in plans if p.split == "train"], table)["score"]
    print(f"summary: a perfect reader of the images scores {score:.4f} on the train labels")


if __name__ == "__main__":
    main()
