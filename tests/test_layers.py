"""Shared facts live in one place: model inputs, and the one-way arrows between packages."""

import ast
from pathlib import Path

import numpy as np
import pytest

from zoo.data import channel_picks, has_input, model_input, resize_slices, stack_channels
from zoo.registry import SeriesPlan

ROOT = Path(__file__).resolve().parents[1]
CONCAT = SeriesPlan(("Sagittal T1", "Sagittal T2/STIR", "Axial T2"), (10, 10, 10), 8)


def reader(available: dict[str, int]):
    """Series type -> images tagged with (type value, slice index)."""

    def read(series_type, picks):
        if series_type not in available:
            return None
        return [np.full((8, 8), available[series_type] * 100 + k, np.uint8) for k in picks]

    return read


def test_a_concat_model_blanks_only_the_missing_series_channels():
    stack = stack_channels(CONCAT, reader({"Sagittal T1": 1, "Axial T2": 2}), 8)
    assert stack.shape == (8, 8, 30)
    assert [int(v) for v in stack[0, 0, :10]] == [100 + k for k in range(10)]
    assert not stack[..., 10:20].any()  # Sagittal T2/STIR is missing: black
    picks = list(channel_picks("Axial T2", 10))  # 10 of the cache's 20, re-stepped
    assert [int(v) for v in stack[0, 0, 20:]] == [200 + k for k in picks]
    assert stack_channels(CONCAT, reader({}), 8) is None  # nothing: no input at all
    assert has_input(CONCAT, {"Axial T2"}) and not has_input(CONCAT, set())


def imports_of(path: Path, depth: int = 1) -> set[str]:
    """Module names (first `depth` parts) a module imports anywhere, lazily too."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {".".join(alias.name.split(".")[:depth]) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(".".join(node.module.split(".")[:depth]))
    return names


def test_the_core_never_imports_train_export_or_the_kernel():
    core = [p for p in (ROOT / "zoo").rglob("*.py") if "cli" not in p.relative_to(ROOT).parts]
    assert len(core) > 10
    for path in core:
        assert not imports_of(path) & {"train", "export", "kaggle_kernel"}, path
    for package in ("train", "export", "kaggle_kernel"):  # and none imports the CLI layer
        for path in (ROOT / package).rglob("*.py"):
            assert "zoo.cli" not in imports_of(path, depth=2), path


def test_the_kernels_model_input_is_the_training_transform():
    """The kernel's path (slices resized by resize_slices, then model_input) gives what the
    validation transform gives on the full-size stack."""
    from zoo.augment import build_transform

    rng = np.random.default_rng(0)
    for channels, size in ((10, 224), (20, 128), (40, 64), (3, 48)):
        slices = list(rng.integers(0, 256, size=(channels, 96, 96), dtype=np.uint8))
        expected = build_transform("none", size, train=False)(image=np.stack(slices, -1))["image"]
        got = model_input(resize_slices(slices, size), size)
        assert np.allclose(got, expected.transpose(2, 0, 1), atol=1e-6)
    same = rng.integers(0, 256, size=(32, 32, 20), dtype=np.uint8)
    expected = build_transform("none", 32, train=False)(image=same)["image"]
    assert np.allclose(model_input(same, 32), expected.transpose(2, 0, 1), atol=1e-6)
    with pytest.raises(ValueError, match="resize it first"):
        model_input(same, 48)


def test_the_cli_names_the_kernels_runtimes_and_batch_as_the_table_does():
    """The CLI keeps them as constants so `zoo --help` imports no torch; they must agree."""
    from export.formats import CHAIN
    from export.runner import KERNEL_BATCH
    from zoo import cli

    assert cli.RUNTIMES == CHAIN and cli.KERNEL_BATCH == KERNEL_BATCH


def test_the_demo_offers_its_cpu_sized_variants():
    import click

    from zoo import cli
    from zoo.cli.demo import DEMO_VARIANTS
    from zoo.registry import get_variant

    option = next(p for p in cli.main.commands["demo"].params if p.name == "variant")
    assert isinstance(option.type, click.Choice) and tuple(option.type.choices) == DEMO_VARIANTS
    assert {get_variant(v).models[0].plan.size for v in DEMO_VARIANTS} == {128}
