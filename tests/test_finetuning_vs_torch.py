"""What does not train, against PyTorch: the models in fixtures/finetuning/.

Fine-tuning a torchvision model (the tutorial's feature extraction and fine-tuning, a replaced
head, a partly frozen network), a frozen backbone inside one's own model, linear probing under
no_grad, a detached branch, a teacher, a momentum encoder, an EMA copy, a GAN's discriminator
step. PyTorch runs each model (tests/torch_oracle.py): parameters and trainable parameters as it
counts them, every leaf call's name, type and output shape, and one training step measured by
MemTracker: the peak within 3%, the optimizer state and the gradients as PyTorch holds them
(none for a parameter backward never reaches), in float32 and under AMP; where the file builds an
optimizer over part of a model (a head only, parameter groups, a filtered list), that optimizer.
"""
from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
import torch_oracle  # noqa: E402
from finetuning_cases import KNOWN_GAPS, MODELS, STEPS, built, measured, report, step_id  # noqa: E402

from flake8_gpumem.cli import main  # noqa: E402

TOLERANCE = 0.03


def test_the_fixtures_cover_each_way_of_not_training():
    names = {m.name for m in MODELS}
    assert {"model_ft", "FrozenBackbone", "LinearProbe", "DetachedFeatures", "Distillation", "MoCo",
            "EMATeacher", "SimSiam", "DiscriminatorStep", "FixedPositions", "GradSwitch", "head_only", "grouped",
            "filtered"} <= names


@pytest.mark.parametrize("fx", MODELS, ids=[m.id for m in MODELS])
def test_parameters_and_what_trains(fx):
    model, ours = built(fx), report(fx)
    assert ours.params == sum(p.numel() for p in model.parameters())
    assert ours.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("fx", MODELS, ids=[m.id for m in MODELS])
def test_every_leaf_call(fx):
    truth = torch_oracle.profile(built(fx), torch_oracle.make_input(fx.full_shape, fx.dtype))
    ours = [(l.name, l.type, l.output_shape) for l in report(fx).layers if l.module]
    assert ours == [(c.name, c.type, c.output_shape) for c in truth.calls]


@pytest.mark.parametrize("fx, optimizer, dtype", [
    pytest.param(*s, marks=pytest.mark.xfail(reason=KNOWN_GAPS[step_id(*s)], strict=True))
    if step_id(*s) in KNOWN_GAPS else s for s in STEPS], ids=[step_id(*s) for s in STEPS])
def test_the_step(fx, optimizer, dtype):
    est = report(fx, optimizer, dtype).memory
    truth = measured(fx, optimizer, dtype)
    assert abs(est.peak - truth.peak) <= TOLERANCE * truth.peak, (
        f"peak {est.peak:,} B vs measured {truth.peak:,} B ({(est.peak - truth.peak) / truth.peak:+.2%}), "
        f"estimated at {est.peak_phase}; measured at the peak: {truth.categories}")
    assert est.optimizer == truth.optimizer_state
    assert est.gradients == truth.gradients
    assert est.weights == truth.weights


def test_median_error_over_the_steps():
    errors = sorted(abs(report(fx, o, d).memory.peak / measured(fx, o, d).peak - 1) for fx, o, d in STEPS)
    assert errors[len(errors) // 2] <= 0.01, errors


def test_json_and_table_say_what_trains(capsys):
    """The tutorial's feature extraction: of resnet18's parameters (PyTorch counts them), only the
    new head's train, a Linear(512, 10): 512 x 10 + 10."""
    fx = next(m for m in MODELS if m.name == "model_ft")
    params, head = sum(p.numel() for p in built(fx).parameters()), 512 * 10 + 10
    assert main(["report", str(fx.path), "--model", "model_ft", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)["models"][0]
    assert (out["params"], out["trainable_params"]) == (params, head)
    trains = {l["name"]: l["trainable"] for l in out["layers"]}
    assert (trains["conv1"], trains["layer4.1.bn2"], trains["relu"], trains["fc"]) == (False, False, None, True)
    assert main(["report", str(fx.path), "--model", "model_ft"]) == 0
    table = capsys.readouterr().out
    assert f"parameters   {params:,}  ({head:,} trainable, {params - head:,} frozen)" in table
    conv1 = next(line.split() for line in table.splitlines() if line.startswith("conv1 "))
    assert conv1[4:6] == [f"{64 * 3 * 7 * 7:,}", "frozen"]  # 64 filters of 3 x 7 x 7, no bias


def test_an_optimizer_whose_parameters_are_not_read_is_said():
    """Counted as every parameter that trains, and said (GPM900) at the optimizer's line."""
    from flake8_gpumem.analysis import analyse_source

    source = ("import torch.nn as nn\nimport torch.optim as optim\nfrom mylib import param_groups\n\n"
              "model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 2))  # gpumem: input_shape=(8,) batch_size=4\n"
              "opt = optim.Adam(param_groups(model), lr=1e-3)\n")
    result = analyse_source(source, "train.py")
    notes = [(d.line, d.message) for d in result.diagnostics if d.code == "GPM900"]
    assert len(notes) == 1 and notes[0][0] == 6 and "which parameters the optimizer holds is not known" in notes[0][1]
    # Adam: exp_avg and exp_avg_sq of all 8*8+8 + 8*2+2 = 90 parameters, float32, and a 4-byte step per tensor
    assert result.models[0].memory.optimizer == 2 * 90 * 4 + 4 * 4
