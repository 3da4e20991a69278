"""`timm.create_model(name)` read through timm's registry and pretrained configs, against timm itself.

The truth is the model timm builds (tests/timm_oracle.py, on PyTorch's meta device): its parameter
count, trainable count and every leaf module call's name, type and output shape. The sweep over
the registry is benchmarks/timm_registry.py.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

import timm_oracle
from flake8_gpumem.analysis import analyse_source
from flake8_gpumem.config import Settings


def analyse(call: str, shape=(3, 224, 224)):
    source = f"import timm\nmodel = {call}\n"
    settings = Settings(batch_size=timm_oracle.BATCH, input_shape=shape, device="cpu")
    return analyse_source(source, "train_timm.py", settings, model="model")


@pytest.mark.parametrize("name, kwargs", [
    ("resnet18", {"num_classes": 37}),  # the script: an override beats the config's 1,000
    ("resnet18.a1_in1k", {"pretrained": True}),  # a tag, and weights that change no size
    ("vit_base_patch16_siglip_gap_224", {}),  # its config's num_classes=0: no head
    ("vit_base_patch16_clip_quickgelu_224", {}),  # a config the file makes in a loop over others
    ("deit_tiny_distilled_patch16_224", {}),  # pos_embed set again, one token longer
    ("ghostnet_100", {}),  # an empty nn.Sequential called: a leaf, as PyTorch's hooks see it
    ("mobilevitv2_050", {}),  # a block type mobilevit.py adds to byobnet's table when imported
])
def test_create_model_is_read_as_timm_builds_it(name, kwargs):
    # timm's model with weights is the one without (its loader copies values into it, strictly):
    # the oracle builds that one, offline
    truth = timm_oracle.profile(name, **{k: v for k, v in kwargs.items() if k != "pretrained"})
    args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    result = analyse(f"timm.create_model({name!r}{args})", truth.input_shape)
    assert result.skipped == [] and len(result.models) == 1
    report = result.models[0]
    assert (report.params, report.trainable_params) == (truth.params, truth.trainable)
    ours = [(r.name, r.type, tuple(r.output_shape)) for r in report.layers if r.module]
    assert ours == [(c.name, c.type, c.output_shape) for c in truth.calls]


def test_the_siglip_global_pool_vit_has_no_classifier_head():
    """The issue's wrong count: 86,566,120 with a 1,000-class head, which the model lacks (its
    pretrained config says num_classes=0): 86,566,120 - (768 * 1000 + 1000) = 85,797,120."""
    assert analyse('timm.create_model("vit_base_patch16_siglip_gap_224")').models[0].params == 85_797_120


@pytest.mark.parametrize("call, said", [
    ('timm.create_model("resnet_no_such")', "RuntimeError: Unknown model (resnet_no_such)"),
    ('timm.create_model("resnet18.no_such_tag")', "RuntimeError: Invalid pretrained tag (no_such_tag) for resnet18"),
    ('timm.create_model("hf-hub:timm/resnet18.a1_in1k")', "config.json from the Hugging Face Hub repo "
                                                          "timm/resnet18.a1_in1k, a file gpumem does not read"),
    ('timm.create_model("hf_hub:timm/resnet18.a1_in1k")', "Hugging Face Hub repo timm/resnet18.a1_in1k"),
])
def test_a_name_timm_cannot_build_here_is_said(call, said):
    result = analyse(call)
    assert result.models == []
    assert len(result.skipped) == 1 and said in result.skipped[0][1]
    assert [d.code for d in result.diagnostics] == ["GPM900"] and said in result.diagnostics[0].message


def test_flake8_reads_a_script_that_builds_its_model_through_timm(tmp_path):
    """The plugin's cheap filter lets such a script through (it names no nn.Module): timm's resnet18
    with 37 classes needs far more than 1 MiB to train, so flake8 says GPM100 at the model."""
    (tmp_path / "train_timm.py").write_text(
        'import timm\n\nmodel = timm.create_model("resnet18", num_classes=37)  # gpumem: input_shape=(3, 64, 64)\n')
    run = subprocess.run([sys.executable, "-m", "flake8", "--select", "GPM", "--gpumem-budget", "1MiB",
                          "train_timm.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.stdout.startswith("train_timm.py:3:1: GPM100 model needs "), run.stdout + run.stderr
