import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests import dicom_factory


@pytest.fixture(scope="session")
def synth12(tmp_path_factory) -> Path:
    """A 12 + 3 study synthetic dataset at 64 px, made once per test session."""
    from zoo.synth import make_synthetic_dataset

    out = tmp_path_factory.mktemp("synth") / "s12"
    make_synthetic_dataset(out, studies=12, test_studies=3, seed=0, size=64, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_run(synth12, tmp_path_factory) -> Path:
    """tiny_split trained for one epoch on fold 0 at 32 px: a real run folder, made once."""
    from train.config import TrainConfig
    from train.run import run_training

    out = tmp_path_factory.mktemp("runs") / "tiny"
    cfg = TrainConfig.for_variant(
        "tiny_split", synth12, out, folds=[0], epochs=1, batch_size=4, workers=0, size=32
    )
    run_training(cfg)
    return out


@pytest.fixture(scope="session")
def tiny_cache(tiny_run) -> Path:
    """The PNG cache tiny_run trained from (beside the run, by convention)."""
    from zoo.runinfo import read_run

    return read_run(tiny_run).cache


def export_bench_package(run: Path, folder: Path, dataset_id: str) -> Path:
    """A copy of a run exported (TorchScript, ONNX), benched and packaged: the dataset folder
    a kernel attaches."""
    import shutil

    from export.bench import bench_run
    from export.formats import parse_formats
    from export.run import export_run
    from kaggle_kernel.package import package

    copy = folder / "run"
    shutil.copytree(run, copy)
    export_run(copy, parse_formats("torchscript,onnx"), device="cpu")
    bench_run(copy, device="cpu", batch_size=2, runs=2)
    package(copy, folder / "dataset", dataset_id=dataset_id)
    return folder / "dataset"


@pytest.fixture(scope="session")
def packaged(tiny_run, tmp_path_factory) -> Path:
    """train (fixture) -> export -> bench -> package: the dataset folder a kernel attaches."""
    return export_bench_package(
        tiny_run, tmp_path_factory.mktemp("kernel"), "tester/zoo-tiny-split"
    )


@pytest.fixture(scope="session")
def two_stage_run(synth12, tmp_path_factory) -> Path:
    """two_stage_tiny for one epoch on fold 0 at 64 px: localisers, then crop classifiers."""
    from train.config import TrainConfig
    from train.run import run_training

    out = tmp_path_factory.mktemp("runs2") / "two_stage"
    cfg = TrainConfig.for_variant(
        "two_stage_tiny",
        synth12,
        out,
        folds=[0],
        epochs=1,
        batch_size=4,
        workers=0,
        size=64,
        device="cpu",
    )
    run_training(cfg)
    return out


@pytest.fixture(scope="session")
def two_stage_packaged(two_stage_run, tmp_path_factory) -> Path:
    return export_bench_package(
        two_stage_run, tmp_path_factory.mktemp("kernel2"), "tester/zoo-two-stage-tiny"
    )


@pytest.fixture(scope="session")
def ensemble_runs(synth12, tmp_path_factory) -> list[Path]:
    """Two tiny_split runs that differ only in their seed, folds 0 and 1, exported to ONNX."""
    from export.formats import parse_formats
    from export.run import export_run
    from train.config import TrainConfig
    from train.run import run_training

    runs = []
    for seed in (1, 2):
        out = tmp_path_factory.mktemp("ens") / f"tiny_split-{seed}"
        cfg = TrainConfig.for_variant(
            "tiny_split",
            synth12,
            out,
            folds=[0, 1],
            epochs=1,
            batch_size=4,
            workers=0,
            size=32,
            seed=seed,
        )
        run_training(cfg)
        export_run(out, parse_formats("onnx"), device="cpu")
        runs.append(out)
    return runs
