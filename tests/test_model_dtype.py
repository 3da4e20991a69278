"""The model's own dtype and the wrappers it runs in, read from the code.

`.half()`, `.bfloat16()`, `.to(torch.bfloat16)` on a model are what `--dtype` says, weaker than
the command line, an inline comment and a per-model table, stronger than [tool.gpumem];
`torch.compile(model)` is the model (its eager step); DDP is `--strategy ddp`; DataParallel is
reported for GPU 0 as a single GPU, with a GPM900 that says so. PyTorch says what each form
does to the model, and measures the step of a model cast in the code.
"""
from __future__ import annotations

import pytest

pytest.importorskip("torch")
import torch_oracle  # noqa: E402

from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402
from flake8_gpumem.report import to_table  # noqa: E402

torch = torch_oracle.torch
BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
TOLERANCE = 0.03  # the peak, as tests/test_memory_vs_torch.py

HEAD = """\
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")


class Net(nn.Module):
    def __init__(self, width=64):
        super().__init__()
        self.fc1 = nn.Linear(64, width)
        self.fc2 = nn.Linear(width, 10)

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))
"""
NET_PARAMS = 64 * 64 + 64 + 64 * 10 + 10
BASE = Settings(input_shape=(64,), batch_size=8, optimizer="adam", device="cpu")


def analyse(src: str, model: str | None = None, **settings):
    return analyse_source(src, "net.py", Settings(**{**BASE.__dict__, **settings}), model=model)


def only(result):
    assert len(result.models) == 1, ([m.name for m in result.models], result.diagnostics)
    return result.models[0]


def gpm900(result) -> list:
    return [(d.line, d.message) for d in result.diagnostics if d.code == "GPM900"]


def torch_model(src: str, name: str = "model"):
    """What the file builds, run by PyTorch on this CPU."""
    return torch_oracle.load(src.replace('"cuda"', '"cpu"'))[name]


# ---------------------------------------------------------------- the forms a cast is written in

FORMS = {  # statements after the class -> the dtype PyTorch gives the model
    "model = Net().half()": "float16",
    "model = Net()\nmodel = model.to(torch.bfloat16)": "bfloat16",
    "model = Net()\nmodel.half()": "float16",
    "model = Net()\nmodel.to(device=device, dtype=torch.bfloat16)": "bfloat16",
    'model = Net().to("cuda", torch.bfloat16)': "bfloat16",
    "model = Net().to(device)\nmodel = model.bfloat16().train()": "bfloat16",
    "model = Net().half().float()": "float32",
    "model = Net().double()": "float64",
}


@pytest.mark.parametrize("code, dtype", FORMS.items(), ids=list(FORMS))
def test_a_cast_in_the_code_is_the_models_dtype(code, dtype):
    src = f"{HEAD}\n{code}\n"
    model = torch_model(src)
    assert next(model.parameters()).dtype == getattr(torch, dtype)  # the table is right about PyTorch

    result = analyse(src)
    report = only(result)
    assert report.name == "Net"
    assert report.settings.dtype == dtype
    assert report.memory.weights == sum(p.nbytes for p in model.parameters()) == NET_PARAMS * BYTES[dtype]
    assert report.memory.gradients == NET_PARAMS * BYTES[dtype]
    assert f"input 8x64 {dtype}" in to_table(result)  # the batch in the model's dtype, as PyTorch needs it


def test_a_cast_inside_a_function_or_the_scripts_main_counts_too():
    body = "    model = Net().to(device)\n    model = model.bfloat16()\n"
    for code in (f"def main():\n{body}", f"if __name__ == '__main__':\n{body}"):
        assert only(analyse(f"{HEAD}\n{code}", "Net")).settings.dtype == "bfloat16"


def test_a_model_rebound_to_its_cast_is_reported_once():
    src = f"{HEAD}\nmodel = Net(width=32)\nmodel = model.half()\nmodel = torch.compile(model)\n"
    report = only(analyse(src))
    assert (report.name, report.settings.dtype) == ("model", "float16")
    assert report.params == sum(p.numel() for p in torch_model(src).parameters()) == 64 * 32 + 32 + 32 * 10 + 10


# ---------------------------------------------------------------- PyTorch measures the step

CNN = """\
import torch
import torch.nn as nn
import torch.nn.functional as F


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 8 * 8, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(torch.flatten(x, 1))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(),
                                 nn.Linear(512, 10))

    def forward(self, x):
        return self.net(x)
"""
SHAPES = {"CNN": ((3, 32, 32), 8), "MLP": ((256,), 32)}


@pytest.mark.parametrize("name, cast, dtype", [
    ("CNN", ".half()", "float16"), ("CNN", ".bfloat16()", "bfloat16"),
    ("MLP", ".half()", "float16"), ("MLP", ".to(torch.bfloat16)", "bfloat16")])
def test_the_step_of_a_model_cast_in_the_code_against_pytorch(name, cast, dtype):
    shape, batch = SHAPES[name]
    src = f"{CNN}\nmodel = {name}(){cast}\n"
    settings = dict(input_shape=shape, batch_size=batch, optimizer="adam")
    est = only(analyse(src, name, **settings)).memory
    # the same figures as the model without the cast, given the dtype on the command line
    assert est == only(analyse(CNN, name, dtype=dtype, **settings)).memory

    torch.manual_seed(0)
    model = torch_model(src)
    measured = torch_oracle.measure_step(model, (batch,) + shape, dtype, "adam", dtype)
    params = sum(p.numel() for p in model.parameters())
    assert est.weights == measured.weights
    assert est.gradients == params * 2
    assert est.optimizer == measured.optimizer_state
    assert abs(est.peak - measured.peak) / measured.peak <= TOLERANCE, (est.peak, measured.peak)


# ---------------------------------------------------------------- what wins

HALF = f"{HEAD}\nmodel = Net().half()\n"


def test_the_command_line_wins_over_the_codes_cast():
    assert only(analyse(HALF)).memory.weights == NET_PARAMS * 2
    report = only(analyse(HALF, dtype="float32"))
    assert report.memory.weights == NET_PARAMS * 4
    assert report.memory == only(analyse(HEAD, dtype="float32")).memory


def test_an_inline_comment_and_a_per_model_table_win_too():
    assert only(analyse(HALF)).settings.dtype == "float16"
    inline = HALF.replace("class Net(nn.Module):", "class Net(nn.Module):  # gpumem: dtype=bfloat16")
    assert only(analyse(inline)).settings.dtype == "bfloat16"
    result = analyse_source(HALF, "net.py", BASE, per_model={"Net": Settings(dtype="float32")})
    assert only(result).settings.dtype == "float32"


def test_the_code_wins_over_the_projects_dtype():
    result = analyse_source(HALF, "net.py", BASE, project=Settings(dtype="bfloat16"))
    assert only(result).settings.dtype == "float16"


def test_a_cast_an_if_decides_is_not_guessed_but_said():
    src = f"{HEAD}\nfp16 = os.environ.get('FP16')\nmodel = Net()\nif fp16:\n    model = model.half()\n"
    result = analyse(src)
    assert only(result).settings.dtype == "float32"
    [(line, message)] = gpm900(result)
    assert line == src.splitlines().index("    model = model.half()") + 1
    assert "float16" in message and "--dtype float16" in message


def test_a_cast_to_a_dtype_the_code_computes_is_said():
    src = f"{HEAD}\nmodel = Net().to(device, getattr(torch, os.environ['DTYPE']))\n"
    result = analyse(src)
    assert only(result).settings.dtype == "float32"
    [(line, message)] = gpm900(result)
    assert line == src.count("\n") and "cannot read" in message


# ---------------------------------------------------------------- wrappers

def test_torch_compile_is_the_model_its_eager_step():
    src = f"{HEAD}\nmodel = torch.compile(Net())\n"
    result = analyse(src)
    report = only(result)
    assert report.name == "Net"
    assert report.params == sum(p.numel() for p in torch_model(src).parameters()) == NET_PARAMS
    assert report.memory == only(analyse(HEAD)).memory
    assert "torch.compile: the eager step" in to_table(result).splitlines()[0]


def test_a_library_model_under_torch_compile_is_reported():
    torchvision = pytest.importorskip("torchvision_oracle").torchvision
    src = "import torch\nfrom torchvision.models import resnet18\n\nmodel = torch.compile(resnet18(num_classes=10))\n"
    result = analyse(src, input_shape=(3, 32, 32), batch_size=2)
    assert only(result).name == "model"
    assert only(result).params == sum(p.numel() for p in torchvision.models.resnet18(num_classes=10).parameters())
    assert "torch.compile" in to_table(result).splitlines()[0]


def test_ddp_is_the_ddp_strategy_per_gpu():
    src = (f"{HEAD}\nlocal_rank = int(os.environ['LOCAL_RANK'])\n"
           "model = DDP(Net().to(local_rank), device_ids=[local_rank])\n")
    result = analyse(src)
    report = only(result)
    assert report.settings.strategy == "ddp"
    assert report.memory == only(analyse(HEAD, strategy="ddp")).memory
    # DDP's reducer keeps a flat copy of every gradient in its buckets, across steps
    assert report.memory.peak > only(analyse(HEAD)).memory.peak
    assert "DDP (per GPU)" in to_table(result).splitlines()[0]
    assert only(analyse(src, strategy="single")).memory == only(analyse(HEAD)).memory  # the flag wins


def test_data_parallel_is_gpu_0_as_one_gpu_and_says_so():
    src = f"{HEAD}\nmodel = nn.DataParallel(Net())\n"
    result = analyse(src)
    assert only(result).memory == only(analyse(HEAD)).memory
    [(line, message)] = gpm900(result)
    assert line == src.count("\n") and "GPU 0" in message and "whole batch" in message
    assert "the code does not count" in message
    assert "nn.DataParallel" in to_table(result).splitlines()[0]
    [(_, message)] = gpm900(analyse(src.replace("Net())", "Net(), device_ids=[0, 1])")))
    assert "over 2 GPUs" in message
    # on one GPU DataParallel runs the module itself: the single-GPU step, nothing left out
    assert gpm900(analyse(src.replace("Net())", "Net(), device_ids=[0])"))) == []


def test_a_model_named_by_an_expression_runs_through_its_wrappers_and_placements():
    for expression in ("torch.compile(Net())", "Net().to(device)", "Net().bfloat16()", "nn.DataParallel(Net().cuda())",
                       "DDP(Net(), device_ids=[int(os.environ['LOCAL_RANK'])])"):
        result = analyse(HEAD, expression)
        assert only(result).params == NET_PARAMS, expression


# ---------------------------------------------------------------- one dtype per model

MIXED = f"""{HEAD}

class Mixed(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = Net().half()
        self.head = nn.Linear(10, 2)

    def forward(self, x):
        return self.head(self.body(x.half()).float())
"""


def test_a_part_the_model_casts_apart_is_said_to_be_counted_in_the_models_dtype():
    model = torch_model(MIXED + "\nmodel = Mixed()\n")
    assert {p.dtype for p in model.parameters()} == {torch.float16, torch.float32}  # PyTorch mixes them
    result = analyse(MIXED, "Mixed")
    assert only(result).settings.dtype == "float32"
    [(line, message)] = gpm900(result)
    assert line == MIXED.splitlines().index("        self.body = Net().half()") + 1
    assert message.startswith("Mixed: body is cast to float16") and "float32 here" in message
    # the whole model cast once built: its parts are all float16, nothing to say
    whole = MIXED + "\nmodel = Mixed().half()\n"
    assert {p.dtype for p in torch_model(whole).parameters()} == {torch.float16}
    result = analyse(whole)
    assert only(result).settings.dtype == "float16" and gpm900(result) == []


def test_a_cast_where_gpumem_does_not_read_the_models_dtype_is_said():
    src = f"{HEAD}\n\ndef build():\n    return Net().half()\n\n\nmodel = build()\n"
    result = analyse(src)
    assert only(result).settings.dtype == "float32"
    [(line, message)] = gpm900(result)
    assert line == src.splitlines().index("    return Net().half()") + 1 and "--dtype float16" in message
    assert gpm900(analyse(src, dtype="float16")) == []
