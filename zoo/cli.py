"""The `zoo` command line. Heavy modules are imported inside each command, so `zoo --help`
is instant and train/export/kaggle_kernel stay optional imports of zoo, never the reverse."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from zoo.errors import ZooError
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
    """Model zoo and export toolkit for RSNA 2024 Lumbar Spine Degenerative Classification."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="zoo: %(levelname)s: %(message)s",
        stream=sys.stderr,
    )


existing_dir = click.Path(exists=True, file_okay=False, path_type=Path)
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


@main.command()
@click.option("--data", required=True, type=existing_dir, help="Competition folder (RSNA_DIR).")
@click.option("--out", required=True, type=out_dir, help="Cache folder to write.")
@click.option("--size", default=512, show_default=True, type=int, help="PNG side in pixels.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1), help="Processes.")
@click.option(
    "--policy",
    default=DEFAULT_POLICY,
    show_default=True,
    type=click.Choice(sorted(POLICIES)),
    help="Slice selection policy (see zoo.policies).",
)
@click.option("--split", default="train", show_default=True, type=click.Choice(["train", "test"]))
def prepare(data: Path, out: Path, size: int, workers: int, policy: str, split: str) -> None:
    """Convert every study's DICOM series to the PNG cache training reads (resumable)."""
    from zoo.prepare import prepare as run_prepare

    summary = run_prepare(data, out, size=size, workers=workers, policy=policy, split=split)
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


@main.command()
@click.option("--out", default=Path("demo"), show_default=True, type=out_dir, help="Work folder.")
@click.option(
    "--studies", default=60, show_default=True, type=click.IntRange(8), help="Train studies."
)
@click.option(
    "--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"])
)
def demo(out: Path, studies: int, device: str) -> None:
    """The whole path on built-in synthetic data, ending in one summary. Reruns reuse stages."""
    from zoo.demo import run_demo

    click.echo(run_demo(out, studies=studies, device=device))


if __name__ == "__main__":
    main()
