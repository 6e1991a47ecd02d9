"""The `zoo` command line. Heavy modules are imported inside each command, so `zoo --help`
is instant and train/export/kaggle_kernel stay optional imports of zoo, never the reverse."""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from pathlib import Path

import click

from export.formats import CHAIN as RUNTIMES  # neither imports torch: `zoo --help` stays quick
from export.runner import KERNEL_BATCH
from zoo.cli.demo import DEMO_VARIANTS
from zoo.constants import CACHE_LAYOUTS, DEFAULT_CACHE_LAYOUT
from zoo.errors import ZooError
from zoo.locations import RUNS, find_data, new_run_dir, point_latest, resolve_run
from zoo.policies import DEFAULT_POLICY, POLICIES


class ZooGroup(click.Group):
    """Turns a ZooError into one line on stderr and exit status 1, instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ZooError as err:
            raise click.ClickException(str(err)) from None


@click.group(cls=ZooGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages.")
@click.version_option(package_name="zoo")
def main(verbose: bool) -> None:
    """Model zoo and export toolkit for RSNA 2024 Lumbar Spine Degenerative Classification.

    \b
      zoo demo                          everything, on built-in synthetic data
      zoo train edgenext_split          data from $ZOO_DATA or the usual places -> runs/...-N
      zoo export --fmt onnx             the latest run (runs/latest)
      zoo bench                         on the target GPU: table + the fastest valid format
      zoo package --out kaggle_ds       a Kaggle dataset + kernel (`zoo predict` is the kernel)
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="zoo: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )


existing_dir = click.Path(exists=True, file_okay=False, path_type=Path)
device_option = click.option(
    "--device",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "cpu", "cuda"]),
    help="auto: CUDA when available.",
)
out_dir = click.Path(file_okay=False, path_type=Path)


@main.command()
@click.option("--out", required=True, type=out_dir, help="Folder to write the dataset into.")
@click.option(
    "--studies", default=60, show_default=True, type=click.IntRange(1), help="Train studies."
)
@click.option(
    "--test-studies", default=5, show_default=True, type=click.IntRange(0), help="Test studies."
)
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same files.")
@click.option(
    "--size", default=128, show_default=True, type=click.IntRange(32), help="Pixels per side."
)
def synth(out: Path, studies: int, test_studies: int, seed: int, size: int) -> None:
    """Write a small synthetic dataset in the exact competition layout (real DICOM files)."""
    from zoo.synth import make_synthetic_dataset

    summary = make_synthetic_dataset(out, studies, test_studies, seed, size)
    click.echo(
        f"synth: {summary.train_studies} train + {summary.test_studies} test studies, "
        f"{summary.files} DICOM files in {summary.out} ({summary.seconds:.1f} s)"
    )


DATA_HELP = (
    "Competition folder [$ZOO_DATA, the Kaggle mount, ./rsna-2024-lumbar-spine-degenerative-"
    "classification, ./data: the first holding the CSVs]."
)
run_argument = click.argument(
    "run", required=False, type=click.Path(file_okay=False, path_type=Path)
)


@main.command()
@click.option("--data", type=existing_dir, help=DATA_HELP)
@click.option("--out", required=True, type=out_dir, help="Cache folder to write.")
@click.option("--size", default=512, show_default=True, type=int, help="Image side in pixels.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1), help="Processes.")
@click.option(
    "--policy",
    default=DEFAULT_POLICY,
    show_default=True,
    type=click.Choice(sorted(POLICIES)),
    help="Slice selection policy (see zoo.policies).",
)
@click.option("--split", default="train", show_default=True, type=click.Choice(["train", "test"]))
@click.option(
    "--layout",
    default=DEFAULT_CACHE_LAYOUT,
    show_default=True,
    type=click.Choice(CACHE_LAYOUTS),
    help="npy: one memory-mapped uint8 array per series (fast to write and read); png: NN.png "
    "per slice, the notebooks' layout, about half the disk. Same pixels either way.",
)
def prepare(
    data: Path, out: Path, size: int, workers: int, policy: str, split: str, layout: str
) -> None:
    """Convert every study's DICOM series to the cache training reads (resumable)."""
    from zoo.prepare import prepare as run_prepare

    data = find_data(data, split)
    summary = run_prepare(
        data, out, size=size, workers=workers, policy=policy, split=split, layout=layout
    )
    click.echo(str(summary))
    for study_id, error in summary.failed.items():
        click.echo(f"  failed {study_id}: {error}", err=True)


@main.command()
@click.option(
    "--solution", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option(
    "--submission", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def score(solution: Path, submission: Path, as_json: bool) -> None:
    """Score a submission with the official metric (lower is better)."""
    from zoo.competition import read_csv
    from zoo.metric import TERMS, score_terms

    sol = read_csv(solution, ("row_id", "normal_mild", "moderate", "severe", "sample_weight"))
    sub = read_csv(submission, ("row_id", "normal_mild", "moderate", "severe"))
    terms = score_terms(sol, sub)
    if as_json:
        click.echo(json.dumps({k: round(v, 6) for k, v in terms.items()}))
        return
    for name in (*TERMS, "score"):
        click.echo(f"{name:>18}  {terms[name]:.6f}")


def parameter_count(spec) -> int:
    """Parameters of a spec's model, built on the meta device (no memory, no weights)."""
    import torch

    from zoo.models import build_model

    with torch.device("meta"):
        return sum(p.numel() for p in build_model(spec, quiet=True).parameters())


@main.command(name="list")
def list_variants() -> None:
    """Print the variant registry: each model's stage, kind, input, backbone and parameters."""
    from zoo.registry import VARIANTS

    header = (
        f"{'variant':<24}{'stage':>5}  {'model':<20}{'kind':<10}{'input':<30}"
        f"{'backbone':<38}{'params':>8}"
    )
    click.echo(header)
    click.echo("-" * len(header))
    for variant in VARIANTS.values():
        for spec in variant.models:
            params = f"{parameter_count(spec) / 1e6:.1f}M"
            click.echo(
                f"{variant.name:<24}{spec.stage:>5}  {spec.name:<20}{spec.kind:<10}"
                f"{describe_input(spec):<30}{spec.backbone:<38}{params:>8}"
            )


def describe_input(spec) -> str:
    """'10 Sag T1 @224', or for crops '10x 3-slice 32px crops'."""
    if spec.kind == "crops":
        return f"{len(spec.targets)}x {spec.crop.slices}-slice {spec.crop.size}px crops"
    short = {"Sagittal T1": "Sag T1", "Sagittal T2/STIR": "Sag T2", "Axial T2": "Ax T2"}
    stacks = "+".join(
        f"{n} {short[t]}" for t, n in zip(spec.plan.series_types, spec.plan.slices, strict=True)
    )
    return f"{stacks} @{spec.plan.size}"


def variant_argument(func):
    return click.argument("variant", metavar="VARIANT")(func)


@main.command()
@variant_argument
@click.option("--data", type=existing_dir, help=DATA_HELP)
@click.option("--out", type=out_dir, help="Run folder [runs/VARIANT-N; with --resume runs/latest].")
@click.option(
    "--cache",
    type=out_dir,
    help="Cache from `zoo prepare` [runs/cache-POLICY-SIZEpx-DATA, shared by runs].",
)
@click.option(
    "--cache-layout",
    type=click.Choice(CACHE_LAYOUTS),
    help=f"Layout of a cache this run prepares [{DEFAULT_CACHE_LAYOUT}]; png is the notebooks' "
    "layout.",
)
@click.option("--folds", help="'all' or a list like 0,2 [all].")
@click.option("--epochs", type=click.IntRange(1), help="Epochs per fold [variant default].")
@click.option("--batch-size", type=click.IntRange(1), help="Batch size [variant default].")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), help="Peak learning rate.")
@click.option("--size", type=click.IntRange(16), help="Input pixels, every model [variant].")
@click.option("--grad-accum", type=click.IntRange(1), help="Gradient accumulation steps.")
@click.option("--aug", help="Augmentation preset: seed0816, seed0823, seed0828, light, none.")
@device_option
@click.option(
    "--amp",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "bf16", "fp16", "none"]),
    help="Mixed precision on CUDA (auto: bf16 on sm80+, else fp16 with a GradScaler).",
)
@click.option(
    "--weights",
    type=click.Path(exists=True, path_type=Path),
    help="Pretrained timm weights: a file, or a folder of files named by timm model name.",
)
@click.option("--models", help="Train only these per-series models, e.g. axial_t2.")
@click.option(
    "--policy",
    type=click.Choice(sorted(POLICIES)),
    help="Slice policy [the variant's]; must match an existing --cache.",
)
@click.option("--stratify", is_flag=True, default=None, help="Balance folds on worst severity.")
@click.option("--seed", type=int, help="Run seed [8620].")
@click.option("--workers", type=click.IntRange(0), help="DataLoader workers [min(4, cpus)].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last epoch.")
def train(
    variant: str,
    data: Path | None,
    out: Path | None,
    folds: str,
    models: str | None,
    resume: bool,
    **overrides,
) -> None:
    """Train VARIANT (see `zoo list`): every per-series model on every chosen fold.

    \b
      zoo train tiny_split                      data found by convention, runs/tiny_split-N
      zoo train edgenext_split --data RSNA_DIR --out runs/e1 --weights timm_weights/

    Each fold keeps its best epoch by the official metric. Writes config.json, checkpoints,
    metrics.csv, curves.png, oof_submission.csv, oof_solution.csv, cv.json and prior.json.
    """
    from train.config import TrainConfig, parse_folds
    from train.run import format_summary, run_training
    from zoo.registry import get_variant

    get_variant(variant)  # a misspelt name fails before any folder is made
    overrides["weights"] = str(overrides["weights"]) if overrides["weights"] else None
    overrides["cache"] = str(overrides["cache"]) if overrides["cache"] else None
    overrides["folds"] = parse_folds(folds) if folds else None
    overrides["models"] = models.split(",") if models else None
    # With --resume, only what the user typed may change the saved run (and is checked).
    given = {k: v for k, v in {**overrides, "data": data}.items() if v is not None}
    if resume:
        out = out or resolve_run(None)
        cfg = TrainConfig.for_variant(variant, data or Path("."), out, **overrides)
    else:
        cfg = TrainConfig.for_variant(variant, find_data(data), out or RUNS, **overrides)
        if out is None:
            out = new_run_dir(variant)
            point_latest(out)
            click.echo(f"run: {out} (runs/latest points here)")
            cfg = dataclasses.replace(cfg, out=str(out))
    cv = run_training(cfg, resume=resume, changes=given)
    if cv:
        click.echo(format_summary(cv, out))


@main.command(name="export")
@run_argument
@click.option(
    "--fmt",
    default="all",
    show_default=True,
    help="torchscript, onnx, tensorrt (trt), a comma list, or all.",
)
@click.option(
    "--half", is_flag=True, help="fp16 where the format can (TensorRT; TorchScript on CUDA)."
)
@click.option("--opset", type=click.IntRange(11, 23), help="ONNX opset [17; 18 with --dynamo].")
@click.option(
    "--batch-max",
    default=16,
    show_default=True,
    type=click.IntRange(1),
    help="Largest batch of the dynamic axis (TensorRT profile max).",
)
@click.option("--dynamo", is_flag=True, help="Use torch.export-based ONNX exporter.")
@device_option
def export_cmd(
    run: Path | None,
    fmt: str,
    half: bool,
    opset: int | None,
    batch_max: int,
    dynamo: bool,
    device: str,
) -> None:
    """Export every model and fold of RUN [runs/latest] to RUN/export/, verify each against
    eager PyTorch on validation studies, and record everything in RUN/export/manifest.json.

    \b
      zoo export --fmt onnx                the latest run, ONNX only
      zoo export runs/e1 --fmt all --half  on the target GPU
    """
    from export.formats import parse_formats
    from export.run import export_run

    run = resolve_run(run)
    manifest = export_run(
        run,
        parse_formats(fmt),
        half=half,
        opset=opset,
        batch_max=batch_max,
        dynamo=dynamo,
        device=device,
    )
    for name, model in manifest["models"].items():
        for fold, entries in sorted(model["folds"].items()):
            status = ", ".join(f"{f} {e['status']}" for f, e in entries.items())
            click.echo(f"{name} fold {fold}: {status}")
    click.echo(f"manifest: {Path(run) / 'export' / 'manifest.json'}")


@main.command()
@run_argument
@device_option
@click.option(
    "--batch-size",
    default=KERNEL_BATCH,
    show_default=True,
    type=click.IntRange(1),
    help="Items per timed batch [the kernel's].",
)
@click.option(
    "--runs",
    default=20,
    show_default=True,
    type=click.IntRange(1),
    help="Timed runs after warm-up.",
)
def bench(run: Path | None, device: str, batch_size: int, runs: int) -> None:
    """Time eager PyTorch and every exported format of RUN [runs/latest] (or of every run of a
    `zoo ensemble` folder); write bench.json, bench.csv, bench.png, and the fastest valid
    format per model into the manifest as `selected`; end with the model time per study."""
    from export.bench import bench_run, format_cost, format_table, study_cost
    from zoo.ensemble import read_ensemble

    run = resolve_run(run)
    saved = read_ensemble(run)
    sources = [Path(m["run"]) for m in saved["members"]] if saved else [Path(run)]
    for source in sources:
        table = bench_run(source, device=device, batch_size=batch_size, runs=runs)
        click.echo(f"{source}:\n{format_table(table)}")
        out = source / "export"
        click.echo(
            f"bench: {out / 'bench.csv'}, {out / 'bench.png'}; selected formats in "
            f"{out / 'manifest.json'}"
        )
    click.echo(format_cost({s.name: study_cost(s) for s in sources}))


@main.command()
@click.argument("runs", nargs=-1, type=existing_dir)
@click.option("--out", type=out_dir, help="Folder to write [runs/ensemble-N].")
def ensemble(runs: tuple[Path, ...], out: Path | None) -> None:
    """Weighted average of RUNS [runs/latest] fitted on their out-of-fold predictions: weights
    per condition group minimising the official metric, cross-fitted (fold k's weights never
    see fold k) for the score shown. Writes ensemble.json, its OOF files and ensemble.png;
    `zoo calibrate OUT` and `zoo package OUT` take the folder."""
    from zoo.ensemble import fit_ensemble, format_terms, read_oof, write_ensemble

    members = [read_oof(r) for r in (runs or (resolve_run(None),))]
    fit = fit_ensemble(members)
    out = out or new_run_dir("ensemble")
    content = write_ensemble(fit, out)
    click.echo(
        f"OOF on {content['studies']} common studies, folds {content['folds']} "
        "(official metric, lower is better; 'ensemble' is cross-fitted):"
    )
    click.echo(format_terms(fit.terms))
    click.echo("weights (fitted on every fold, shipped):")
    for group, weights in content["weights"].items():
        shares = ", ".join(f"{m.name} {w:.3f}" for m, w in zip(fit.members, weights, strict=True))
        click.echo(f"  {group:<13}{shares}")
    click.echo(f"ensemble: {out} (ensemble.json, oof_submission.csv, ensemble.png)")


@main.command()
@click.argument("source", required=False, type=existing_dir)
def calibrate(source: Path | None) -> None:
    """Fit a temperature per condition group and a scale on each study's largest spinal severe
    probability (the any-severe term) on SOURCE's out-of-fold predictions (a run or a `zoo
    ensemble` folder) [runs/latest], cross-fitted; writes SOURCE/calibration.json. A group whose
    cross-fitted terms do not improve keeps the identity."""
    from zoo.calibration import cross_fitted_calibration
    from zoo.ensemble import format_terms, read_oof
    from zoo.io import write_json

    source = source or resolve_run(None)
    oof = read_oof(source)
    report = cross_fitted_calibration(oof.labels, oof.probs, oof.folds)
    write_json(Path(source) / "calibration.json", report)
    click.echo(f"calibration of {source}: {report['family']}")
    click.echo(format_terms({"before": report["before"], "after (cross-fitted)": report["after"]}))
    params = report["params"]
    click.echo(
        "shipped: temperature "
        + ", ".join(f"{g} {t:.3f}" for g, t in params["temperature"].items())
        + f"; any-severe scale {params['any_severe_scale']:.3f}"
    )
    for note in report["notes"]:
        click.echo(f"  {note}")
    click.echo(f"calibration: {Path(source) / 'calibration.json'}")


@main.command()
@click.argument("runs", nargs=-1, type=existing_dir)
@click.option("--out", required=True, type=out_dir, help="Dataset folder to write.")
@click.option(
    "--formats",
    "which",
    default="selected",
    show_default=True,
    type=click.Choice(["selected", "all"]),
    help="selected: each model's selected format plus ONNX, TorchScript and eager fallbacks.",
)
@click.option("--title", help="Kaggle dataset title, 6-50 characters [zoo VARIANT models].")
@click.option(
    "--id",
    "dataset_id",
    help="Kaggle dataset id OWNER/SLUG [$KAGGLE_USERNAME or ~/.kaggle/kaggle.json, zoo-VARIANT].",
)
@click.option(
    "--wheelhouse",
    type=existing_dir,
    help="Folder of extra wheels to ship (onnxruntime-gpu, tensorrt, pylibjpeg, ...).",
)
def package(
    runs: tuple[Path, ...],
    out: Path,
    which: str,
    title: str | None,
    dataset_id: str | None,
    wheelhouse: Path | None,
) -> None:
    """Write a Kaggle dataset folder (models, manifest, prior, wheels) and its kernel, from RUNS
    [runs/latest]: one run (with RUN/calibration.json if `zoo calibrate` made one), several runs
    (weights fitted on their out-of-fold predictions), or a `zoo ensemble` folder (its runs,
    weights and calibration). Then: `kaggle datasets create -p OUT --dir-mode zip` (without
    --dir-mode the CLI leaves the sub-folders behind), wait until the dataset is ready, and
    `kaggle kernels push -p OUT/kernel`."""
    from kaggle_kernel.package import package as run_package
    from kaggle_kernel.package import upload_steps

    sources = list(runs) or [resolve_run(None)]
    summary = run_package(sources, out, which, title, dataset_id, wheelhouse)
    click.echo(
        f"package: {summary['out']} ({len(summary['runs'])} run(s), "
        f"{'calibrated' if summary['calibrated'] else 'no calibration'}, "
        f"{summary['bytes'] / 2**20:.1f} MiB, wheels "
        f"{', '.join(summary['wheels']) or 'none'}) for {summary['dataset_id']}\n"
        + upload_steps(out, summary["dataset_id"])
    )


@main.command()
@click.option(
    "--model",
    "model_dir",
    required=True,
    type=existing_dir,
    help="A folder made by `zoo package` (or RUN/export with prior.json beside).",
)
@click.option(
    "--data",
    type=existing_dir,
    help="Folder with test_series_descriptions.csv and test_images/ [found as for train].",
)
@click.option(
    "--out",
    default=Path("submission.csv"),
    show_default=True,
    type=click.Path(dir_okay=False, path_type=Path),
)
@click.option(
    "--runtime",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", *RUNTIMES]),
    help="auto: every runtime proven on this machine, the fastest kept; or one, then the chain.",
)
@device_option
@click.option(
    "--workers",
    default=2,
    show_default=True,
    type=click.IntRange(0),
    help="Decoding processes (overlap DICOM reading with the models).",
)
@click.option("--batch-size", default=KERNEL_BATCH, show_default=True, type=click.IntRange(1))
@click.option(
    "--work",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where rebuilt TensorRT engines go [beside --out].",
)
def predict(
    model_dir: Path,
    data: Path,
    out: Path,
    runtime: str,
    device: str,
    workers: int,
    batch_size: int,
    work: Path | None,
) -> None:
    """Write submission.csv for every test study: the Kaggle kernel's code path."""
    from kaggle_kernel.predict import predict as run_predict

    logging.getLogger("kaggle_kernel").setLevel(logging.INFO)  # runtime choice, environment
    summary = run_predict(
        model_dir,
        find_data(data, "test"),
        out,
        runtime=runtime,
        device=device,
        workers=workers,
        batch_size=batch_size,
        work=work,
    )
    click.echo(str(summary))


@main.command()
@click.option("--out", default=Path("demo"), show_default=True, type=out_dir, help="Work folder.")
@click.option(
    "--studies", default=60, show_default=True, type=click.IntRange(8), help="Train studies."
)
@device_option
@click.option(
    "--variant",
    default=DEMO_VARIANTS[0],
    show_default=True,
    type=click.Choice(DEMO_VARIANTS),
    help="A CPU-sized variant: one stage, or localise -> crop -> classify.",
)
def demo(out: Path, studies: int, device: str, variant: str) -> None:
    """The whole path on built-in synthetic data, ending in one summary. Reruns reuse stages."""
    from zoo.cli.demo import run_demo

    click.echo(run_demo(out, studies=studies, device=device, variant=variant))
