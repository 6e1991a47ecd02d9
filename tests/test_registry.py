"""The registry: every variant builds with real timm models; names, listing, offline weights."""

import dataclasses
import logging

import pytest
import timm
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from zoo.cli import main
from zoo.errors import ZooError
from zoo.models import build_model, resolve_weights
from zoo.registry import VARIANTS, get_variant

REQUIRED = {
    "itk8191_b3",
    "b3_concat40",
    "edgenext_concat40",
    "edgenext_convhead",
    "edgenext_split",
    "convnextv2_tiny_split",
    "convnextv2_large_split",
    "tiny_split",
}


def test_the_notebook_variants_are_registered():
    assert REQUIRED <= set(VARIANTS)
    split = get_variant("edgenext_split")
    assert [(m.name, m.plan.in_chans, m.num_outputs) for m in split.models] == [
        ("sagittal_t1", 10, 30),
        ("sagittal_t2_stir", 10, 15),
        ("axial_t2", 20, 30),
    ]
    assert split.models[0].targets[0] == "left_neural_foraminal_narrowing_l1_l2"
    assert get_variant("itk8191_b3").models[0].plan.in_chans == 30
    assert get_variant("edgenext_convhead").models[0].head == "conv"
    assert get_variant("tiny_split").models[0].plan.size <= 128


@pytest.mark.parametrize(
    ("variant", "spec"),
    [
        (v.name, s)
        for v in VARIANTS.values()
        for s in v.models
        if "large" not in v.name or s.name == "axial_t2"
    ],  # one large model is enough memory
    ids=lambda x: x if isinstance(x, str) else x.name,
)
def test_every_model_builds_and_runs_forward(variant, spec):
    small = dataclasses.replace(spec, plan=dataclasses.replace(spec.plan, size=64))
    model = build_model(small, quiet=True).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *small.input_shape))
    assert out.shape == (2, spec.num_outputs) and torch.isfinite(out).all()
    if spec.kind == "localiser":  # points and slices in [0, 1]
        assert ((out >= 0) & (out <= 1)).all()


def test_two_stage_variants_declare_their_stages():
    for name in ("two_stage_tiny", "two_stage_convnext"):
        stages = get_variant(name).stages
        assert [[m.kind for m in stage] for stage in stages] == [
            ["localiser", "localiser"],
            ["crops", "crops", "crops"],
        ]
        located = {m.name for m in stages[0]}
        assert all(m.crop.localiser in located for m in stages[1])
        crops = {m.name: m for m in stages[1]}
        assert crops["subarticular_crops"].crop.centre == "canal"
        assert crops["spinal_crops"].any_severe_loss
    assert 128 <= get_variant("two_stage_convnext").models[-1].crop.size <= 256
    assert 256 <= get_variant("two_stage_convnext").models[0].plan.size <= 384


def test_a_misspelt_variant_gets_suggestions():
    with pytest.raises(ZooError, match="did you mean edgenext_split"):
        get_variant("edgenext_splt")
    result = CliRunner().invoke(main, ["train", "tiny_splt", "--data", ".", "--out", "x"])
    assert result.exit_code == 1 and "did you mean tiny_split" in result.output


def test_zoo_list_shows_every_variant():
    result = CliRunner().invoke(main, ["list"])
    assert result.exit_code == 0
    for name in REQUIRED:
        assert name in result.output
    assert "edgenext_base.in21k_ft_in1k" in result.output and "205.9M" in result.output


def test_train_help_documents_every_flag():
    result = CliRunner().invoke(main, ["train", "--help"])
    for flag in (
        "--data",
        "--out",
        "--cache",
        "--folds",
        "--epochs",
        "--batch-size",
        "--lr",
        "--size",
        "--device",
        "--weights",
        "--resume",
        "--seed",
        "--stratify",
    ):
        assert flag in result.output


def test_local_weights_are_loaded_and_the_stem_adapted(tmp_path, caplog):
    spec = get_variant("tiny_split").models[0]  # test_convnext2, 10 input channels
    rgb = timm.create_model(spec.backbone, pretrained=False, num_classes=0)
    save_file(rgb.state_dict(), tmp_path / f"{spec.backbone}.safetensors")
    assert resolve_weights(spec.backbone, tmp_path) == tmp_path / f"{spec.backbone}.safetensors"
    model = build_model(spec, tmp_path)
    stem = model.backbone.stem_0.weight
    assert stem.shape[1] == 10
    # timm repeats the RGB kernels over the channels and scales them by 3 / in_chans
    expected = rgb.stem[0].weight.repeat(1, 4, 1, 1)[:, :10] * 3 / 10
    assert torch.allclose(stem, expected, atol=1e-6)
    with caplog.at_level(logging.WARNING):
        build_model(spec)
    assert "random init" in caplog.text and "--weights" in caplog.text


def test_weights_for_another_model_are_a_clear_error(tmp_path):
    spec = get_variant("tiny_split").models[0]
    other = timm.create_model("test_resnet", pretrained=False)
    save_file(other.state_dict(), tmp_path / "w.safetensors")
    with pytest.raises(ZooError, match="does not fit test_convnext2"):
        build_model(spec, tmp_path / "w.safetensors")
