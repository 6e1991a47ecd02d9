"""Export, parity, manifest and bench on a real trained tiny_split run, with real runtimes."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from export import onnx as onnx_format
from export import torchscript as torchscript_format
from export.bench import bench_run, select_formats
from export.formats import CHAIN, EXPORTABLE, FORMATS, SHIPPED, chain_for, parse_formats
from export.manifest import read_manifest, sha256, verified_path
from export.run import export_run
from zoo.errors import ZooError
from zoo.runinfo import spec_from_dict


@pytest.fixture(scope="module")
def exported(tiny_run, tmp_path_factory):
    run = tmp_path_factory.mktemp("exported") / "run"
    shutil.copytree(tiny_run, run)
    export_run(run, parse_formats("all"), device="cpu")  # benched and loaded on the CPU
    return run


def test_every_fold_has_torchscript_and_onnx_with_parity(exported):
    manifest = read_manifest(exported / "export")
    assert set(manifest["models"]) == {"sagittal_t1", "sagittal_t2_stir", "axial_t2"}
    for model in manifest["models"].values():
        entries = model["folds"]["0"]
        for name in ("torchscript", "onnx"):
            entry = entries[name]
            assert entry["status"] == "ok", entry
            assert entry["parity"]["passed"] and entry["parity"]["max_abs_prob_diff"] < 1e-4
            assert entry["parity"]["studies"] >= 2
            assert abs(entry["parity"]["score_diff"]) < 1e-4
        assert entries["onnx"]["opset"] == 17 and entries["onnx"]["exporter"] == "torchscript"
        assert model["normalisation"] == {"mean": 0.5, "std": 0.5, "max_pixel_value": 255.0}
        assert model["input_shape"][1:] == [32, 32]


def test_tensorrt_row_says_why_it_is_unavailable(exported):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the TensorRT row is a real export here")
    entry = read_manifest(exported / "export")["models"]["axial_t2"]["folds"]["0"]["tensorrt"]
    assert entry["status"] == "unavailable" and "CUDA" in entry["reason"]


def test_metadata_round_trips(exported):
    base = exported / "export" / "sagittal_t1" / "fold0"
    for meta in (
        torchscript_format.read_metadata(base / "model.torchscript"),
        onnx_format.read_metadata(base / "model.onnx"),
    ):
        assert meta["variant"] == "tiny_split" and meta["model"] == "sagittal_t1"
        assert meta["input_shape"] == [10, 32, 32]
        assert meta["labels"][0] == "left_neural_foraminal_narrowing_l1_l2"
        assert len(meta["labels"]) == 10


def test_onnx_has_a_dynamic_batch_and_named_io(exported):
    import onnxruntime as ort

    path = exported / "export" / "axial_t2" / "fold0" / "model.onnx"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "input" and session.get_outputs()[0].name == "logits"
    for batch in (1, 3):
        out = session.run(None, {"input": np.zeros((batch, 20, 32, 32), np.float32)})[0]
        assert out.shape == (batch, 30)


def test_sha256_is_recorded_and_a_corrupt_artifact_is_caught(exported, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(exported, run)
    export_dir = run / "export"
    entry = read_manifest(export_dir)["models"]["sagittal_t1"]["folds"]["0"]["onnx"]
    path = verified_path(export_dir, entry)
    assert entry["sha256"] == sha256(path) and entry["bytes"] == path.stat().st_size
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ZooError, match="sha256 .* does not match"):
        verified_path(export_dir, entry)
    table = bench_run(run, device="cpu", batch_size=2, runs=2)
    row = table[(table["model"] == "sagittal_t1") & (table["format"] == "onnx")].iloc[0]
    assert row["status"] == "corrupt" and "sha256" in row["reason"]
    selected = read_manifest(export_dir)["models"]["sagittal_t1"]["selected"]["format"]
    assert selected != "onnx"


def test_bench_has_a_row_per_format_and_selects_a_passing_one(exported, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(exported, run)
    table = bench_run(run, device="cpu", batch_size=2, runs=3)
    assert len(table) == 3 * len(FORMATS)
    for name, rows in table.groupby("model"):
        assert list(rows["format"]) == list(FORMATS)
        ok = rows[rows["status"] == "ok"]
        assert set(ok["format"]) >= {"torch", "torchscript", "onnx"}
        assert (ok["p50_ms"] > 0).all() and (ok["p90_ms"] >= ok["p50_ms"]).all()
        fastest = ok.sort_values("p50_ms").iloc[0]["format"]
        assert read_manifest(run / "export")["models"][name]["selected"]["format"] == fastest
        # a row's size is what its runner loads: the fp32 ONNX, not its fp16 twin beside it
        onnx = read_manifest(run / "export")["models"][name]["folds"]["0"]["onnx"]
        size = (run / "export" / onnx["path"]).stat().st_size
        assert "fp16" in onnx["variants"]
        assert rows.set_index("format").loc["onnx", "size_mb"] == round(size / 2**20, 2)
    if not torch.cuda.is_available():
        gpu_rows = table[table["format"].isin(["tensorrt", "torch_fp16", "compile"])]
        assert (gpu_rows["status"] == "unavailable").all() and gpu_rows["reason"].str.len().all()
    for name in ("bench.json", "bench.csv", "bench.png"):
        assert (run / "export" / name).stat().st_size > 0
    assert json.loads((run / "export" / "bench.json").read_text())["device"] == "cpu"


def test_selection_skips_faster_formats_that_failed_parity():
    manifest = {"models": {"m": {}}}
    table = pd.DataFrame(
        [
            {"model": "m", "format": "torch", "status": "ok", "p50_ms": 10.0},
            {"model": "m", "format": "onnx", "status": "parity_failed", "p50_ms": 1.0},
            {"model": "m", "format": "torchscript", "status": "ok", "p50_ms": 5.0},
            {"model": "m", "format": "tensorrt", "status": "unavailable", "p50_ms": None},
        ]
    )
    assert select_formats(manifest, table, "cpu", 4) == {"m": "torchscript"}
    selected = manifest["models"]["m"]["selected"]
    assert selected["format"] == "torchscript" and selected["batch"] == 4
    assert set(selected["measured_on"]) == {"gpu", "cpu", "cpu_count", "versions"}


def test_a_failing_format_is_a_row_not_a_crash(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    manifest = export_run(run, parse_formats("onnx,torchscript"), opset=99)  # no such opset
    entries = manifest["models"]["sagittal_t1"]["folds"]["0"]
    assert entries["onnx"]["status"] == "export_failed"
    assert "99" in entries["onnx"]["reason"]
    assert entries["torchscript"]["status"] == "ok"  # the next format still ran
    assert (
        read_manifest(run / "export")["models"]["axial_t2"]["folds"]["0"]["torch"]["status"] == "ok"
    )


def test_format_table_and_names():
    assert EXPORTABLE == ("torchscript", "onnx", "openvino", "tensorrt")
    assert [f.name for f in parse_formats("trt,onnx")] == ["tensorrt", "onnx"]
    with pytest.raises(ZooError, match="did you mean onnx"):
        parse_formats("onx")
    with pytest.raises(ZooError, match="built from the checkpoint"):
        parse_formats("compile")
    assert FORMATS["tensorrt"].gpu_only and not FORMATS["onnx"].gpu_only
    assert CHAIN[-1] == "torch" and set(CHAIN) == set(FORMATS)
    # TensorRT ships its ONNX, not engines; OpenVINO its IR, compiled for the CPU it runs on
    assert SHIPPED == ("onnx", "torch", "openvino", "torchscript")
    assert [f.name for f in chain_for("onnx")][:2] == ["onnx", "tensorrt"]


def test_the_fp16_onnx_keeps_overflowing_ops_in_fp32_and_passes_parity(exported):
    import onnx

    entry = read_manifest(exported / "export")["models"]["axial_t2"]["folds"]["0"]["onnx"]
    fp16 = entry["variants"]["fp16"]
    assert fp16["status"] == "ok" and fp16["precision"] == "fp16", fp16
    assert fp16["parity"]["max_abs_prob_diff"] < 2e-2 and fp16["parity"]["passed"]
    graph = onnx.load(str(exported / "export" / fp16["path"])).graph
    float16, float32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    weights = {t.name: t.data_type for t in graph.initializer}
    assert float16 in weights.values()  # the weights are fp16 ...
    made_by = {out: node for node in graph.node for out in node.output}
    norms = [n for n in graph.node if n.op_type == "LayerNormalization"]
    assert norms
    for node in norms:  # ... but every LayerNorm computes in fp32, scale and bias included
        source = made_by[node.input[0]]
        assert source.op_type == "Cast" and source.attribute[0].i == float32
        for name in node.input[1:]:
            assert weights.get(name, float32) == float32 or made_by[name].op_type == "Cast"
    assert graph.input[0].type.tensor_type.elem_type == float32  # float32 in and out


def test_every_model_has_a_reference_that_each_runtime_reproduces(exported):
    from export.runner import prove

    manifest = read_manifest(exported / "export")
    for name, model in manifest["models"].items():
        image = np.load(verified_path(exported / "export", model["reference"]))
        assert image.dtype == np.uint8 and list(image.shape) == model["input_shape"]
        entries = model["folds"]["0"]
        expected = np.asarray(entries["torch"]["reference_logits"], np.float32)
        assert expected.shape == (4, 3 * len(model["labels"]))
        for fmt in ("torch", "onnx", "torchscript"):
            runner, _ = FORMATS[fmt].load_shipped(
                exported / "export", entries, spec_from_dict(model["spec"]), "cpu", exported
            )
            assert prove(runner, image, expected, "fp32") is None, (name, fmt)
        wrong = np.roll(expected, 1, axis=1)  # another model's logits: the proof must say no
        assert "tolerance" in prove(runner, image, wrong, "fp32")


def test_openvino_ir_passes_parity_and_ships_with_its_weights(exported, tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is in the dev extra")
    from export.manifest import entry_files
    from export.openvino import cpu_precision
    from export.runner import TOLERANCE, softmax_groups

    manifest = read_manifest(exported / "export")
    export_dir = exported / "export"
    for name, model in manifest["models"].items():
        entries = model["folds"]["0"]
        entry = entries["openvino"]
        assert entry["status"] == "ok", entry
        precision = cpu_precision()
        assert entry["precision"] == precision and entry["source"]["path"].endswith(".onnx")
        tolerance = TOLERANCE[precision]
        assert entry["parity"]["max_abs_prob_diff"] <= tolerance[0]
        assert abs(entry["parity"]["score_diff"]) <= tolerance[1]
        files = [f["path"] for f in entry_files(entry)]
        assert files == [entry["path"], entry["weights"]["path"]]  # model.xml, model.bin
        spec = spec_from_dict(model["spec"])
        runner, note = FORMATS["openvino"].load_shipped(export_dir, entries, spec, "cpu", tmp_path)
        assert "sha256 verified" in note
        eager, _ = FORMATS["torch"].load_shipped(export_dir, entries, spec, "cpu", tmp_path)
        x = np.random.default_rng(0).uniform(-1, 1, (5, *spec.input_shape)).astype(np.float32)
        for n in (1, 3, 5, 3):  # a static shape per batch size, compiled once each
            diff = np.abs(softmax_groups(runner(x[:n])) - softmax_groups(eager(x[:n]))).max()
            assert diff <= tolerance[0], (name, n, diff)
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    entries = read_manifest(broken / "export")["models"]["axial_t2"]["folds"]["0"]
    weights = broken / "export" / entries["openvino"]["weights"]["path"]
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ZooError, match="does not match the manifest"):
        FORMATS["openvino"].load_shipped(broken / "export", entries, None, "cpu", tmp_path)


def test_the_kernel_runs_the_shipped_ir(exported, synth12, tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is in the dev extra")
    from kaggle_kernel.package import package
    from kaggle_kernel.predict import predict

    out = tmp_path / "dataset"
    package(exported, out, dataset_id="tester/zoo-openvino")
    ir = list(out.rglob("model.xml")) + list(out.rglob("model.bin"))
    assert len(ir) == 2 * 3  # both files of each model's IR
    subs = {}
    for runtime in ("openvino", "torch"):
        summary = predict(out, synth12, tmp_path / f"{runtime}.csv", runtime=runtime, workers=0)
        assert set(summary.runtimes.values()) == {runtime}
        subs[runtime] = pd.read_csv(tmp_path / f"{runtime}.csv").set_index("row_id").sort_index()
    diff = np.abs(subs["openvino"].to_numpy() - subs["torch"].to_numpy()).max()
    assert diff < 4e-2  # bf16 (or fp32) against eager fp32


tensorrt_missing = None
try:
    import tensorrt  # noqa: F401
except ImportError:
    tensorrt_missing = "tensorrt is not installed"
if not torch.cuda.is_available():
    tensorrt_missing = (tensorrt_missing + "; " if tensorrt_missing else "") + "no CUDA device"


@pytest.mark.skipif(tensorrt_missing is not None, reason=str(tensorrt_missing))
@pytest.mark.parametrize("half", [False, True])
def test_tensorrt_engine_builds_loads_and_matches(tiny_run, tmp_path, half):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    manifest = export_run(run, parse_formats("tensorrt"), half=half, device="cuda")
    entry = manifest["models"]["sagittal_t1"]["folds"]["0"]["tensorrt"]
    assert entry["status"] == "ok", entry
    assert entry["precision"] == ("fp16" if half else "fp32")
    cache = entry["timing_cache"]
    assert cache["sha256"] and (run / "export" / cache["path"]).is_file()
    assert entry["strongly_typed"] and entry["source"]["sha256"][:12] in entry["path"]
    engine = (run / "export" / entry["path"]).read_bytes()
    assert not engine.startswith(b"{")  # a plain plan, nothing prepended
    assert entry["compute_capability"] and entry["tensorrt"]


def test_the_fp16_twin_keeps_shape_arithmetic_in_fp32_for_edgenext(tmp_path):
    """EdgeNeXt computes its positional encoding from the feature map's size (cumsum, sin,
    cos): that subgraph stays fp32, the rest turns fp16, and the twin predicts what the fp32
    ONNX does."""
    import dataclasses

    import onnx
    import onnxruntime as ort

    from export.runner import softmax_groups
    from zoo.models import build_model
    from zoo.registry import get_variant

    spec = get_variant("edgenext_split").models[0]
    spec = dataclasses.replace(spec, plan=dataclasses.replace(spec.plan, size=64))
    model = build_model(spec, quiet=True).eval()
    x = torch.rand(2, *spec.input_shape) * 2 - 1
    onnx_format.export(model, x, tmp_path / "model.onnx", {}, {})
    graph = onnx.load(str(tmp_path / "model.onnx")).graph
    kept = onnx_format.shape_arithmetic(graph)
    assert kept and any("pos_embd" in name for name in kept)
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    assert all("pos_embd" in name for name in set(convs) & set(kept))  # data convs turn fp16
    assert len(set(convs) - set(kept)) > 10
    outputs = [
        ort.InferenceSession(str(tmp_path / name)).run(None, {"input": x.numpy()})[0]
        for name in ("model.onnx", "model_fp16.onnx")
    ]
    assert np.abs(softmax_groups(outputs[0]) - softmax_groups(outputs[1])).max() < 2e-2
