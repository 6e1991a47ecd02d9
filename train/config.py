"""Training configuration as plain data: a variant's defaults with the user's overrides."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from zoo.errors import ZooError
from zoo.registry import ModelSpec, Variant, get_variant


@dataclass
class TrainConfig:
    variant: str
    data: str
    out: str
    cache: str | None = None
    folds: list[int] = field(default_factory=lambda: list(range(5)))
    n_folds: int = 5
    fold_seed: int = 8620
    stratify: bool = False
    epochs: int = 20
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 2e-4
    min_lr: float = 1e-6
    weight_decay: float = 1e-2
    warmup_epochs: float = 2.0
    patience: int = 3
    aug: str = "seed0828"
    size: int | None = None  # overrides every model's plan size
    device: str = "auto"
    amp: str = "auto"  # auto: bf16 where supported, else fp16 on CUDA; none on CPU
    weights: str | None = None
    seed: int = 8620
    workers: int = min(4, os.cpu_count() or 1)
    models: list[str] | None = None  # train only these per-series models

    @classmethod
    def for_variant(cls, variant: str, data: Path, out: Path, **overrides) -> TrainConfig:
        """The variant's training defaults, then every override that is not None."""
        defaults = dataclasses.asdict(get_variant(variant).train)
        config = cls(variant=variant, data=str(data), out=str(out), **defaults)
        for key, value in overrides.items():
            if not hasattr(config, key):
                raise ZooError(f"unknown training option {key!r}")
            if value is not None:
                setattr(config, key, value)
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
            if self.size:
                spec = dataclasses.replace(
                    spec, plan=dataclasses.replace(spec.plan, size=self.size)
                )
            specs.append(spec)
        return specs


def parse_folds(text: str, n_folds: int = 5) -> list[int]:
    """'all' or a comma list like '0,2'."""
    if text == "all":
        return list(range(n_folds))
    try:
        return sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        raise ZooError(f"--folds: expected 'all' or a list like 0,2, not {text!r}") from None
