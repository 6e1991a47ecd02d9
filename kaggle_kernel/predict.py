"""`zoo predict`: the exact code path of the Kaggle kernel. It never fails on data.

test_series_descriptions.csv + test_images/ -> the policy's slices of every series type each
model needs (the same reader `zoo prepare` used for training) -> every fold of every
per-series model -> fold-averaged probabilities -> 25 rows per study. Whatever goes wrong with
one study (a missing or unknown series, a corrupt file, an exception anywhere) costs only that
study's affected conditions, which fall back to the training label prior, with a warning.
Decoding runs in DataLoader workers so the models are not left waiting on files.

An ensemble package (ensemble.json): every member run predicts as above from one shared
decode, then the members' rows are averaged with the per-group weights (renormalised over the
members that loaded) and the calibration is applied, if the package carries one.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from torch.utils.data import DataLoader, Dataset

from export.manifest import FORMAT_VERSION, read_manifest, verified_path
from export.runner import KERNEL_BATCH, softmax_groups
from kaggle_kernel.runtime import LoadedModel, load_model
from zoo.calibration import calibrate
from zoo.competition import read_series_rows
from zoo.constants import SERIES_TYPES, SUBMISSION_COLUMNS, TARGETS, row_id
from zoo.crops import CropUnavailable, Located, SeriesView, crop_input, decode, make_crops
from zoo.data import model_input, stack_channels
from zoo.ensemble import ENSEMBLE_FILE, carry_weights
from zoo.environment import describe, resolve_device
from zoo.errors import ZooError
from zoo.io import write_csv
from zoo.metric import GROUP_OF_TARGET, GROUPS
from zoo.reader import SeriesImages, read_series_images

log = logging.getLogger(__name__)
CLIP = 1e-5  # predictions stay this far from 0 and 1: a zero on the true class costs ~36


@dataclass
class ModelInput:
    """How one model's input is made: its spec and the PNG size it was trained from."""

    name: str
    spec: object
    cache_size: int


@dataclass
class StudyItem:
    study_id: int
    inputs: dict[str, np.ndarray | None] = field(default_factory=dict)
    views: dict[str, SeriesView] = field(default_factory=dict)  # for stage 2's crops
    located: dict[str, Located] = field(default_factory=dict)  # stage 1's answers
    problems: list[str] = field(default_factory=list)
    decode_seconds: float = 0.0


def read_test_studies(data: Path) -> tuple[list[int], dict[int, dict[str, list[int]]], list[str]]:
    """Studies (CSV order, then any only in sample_submission), their series, and row order.

    The CSV is read row by row: a bad row costs that row (logged with its line), never the file.
    """
    series_csv, sample_csv = data / "test_series_descriptions.csv", data / "sample_submission.csv"
    series: dict[int, dict[str, list[int]]] = {}
    try:
        rows = read_series_rows(series_csv)
    except ZooError as err:  # missing file or column
        log.error("%s: studies come from sample_submission.csv", err)
        rows = []
    for study_id, series_id, series_type in rows:
        series.setdefault(study_id, {t: [] for t in SERIES_TYPES})[series_type].append(series_id)
    studies = list(series)
    order: list[str] = []
    if sample_csv.is_file():
        try:
            order = pd.read_csv(sample_csv)["row_id"].astype(str).tolist()
        except (OSError, ValueError, KeyError, pd.errors.ParserError) as err:
            log.error("%s unreadable (%s): rows in study order", sample_csv, err)
        for rid in order:
            head = rid.split("_")[0]
            study = int(head) if head.isdigit() else None
            if study is not None and study not in series:
                log.warning("study %s: in sample_submission.csv but has no series", study)
                series[study] = {t: [] for t in SERIES_TYPES}
                studies.append(study)
    if not studies:
        raise ZooError(
            f"{data}: neither test_series_descriptions.csv nor sample_submission.csv lists a study"
        )
    return studies, series, order


class TestStudies(Dataset):
    """One item per study: each model's normalised input, or None where it cannot be made."""

    def __init__(self, images: Path, studies: list[int], series: dict, models: list[ModelInput]):
        self.images, self.studies, self.series, self.models = images, studies, series, models

    def __len__(self) -> int:
        return len(self.studies)

    def __getitem__(self, i: int) -> StudyItem:
        start = time.perf_counter()
        item = StudyItem(self.studies[i])
        read: dict[tuple, SeriesImages] = {}
        for model in self.models:
            try:
                item.inputs[model.name] = self._model_input(item, model, read)
            except Exception as err:  # noqa: BLE001 - never fail on data
                item.inputs[model.name] = None
                item.problems.append(f"{model.name}: {type(err).__name__}: {err}")
        item.problems += [r.summary() for r in read.values() if not r.usable or r.skipped]
        item.views = {
            r.series_type: SeriesView(r.picked, r.order, size, np.stack(r.images))
            for (_, _, size), r in read.items()
            if r.usable
        }
        item.decode_seconds = time.perf_counter() - start
        return item

    def _read(self, item: StudyItem, series_type: str, policy: str, size: int, read: dict):
        key = (series_type, policy, size)
        if key not in read:
            ids = self.series[item.study_id].get(series_type, [])
            study_dir = self.images / str(item.study_id)
            read[key] = read_series_images(study_dir, series_type, ids, policy, size)
        return read[key]

    def _model_input(self, item: StudyItem, model: ModelInput, read: dict) -> np.ndarray | None:
        """The model's stack; a series that cannot be read blanks only its own channels. A crop
        model's input is cut after stage 1 (`run_batch`): here its series are only read."""
        spec, size = model.spec, model.cache_size
        if spec.kind == "crops":
            self._read(item, spec.crop.source, spec.plan.policy, size, read)
            return None

        def images(series_type: str, picks) -> list[np.ndarray] | None:
            got = self._read(item, series_type, spec.plan.policy, size, read)
            return [got.images[k] for k in picks] if got.usable else None

        stack = stack_channels(spec.plan, images, size, spec.plan.size)  # resized as trained
        if stack is None:
            return None  # nothing this model can look at: its conditions take the prior
        return model_input(stack, spec.plan.size)


def keep_items(batch: list[StudyItem]) -> list[StudyItem]:
    return batch


def predict_model(model: LoadedModel, xs: np.ndarray) -> np.ndarray:
    """Fold-averaged probabilities (batch, targets, 3); a localiser's averaged points."""
    if model.spec.kind == "localiser":
        return np.mean([runner(xs) for runner in model.runners], axis=0)
    return np.mean([softmax_groups(runner(xs)) for runner in model.runners], axis=0)


def crop_inputs(batch: list[StudyItem], spec, key: str) -> None:
    """Stage 2's input of each study, cut at stage 1's points; a study whose crops cannot be
    made (its localiser had no input, a series or its geometry is missing) gets none. `key`:
    the member's prefix of model names in the batch."""
    for item in batch:
        located = item.located.get(key + spec.crop.localiser)
        if located is None:
            item.inputs[key + spec.name] = None
            continue
        try:
            crops = make_crops(spec, item.views, located)
            item.inputs[key + spec.name] = crop_input(crops)
        except (CropUnavailable, KeyError) as err:
            item.inputs[key + spec.name] = None
            item.problems.append(f"{key}{spec.name}: no crops ({err})")


def finish_rows(probs: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """Finite, clipped away from 0 and 1, rows summing to 1; anything else takes the prior."""
    bad = ~np.isfinite(probs).all(axis=-1)
    probs = np.where(bad[..., None], prior, probs)
    probs = np.clip(probs, CLIP, 1 - CLIP)
    return probs / probs.sum(axis=-1, keepdims=True)


def load_models(
    model_dir: Path, runtime: str, device: str, work: Path, batch: int
) -> tuple[list[LoadedModel], int]:
    """Every model that can be loaded and proven in some runtime, and how many could not. One
    that cannot is logged and its conditions take the prior: a submission of priors still
    scores, a crash scores nothing."""
    try:
        manifest = read_manifest(model_dir)
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ZooError(f"{model_dir}: made by an older zoo (re-export and re-package)")
    except ZooError as err:
        log.error("%s: every condition falls back to the prior", err)
        return [], 0
    models = []
    for name, entry in manifest.get("models", {}).items():
        try:
            loaded = load_model(name, entry, model_dir, runtime, device, work, batch)
        except Exception as err:  # noqa: BLE001 - never fail: this model's rows take the prior
            log.error("model %s cannot be loaded (%s): its conditions take the prior", name, err)
            continue
        log.info("model %s: %s (%s)", name, loaded.format, loaded.reason)
        models.append(loaded)
    return models, len(manifest.get("models", {})) - len(models)


def load_prior(model_dir: Path) -> np.ndarray:
    path = model_dir / "prior.json"
    try:
        saved = json.loads(path.read_text())
        prior = np.asarray(saved["prior"], np.float64)
        index = [saved["targets"].index(t) for t in TARGETS]
        return prior[index]
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as err:
        log.warning("no usable label prior at %s (%s): uniform fallback", path, err)
        return np.full((len(TARGETS), 3), 1 / 3)


@dataclass
class PredictSummary:
    studies: int
    rows: int
    fallbacks: int
    runtimes: dict[str, str]
    decode_seconds: float
    stage_seconds: dict[str, float]  # localise, crops, classify
    seconds: float
    out: Path

    def __str__(self) -> str:
        formats = ", ".join(f"{k}={v}" for k, v in self.runtimes.items())
        stages = ", ".join(f"{k} {v:.1f} s" for k, v in self.stage_seconds.items() if v)
        return (
            f"predict: {self.studies} studies, {self.rows} rows -> {self.out} "
            f"({self.fallbacks} condition groups fell back to the prior); runtimes {formats}; "
            f"{self.seconds:.1f} s ({self.decode_seconds:.1f} s decoding in workers; {stages})"
        )


STAGE_OF_KIND = {"localiser": "localise", "series": "classify", "crops": "classify"}


def run_batch(
    batch: list[StudyItem], models: list[LoadedModel], probs: dict, key: str = ""
) -> tuple[int, dict[str, float]]:
    """Fill probs[study][target index] for one batch, stage by stage (localise, then crop and
    classify); returns (fallbacks, seconds per stage). `key` prefixes an ensemble member's
    model names in the batch's inputs."""
    fallbacks, seconds = 0, {"localise": 0.0, "crops": 0.0, "classify": 0.0}
    prior_of: dict[int, list[str]] = {it.study_id: [] for it in batch}
    for model in sorted(models, key=lambda m: m.spec.stage):
        spec, name = model.spec, key + model.name
        start = time.perf_counter()
        if spec.kind == "crops":
            crop_inputs(batch, spec, key)
            seconds["crops"] += time.perf_counter() - start
            start = time.perf_counter()
        ready = [it for it in batch if it.inputs.get(name) is not None]
        if spec.targets:
            fallbacks += len(batch) - len(ready)
            for it in batch:
                if it.inputs.get(name) is None:
                    prior_of[it.study_id].append(name)
        if not ready:
            continue
        out = run_model(model, name, ready, len(spec.targets) or spec.num_outputs, prior_of)
        for it, p in zip(ready, out, strict=True):
            if spec.kind == "localiser":
                if np.isfinite(p).all():
                    count = it.views[spec.plan.series_types[0]].count
                    it.located[name] = decode(spec, p, specs_size(model), count)
            else:
                probs[it.study_id][spec.target_index] = p
                fallbacks += int(not np.isfinite(p).all())
        seconds[STAGE_OF_KIND[spec.kind]] += time.perf_counter() - start
    for it in batch:
        if it.problems or prior_of[it.study_id]:
            fell = ", ".join(prior_of[it.study_id]) or "nothing"
            log.warning(
                "study %s: %s; prior for %s", it.study_id, "; ".join(it.problems) or "ok", fell
            )
    return fallbacks, seconds


def specs_size(model: LoadedModel) -> int:
    return int(model.entry["cache_size"])


def run_model(
    model: LoadedModel, name: str, ready: list[StudyItem], width: int, prior_of: dict
) -> list:
    """One model on the studies that have its input (inputs[name]); a batch that fails is
    retried study by study, and a study that still fails gets NaN (its conditions: the prior)."""
    try:
        return list(predict_model(model, np.stack([it.inputs[name] for it in ready])))
    except Exception as err:  # noqa: BLE001 - retry one by one, then the prior
        studies = ", ".join(str(it.study_id) for it in ready)
        log.warning("%s failed on studies %s (%s): retrying one by one", name, studies, err)
    out = []
    for it in ready:
        try:
            out.append(predict_model(model, it.inputs[name][None])[0])
        except Exception as one:  # noqa: BLE001
            it.problems.append(f"{name} failed ({one})")
            prior_of[it.study_id].append(name)
            out.append(np.full((width, 3), np.nan))
    return out


@dataclass
class Member:
    """One run of a package: its weights, models, prior and predictions so far."""

    key: str  # prefix of its model names in a batch's inputs ("" for a one-run package)
    name: str
    folder: Path
    weights: dict[str, float]  # per condition group
    models: list[LoadedModel] = field(default_factory=list)
    unloaded: int = 0
    prior: np.ndarray | None = None
    probs: dict[int, np.ndarray] = field(default_factory=dict)


def read_members(model_dir: Path) -> tuple[list[Member], dict | None]:
    """The package's runs and calibration: ensemble.json's members, each manifest and prior
    checked by sha256 (a member that fails is dropped, logged), or the package itself."""
    path = model_dir / ENSEMBLE_FILE
    if not path.is_file():
        try:
            calibration = read_manifest(model_dir).get("calibration")
        except ZooError:
            calibration = None  # load_models says why
        return [Member("", model_dir.name, model_dir, dict.fromkeys(GROUPS, 1.0))], calibration
    try:
        saved = json.loads(path.read_text())
        entries, weights = saved["members"], saved["weights"]
    except (OSError, ValueError, KeyError) as err:
        log.error("%s unreadable (%s): every condition falls back to the prior", path, err)
        return [], None
    members = []
    for i, entry in enumerate(entries):
        try:
            manifest = verified_path(model_dir, entry["manifest"])
            verified_path(model_dir, entry["prior"])
            share = {g: float(weights[g][i]) for g in GROUPS}
        except (ZooError, KeyError, IndexError, TypeError) as err:
            log.error("ensemble member %s dropped: %s", entry.get("name", i), err)
            continue
        members.append(Member(f"{i}:", entry["name"], manifest.parent, share))
    return members, saved.get("calibration")


def load_members(
    model_dir: Path, runtime: str, device: str, work: Path, batch: int
) -> tuple[list[Member], dict | None, np.ndarray]:
    """The members that loaded at least one model (a one-run package is kept whatever
    happens: its prior answers), the calibration, and the prior of last resort."""
    members, calibration = read_members(model_dir)
    for member in members:
        member.models, member.unloaded = load_models(member.folder, runtime, device, work, batch)
        member.prior = load_prior(member.folder)
    fallback_prior = members[0].prior if members else load_prior(model_dir)
    active = [m for m in members if m.models or not m.key]
    for member in members:
        if member not in active:
            log.error(
                "ensemble member %s: no model could be loaded; it drops out and the weights "
                "are renormalised over %s",
                member.name,
                ", ".join(m.name for m in active) or "nobody (every row takes the prior)",
            )
    return active, calibration, fallback_prior


def combine(study: int, members: list[Member], calibration: dict | None, prior) -> np.ndarray:
    """A study's 25 rows: the members' finished rows averaged with the group weights, then
    calibrated. A row a member could not predict (its series unreadable, its localiser lost,
    its model failing) is carried by the members that did, their weights renormalised: a
    two-stage member that cannot place a study's levels leaves it to a one-stage member. Only
    a row no member predicted is the mix of their priors."""
    if not members:
        return prior
    finished = np.stack([finish_rows(m.probs[study], m.prior) for m in members])
    if len(members) == 1 and not calibration:
        return finished[0]
    weights = np.array([[m.weights[g] for g in GROUP_OF_TARGET] for m in members])
    predicted = np.stack([np.isfinite(m.probs[study]).all(axis=-1) for m in members])
    carried = carry_weights(weights, predicted)  # the rule `zoo ensemble` fitted the weights with
    lost = [m.name for m, p in zip(members, predicted, strict=True) if not p.all()]
    if lost and predicted.any():
        log.info("study %s: the rows %s could not predict are carried by the others", study, lost)
    mixed = np.einsum("mt,mtc->tc", carried, finished)
    return calibrate(mixed[None], calibration)[0] if calibration else mixed


def predict(
    model_dir: Path,
    data: Path,
    out: Path,
    runtime: str = "auto",
    device: str = "auto",
    workers: int = 2,
    batch_size: int = KERNEL_BATCH,
    work: Path | None = None,
    progress: bool = True,
) -> PredictSummary:
    """Write a submission for every test study; raises only if the output cannot be made."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    start = time.perf_counter()
    model_dir, data, out = Path(model_dir), Path(data), Path(out)
    device = resolve_device(device)
    log.info("environment: %s", describe())
    members, calibration, prior = load_members(
        model_dir, runtime, device, work or out.parent / "zoo_engines", batch_size
    )
    studies, series, order = read_test_studies(data)
    inputs = [
        ModelInput(m.key + model.name, model.spec, specs_size(model))
        for m in members
        for model in m.models
    ]
    dataset = TestStudies(data / "test_images", studies, series, inputs)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=keep_items,
        prefetch_factor=4 if workers else None,
    )
    for m in members:
        m.probs = {s: np.full((len(TARGETS), 3), np.nan) for s in studies}
    fallbacks, decode_s = sum(m.unloaded for m in members) * len(studies), 0.0
    stage_s = {"localise": 0.0, "crops": 0.0, "classify": 0.0}
    with logging_redirect_tqdm():  # the per-study lines print above the bar, not inside it
        for batch in tqdm(loader, desc="predict", unit="batch", disable=not progress):
            for m in members:
                fb, seconds = run_batch(batch, m.models, m.probs, m.key)
                fallbacks += fb
                stage_s = {k: stage_s[k] + seconds[k] for k in stage_s}
            decode_s += sum(it.decode_seconds for it in batch)
    if calibration:
        log.info("calibration applied: %s", calibration)
    probs = {s: combine(s, members, calibration, prior) for s in studies}
    frame = submission_frame(studies, probs, prior, order)
    write_csv(out, frame)
    return PredictSummary(
        len(studies),
        len(frame),
        fallbacks,
        {m.key + model.name: model.format for m in members for model in m.models},
        decode_s,
        stage_s,
        time.perf_counter() - start,
        out,
    )


def submission_frame(
    studies: list[int], probs: dict, prior: np.ndarray, order: list[str]
) -> pd.DataFrame:
    """25 rows per study, in sample_submission.csv order when there is one."""
    rows = []
    for study in studies:
        p = finish_rows(probs[study], prior)
        rows += [(row_id(study, t), *p[j]) for j, t in enumerate(TARGETS)]
    frame = pd.DataFrame(rows, columns=["row_id", *SUBMISSION_COLUMNS])
    if order:
        rank = {rid: k for k, rid in enumerate(order)}
        frame = (
            frame.assign(_rank=frame["row_id"].map(rank).fillna(len(rank)))
            .sort_values("_rank", kind="stable")
            .drop(columns="_rank")
        )
    return frame.reset_index(drop=True)
