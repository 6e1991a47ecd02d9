"""The GPU and Kaggle path on the CPU: runtimes proven before they are trusted, the chain, the
upload as the real Kaggle CLI performs it, the kernel finding its package, and the pieces of
the TensorRT and mixed-precision logic that run without a GPU."""

import importlib.util
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from export.manifest import artifact_entry, entry_files
from export.tensorrt import open_timing_cache, save_timing_cache
from kaggle_kernel.package import package
from kaggle_kernel.predict import predict
from zoo.environment import amp_dtype
from zoo.errors import ZooError

ROOT = Path(__file__).resolve().parents[1]


def kernel_script():
    """kaggle_kernel/kernel.py as the kernel runs it: a standalone script."""
    spec = importlib.util.spec_from_file_location(
        "zoo_kernel_script", ROOT / "kaggle_kernel/kernel.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_upload_command_carries_every_file_the_manifest_names(packaged):
    pytest.importorskip("kaggle", reason="the Kaggle CLI is in the dev extra")
    from kaggle_offline import uploaded_files

    upload = uploaded_files(packaged, ("--dir-mode", "zip"))  # as the README says
    names = {f["name"]: f for f in upload["files"]}
    assert {"manifest.json", "prior.json", "wheels.zip", "kernel.zip"} <= set(names)
    manifest = json.loads((packaged / "manifest.json").read_text())
    paths = [model["reference"]["path"] for model in manifest["models"].values()]
    for model in manifest["models"].values():
        for entries in model["folds"].values():
            paths += [f["path"] for e in entries.values() for f in entry_files(e)]
    for path in paths:
        top, rest = path.split("/", 1)
        assert rest in names[f"{top}.zip"]["members"], path
    assert any(m.startswith("zoo-") for m in names["wheels.zip"]["members"])
    assert upload["id"] == "tester/zoo-tiny-split" and upload["license"] == "CC0-1.0"
    skipped = uploaded_files(packaged, ())  # without --dir-mode the models stay behind
    assert sorted(f["name"] for f in skipped["files"]) == ["manifest.json", "prior.json"]


def test_package_refuses_bad_ids_and_titles_and_leaves_nothing(packaged, tmp_path, monkeypatch):
    run = packaged.parent / "run"
    for bad, match in (("foo", "OWNER/SLUG"), ("me/short", "6-50"), ("me/Zoo_Models", "a-z")):
        with pytest.raises(ZooError, match=match):
            package(run, tmp_path / "out", dataset_id=bad)
    with pytest.raises(ZooError, match="6-50 characters"):
        package(run, tmp_path / "out", dataset_id="me/zoo-models", title="zoo")
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(ZooError, match="Kaggle username"):
        package(run, tmp_path / "out")
    assert list(tmp_path.iterdir()) == [tmp_path / "nowhere"] or not list(tmp_path.iterdir())
    config = tmp_path / "kaggle"
    config.mkdir()
    (config / "kaggle.json").write_text(json.dumps({"username": "janedoe", "key": "x"}))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(config))
    summary = package(run, tmp_path / "out", wheelhouse=packaged / "wheels")
    assert summary["dataset_id"] == "janedoe/zoo-tiny-split"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []


def test_the_kernel_finds_its_package_deeper_and_zipped(packaged, tmp_path, synth12):
    kernel = kernel_script()
    deeper = tmp_path / "input" / "tester" / "zoo-tiny-split"
    shutil.copytree(packaged, deeper)
    assert kernel.find_package(tmp_path / "input", "zoo-tiny-split") == deeper
    zipped = tmp_path / "zipped" / "zoo-tiny-split"  # what `--dir-mode zip` leaves mounted
    zipped.mkdir(parents=True)
    for item in packaged.iterdir():
        if item.is_dir():
            shutil.make_archive(str(zipped / item.name), "zip", item)
        else:
            shutil.copyfile(item, zipped / item.name)
    found = kernel.find_package(tmp_path / "zipped", "zoo-tiny-split")
    ready = kernel.materialise(found, tmp_path / "work")
    assert ready == tmp_path / "work" and (ready / "wheels").is_dir()
    summary = predict(ready, synth12, tmp_path / "sub.csv", workers=0, progress=False)
    assert set(summary.runtimes.values()) <= {"onnx", "torchscript", "torch"}
    assert len(pd.read_csv(tmp_path / "sub.csv")) == 25 * summary.studies


def test_every_runtime_writes_the_same_submission(packaged, synth12, tmp_path):
    subs = {}
    for runtime in ("auto", "onnx", "torchscript", "torch"):
        out = tmp_path / f"{runtime}.csv"
        summary = predict(packaged, synth12, out, runtime=runtime, workers=0, progress=False)
        if runtime != "auto":
            assert set(summary.runtimes.values()) == {runtime}
        subs[runtime] = pd.read_csv(out).set_index("row_id").sort_index()
    for runtime, sub in subs.items():
        assert np.abs(sub.to_numpy() - subs["torch"].to_numpy()).max() < 1e-5, runtime


def swap_artifact(package_dir: Path, model: str, fmt: str, make) -> None:
    """Replace one fold's artifact by what `make(path)` writes, with a matching sha256, so it
    passes the checksum and loads: only running it can tell it is wrong."""
    manifest = json.loads((package_dir / "manifest.json").read_text())
    entry = manifest["models"][model]["folds"]["0"][fmt]
    path = package_dir / entry["path"]
    make(path)
    entry.update(artifact_entry(package_dir, path))
    (package_dir / "manifest.json").write_text(json.dumps(manifest))


def test_a_runtime_that_loads_but_fails_its_first_batch_is_skipped(packaged, synth12, tmp_path):
    copy = tmp_path / "dataset"
    shutil.copytree(packaged, copy)
    axial_onnx = copy / "axial_t2" / "fold0" / "model.onnx"  # 20 input channels, not 10
    swap_artifact(copy, "sagittal_t1", "onnx", lambda p: shutil.copyfile(axial_onnx, p))

    class BakedDevice(torch.nn.Module):  # what a trace made on another device carries
        def forward(self, x):
            return x.mean((2, 3))[:, :1].repeat(1, 30) + torch.zeros(1, device="cuda")

    def scripted(path: Path) -> None:
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit is deprecated": known
        meta = {"precision": "fp32", "traced_on": "cpu"}
        torch.jit.save(
            torch.jit.script(BakedDevice()), str(path), _extra_files={"zoo.json": json.dumps(meta)}
        )

    if not torch.cuda.is_available():
        swap_artifact(copy, "axial_t2", "torchscript", scripted)
    summary = predict(
        copy, synth12, tmp_path / "sub.csv", runtime="onnx", workers=0, progress=False
    )
    assert summary.runtimes["sagittal_t1"] != "onnx"  # loaded, then failed its first batch
    summary = predict(
        copy, synth12, tmp_path / "sub2.csv", runtime="torchscript", workers=0, progress=False
    )
    if not torch.cuda.is_available():
        assert summary.runtimes["axial_t2"] != "torchscript"
    assert len(pd.read_csv(tmp_path / "sub2.csv")) == 25 * summary.studies


def test_a_torchscript_traced_for_another_device_is_refused(packaged):
    from export import torchscript

    path = packaged / "sagittal_t1" / "fold0" / "model.torchscript"
    with pytest.raises(RuntimeError, match="traced on cuda"):
        torchscript.load(path, "cpu", None, {"traced_on": "cuda"})


def test_amp_auto_is_fp16_on_a_t4_and_bf16_from_ampere(monkeypatch):
    for capability, expected in (
        ((7, 5), torch.float16),
        ((8, 0), torch.bfloat16),
        ((8, 9), torch.bfloat16),
    ):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda c=capability: c)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # it lies
        assert amp_dtype("auto", "cuda") == expected, capability
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda: (7, 5))
    with pytest.raises(ZooError, match="no native bf16"):
        amp_dtype("bf16", "cuda")
    assert amp_dtype("auto", "cpu") is None and amp_dtype("fp16", "cuda") == torch.float16


class FakeCache:
    def __init__(self, blob: bytes):
        self.blob = blob

    def serialize(self) -> bytes:
        return b"built:" + self.blob


class FakeConfig:
    """The three timing-cache calls of TensorRT's IBuilderConfig, as they behave on another GPU:
    a foreign cache is created but set_timing_cache returns False; get_timing_cache may be None."""

    def __init__(self, accepts: set[bytes], keeps_cache: bool = True):
        self.accepts, self.keeps, self.current = accepts, keeps_cache, None

    def create_timing_cache(self, blob: bytes) -> FakeCache:
        if blob == b"garbage":
            raise RuntimeError("Magic tag does not match")
        return FakeCache(blob)

    def set_timing_cache(self, cache: FakeCache, ignore_mismatch: bool) -> bool:
        assert ignore_mismatch is False  # a foreign cache is never merged in
        if cache.blob and cache.blob not in self.accepts:
            return False
        self.current = cache
        return True

    def get_timing_cache(self):
        return self.current if self.keeps else None


def test_a_timing_cache_from_another_gpu_is_replaced_not_fatal(tmp_path):
    cache, reused = open_timing_cache(FakeConfig({b"t4"}), b"t4")
    assert reused and cache.blob == b"t4"
    for foreign in (b"l4", b"garbage"):
        config = FakeConfig({b"t4"})
        cache, reused = open_timing_cache(config, foreign)
        assert not reused and config.current.blob == b""  # a fresh cache, the build goes on
    assert save_timing_cache(config, tmp_path / "timing.cache")
    assert (tmp_path / "timing.cache").read_bytes() == b"built:"
    assert not save_timing_cache(FakeConfig(set(), keeps_cache=False), tmp_path / "none.cache")
    assert not (tmp_path / "none.cache").exists()


def test_predict_needs_neither_albumentations_nor_timm(packaged, synth12, tmp_path):
    blocker = (
        "import sys; sys.modules['albumentations'] = None; sys.modules['timm'] = None; "
        "from zoo.cli import main; main()"
    )
    out = tmp_path / "sub.csv"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            blocker,
            "predict",
            "--model",
            str(packaged),
            "--data",
            str(synth12),
            "--out",
            str(out),
            "--runtime",
            "onnx",
            "--workers",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "onnx (" in result.stderr and "prior for" not in result.stderr.split("model axial")[0]
    assert len(pd.read_csv(out)) == 25 * 3
