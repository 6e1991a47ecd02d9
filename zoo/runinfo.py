"""A training run folder: its layout (built here and nowhere else), and reading it back.

    RUN/config.json                    the resolved TrainConfig and every ModelSpec as plain data
    RUN/<model>/fold<k>/               checkpoints and records of one model and fold
    RUN/export/<model>/fold<k>/        its exported artifacts; RUN/export/manifest.json

Export, bench and the kernel rebuild the specs from config.json, so a run keeps working even if
the registry changes later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from zoo.cache import CacheSettings, read_settings
from zoo.errors import ZooError
from zoo.registry import CropPlan, ModelSpec, SeriesPlan


def fold_dir(root: Path, model: str, fold: int) -> Path:
    """Where one model's fold trains: RUN/<model>/fold<k>."""
    return Path(root) / model / f"fold{fold}"


def export_dir(root: Path) -> Path:
    return Path(root) / "export"


def export_fold_dir(root: Path, model: str, fold: int) -> Path:
    """Where one model's fold is exported: RUN/export/<model>/fold<k>."""
    return export_dir(root) / model / f"fold{fold}"


def spec_from_dict(d: dict) -> ModelSpec:
    """A ModelSpec from its config.json / manifest form (dataclasses.asdict)."""
    plan = d["plan"]
    crop = d.get("crop")
    return ModelSpec(
        name=d["name"],
        backbone=d["backbone"],
        head=d["head"],
        plan=SeriesPlan(
            tuple(plan["series_types"]), tuple(plan["slices"]), int(plan["size"]), plan["policy"]
        ),
        targets=tuple(d["targets"]),
        head_hidden=int(d.get("head_hidden", 512)),
        kind=d.get("kind", "series"),
        stage=int(d.get("stage", 1)),
        points=tuple(d.get("points", ())),
        slice_points=tuple(d.get("slice_points", ())),
        crop=CropPlan(**crop) if crop else None,
        any_severe_loss=bool(d.get("any_severe_loss", False)),
    )


@dataclass
class RunInfo:
    root: Path
    variant: str
    specs: list[ModelSpec]
    train: dict  # the resolved TrainConfig as saved

    def fold_dir(self, spec: ModelSpec, fold: int) -> Path:
        return fold_dir(self.root, spec.name, fold)

    def finished_folds(self, spec: ModelSpec) -> list[int]:
        """Folds whose training ended (done.json) and left a best checkpoint."""
        folds = []
        for fold in self.train.get("folds", range(5)):
            d = self.fold_dir(spec, fold)
            if (d / "done.json").is_file() and (d / "best.pt").is_file():
                folds.append(int(fold))
        return folds

    def val_ids(self, spec: ModelSpec, fold: int) -> list[int]:
        done = json.loads((self.fold_dir(spec, fold) / "done.json").read_text())
        return [int(s) for s in done["val_ids"]]

    @property
    def cache(self) -> Path:
        return Path(self.train["cache"]) if self.train.get("cache") else self.root / "cache"

    @property
    def cache_settings(self) -> CacheSettings:
        """The cache the run trained from: test-time images are made the same way."""
        return read_settings(self.cache)


def read_run(root: Path) -> RunInfo:
    """A run folder made by `zoo train`; a clear error when it is not one."""
    root = Path(root)
    config = root / "config.json"
    if not config.is_file():
        raise ZooError(f"{root} is not a training run (no config.json); run `zoo train` first")
    saved = json.loads(config.read_text())
    try:
        specs = [spec_from_dict(m) for m in saved["models"]]
        return RunInfo(root, saved["variant"], specs, saved["train"])
    except (KeyError, TypeError, ValueError) as err:
        raise ZooError(f"{config}: unreadable run config ({err!r})") from None
