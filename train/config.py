"""Training configuration as plain data: a variant's defaults with the user's overrides."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from zoo.constants import DEFAULT_CACHE_LAYOUT
from zoo.errors import ZooError
from zoo.policies import POLICIES
from zoo.registry import ModelSpec, TrainDefaults, Variant, get_variant


@dataclass(frozen=True, kw_only=True)
class TrainConfig(TrainDefaults):
    """A run's whole configuration: the variant's hyper-parameters (TrainDefaults, declared
    once) plus where and how this run trains. Saved flat as config.json["train"]."""

    variant: str
    data: str
    out: str
    cache: str | None = None
    cache_layout: str = (
        DEFAULT_CACHE_LAYOUT  # of a cache this run prepares (an existing one keeps its own)
    )
    folds: list[int] = field(default_factory=lambda: list(range(5)))
    n_folds: int = 5
    fold_seed: int = 8620
    stratify: bool = False
    size: int | None = None  # overrides every model's plan size
    policy: str | None = None  # slice policy; None: the variant's (resolved before training)
    device: str = "auto"
    amp: str = "auto"  # auto: bf16 on sm80+, else fp16 on CUDA; none on CPU
    weights: str | None = None
    seed: int = 8620
    workers: int = min(4, os.cpu_count() or 1)
    models: list[str] | None = None  # train only these per-series models

    @classmethod
    def for_variant(cls, variant: str, data: Path, out: Path, **overrides) -> TrainConfig:
        """The variant's training defaults, then every override that is not None."""
        unknown = [k for k in overrides if k not in {f.name for f in dataclasses.fields(cls)}]
        if unknown:
            raise ZooError(f"unknown training option {unknown[0]!r}")
        given = {k: v for k, v in overrides.items() if v is not None}
        defaults = dataclasses.asdict(get_variant(variant).train)
        config = cls(variant=variant, data=str(data), out=str(out), **{**defaults, **given})
        config.validate()
        return config

    def validate(self) -> None:
        bad = [k for k in self.folds if not 0 <= k < self.n_folds]
        if bad:
            raise ZooError(f"--folds: fold {bad[0]} is not in 0..{self.n_folds - 1}")
        if self.epochs < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ZooError("--epochs, --batch-size and grad_accum must be at least 1")
        if self.lr <= 0:
            raise ZooError(f"--lr must be positive, not {self.lr}")
        if self.policy is not None and self.policy not in POLICIES:
            raise ZooError(f"--policy: unknown slice policy {self.policy!r}; see zoo.policies")
        names = [m.name for m in get_variant(self.variant).models]
        for name in self.models or []:
            if name not in names:
                raise ZooError(f"--models: {self.variant} has no model {name!r}; it has {names}")

    def variant_obj(self) -> Variant:
        return get_variant(self.variant)

    def specs(self) -> list[ModelSpec]:
        """The per-series models to train, with the size override applied."""
        specs = []
        for spec in self.variant_obj().models:
            if self.models and spec.name not in self.models:
                continue
            plan = dataclasses.replace(
                spec.plan, size=self.size or spec.plan.size, policy=self.policy or spec.plan.policy
            )
            specs.append(dataclasses.replace(spec, plan=plan))
        return specs


def parse_folds(text: str, n_folds: int = 5) -> list[int]:
    """'all' or a comma list like '0,2'."""
    if text == "all":
        return list(range(n_folds))
    try:
        return sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ZooError(f"--folds: expected 'all' or a list like 0,2, not {text!r}") from None
