"""dtypes written in model code: `dtype=torch.float16`, `dtype=x.dtype`, `x.to(...)`.

Each form is read without GPM900 and sized as PyTorch sizes it: the training-step
peak against MemTracker, and the dtype of the tensor each form makes.
"""
from __future__ import annotations

import pytest

pytest.importorskip("torch")
import torch_oracle  # noqa: E402

from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402

SOURCE = """\
import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(64, 64)

    def forward(self, x):
        y = self.fc(x)
        extra = {expr}
        return y * extra.float()
"""

FORMS = {  # expression -> the dtype PyTorch gives it
    "torch.ones(64, dtype=torch.float16)": "float16",
    "torch.zeros((8, 64), dtype=torch.half)": "float16",
    "torch.ones(8, 64, dtype=x.dtype)": "float32",
    "torch.full((8, 64), 2.0, dtype=torch.bfloat16)": "bfloat16",
    "torch.full((8, 64), 7)": "int64",
    "torch.zeros_like(y, dtype=torch.float64)": "float64",
    "torch.randint(0, 2, (8, 64))": "int64",
    "y.to(torch.float16)": "float16",
    "y.to(dtype=torch.bfloat16)": "bfloat16",
    "y.to('cpu', torch.float64)": "float64",
    "y.to(torch.ones(1, dtype=torch.int32))": "int32",
    "y.to('cpu')": "float32",
    "y.half()": "float16",
}


@pytest.mark.parametrize("expr, dtype", FORMS.items(), ids=list(FORMS))
def test_dtype_form(expr, dtype):
    src = SOURCE.format(expr=expr)
    torch_oracle.torch.manual_seed(0)
    namespace = torch_oracle.load(src)
    x = torch_oracle.make_input((8, 64))
    model = torch_oracle.instantiate(namespace, "Model")
    y = model.fc(x)
    extra = eval(expr, {"torch": torch_oracle.torch, "x": x, "y": y})
    shared = expr.startswith("y.") and extra.untyped_storage().data_ptr() == y.untyped_storage().data_ptr()
    assert str(extra.dtype) == f"torch.{dtype}"  # the table is right about PyTorch

    result = analyse_source(src, "model.py", Settings(optimizer="sgd", device="cpu", batch_size=8, input_shape=(64,)))
    assert not result.diagnostics, [d.message for d in result.diagnostics]
    report = result.models[0]
    kind = "Tensor." + expr[2:].split("(")[0] if expr.startswith("y.") else expr.split("(")[0]
    held = sum(r.activation_bytes for r in report.layers if r.type == kind)
    assert held == (0 if shared else extra.numel() * extra.element_size())
    measured = torch_oracle.measure_step(model, (8, 64), "float32", "sgd", "float32")
    assert abs(report.memory.peak - measured.peak) / measured.peak <= 0.03, (report.memory.peak, measured.peak)


def test_a_dtype_gpumem_does_not_size_is_gpm900_naming_it():
    result = analyse_source(SOURCE.format(expr="torch.zeros(8, 64, dtype=torch.complex32)"), "model.py",
                            Settings(batch_size=8, input_shape=(64,)))
    assert [(d.code, d.message) for d in result.diagnostics] == [
        ("GPM900", "Model: dtype torch.complex32 is not one gpumem sizes")]
