"""The commands as users type them: data, runs and cache found by convention."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from zoo.cli import main
from zoo.locations import KAGGLE_DATA

FAST = ["--epochs", "1", "--size", "32", "--workers", "0", "--batch-size", "4"]


def zoo(*args):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result.output


def test_train_export_bench_with_nothing_but_the_variant(tmp_path, synth12, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZOO_DATA", str(synth12))
    out = zoo("train", "tiny_split", "--folds", "0", *FAST)
    assert f"data: {synth12} ($ZOO_DATA)" in out and "run: runs/tiny_split-1" in out
    assert (tmp_path / "runs" / "latest").read_text().strip() == "tiny_split-1"
    out = zoo("export", "--fmt", "onnx")
    assert "run: runs/tiny_split-1 (runs/latest)" in out
    manifest = json.loads((tmp_path / "runs/tiny_split-1/export/manifest.json").read_text())
    assert all(m["folds"]["0"]["onnx"]["status"] == "ok" for m in manifest["models"].values())
    zoo("bench", "--runs", "2", "--batch-size", "2")
    bench = pd.read_csv(tmp_path / "runs/tiny_split-1/export/bench.csv")
    assert set(bench["format"]) >= {"torch", "onnx"}
    out = zoo("train", "tiny_split", "--folds", "0", *FAST)
    assert "run: runs/tiny_split-2" in out and "0 converted, 12 already done" in out  # cache
    caches = [p.name for p in (tmp_path / "runs").iterdir() if p.name.startswith("cache-")]
    assert len(caches) == 1 and caches[0].startswith("cache-itk8191-32px-")
    zoo("export", "--fmt", "onnx")
    out = zoo("bench", "--runs", "2", "--batch-size", "2")
    assert "run: runs/tiny_split-2 (runs/latest)" in out
    assert (tmp_path / "runs/tiny_split-2/export/bench.csv").is_file()
    out = zoo("export", "runs/tiny_split-1", "--fmt", "torchscript")  # an explicit RUN wins
    assert "run:" not in out and "fold 0: torch ok" in out


@pytest.mark.skipif(KAGGLE_DATA.exists(), reason="a Kaggle mount is present")
def test_without_data_anywhere_the_error_lists_every_place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZOO_DATA", str(tmp_path / "nowhere"))
    result = CliRunner().invoke(main, ["train", "tiny_split"])
    assert result.exit_code == 1
    message = result.output.strip()
    assert len(message.splitlines()) == 1, message
    for place in (str(tmp_path / "nowhere"), str(KAGGLE_DATA), "rsna-2024-lumbar", "data"):
        assert place in message
    assert "--data" in message and "ZOO_DATA" in message
    assert not (tmp_path / "runs").exists()  # nothing made before the error


def test_commands_taking_a_run_say_when_there_is_none(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["bench"])
    assert result.exit_code == 1 and "no runs/latest" in result.output
