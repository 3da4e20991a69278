"""The models of fixtures/finetuning/ (what does not train), estimated and measured.

Shared by tests/test_finetuning_vs_torch.py (which asserts the bounds) and
benchmarks/finetuning.py (which prints the table).
"""
from __future__ import annotations

import functools

import torch_oracle
import torchvision_oracle  # noqa: F401  (torchvision importable beside the CPU torch)
from fixture_models import FIXTURES, FixtureModel, discover

from flake8_gpumem.analysis import analyse_source
from flake8_gpumem.config import Settings

MODELS = discover(FIXTURES / "finetuning")
OWN = "own"  # the optimizer the file builds over the model, over the parameters it gives
# each model with Adam in float32, and with SGD momentum under AMP bf16; the models whose file
# builds an optimizer over a part of them, with that optimizer
SUBSETS = {"head_only", "grouped", "filtered"}
STEPS = [(m, OWN if m.name in SUBSETS else o, d) for d, o in (("float32", "adam"), ("amp-bf16", "sgd-momentum"))
         for m in MODELS]
# Where MemTracker's own hooks change the step (tests/test_oracle_mode.py pins it): its module hooks keep
# a detached branch's graph alive through backward, where a plain step frees it when forward returns.
KNOWN_GAPS = {
    "teachers.py::DiscriminatorStep[sgd-momentum,amp-bf16]": (
        "MemTracker keeps the generator's graph (under AMP its bf16 weight copies too) through backward; "
        "a plain step frees it when forward returns, as gpumem models: -10.3% against MemTracker"),
}


def step_id(fx: FixtureModel, optimizer: str, dtype: str) -> str:
    return f"{fx.id}[{optimizer},{dtype}]"


@functools.lru_cache(maxsize=None)
def built(fx: FixtureModel):
    torch_oracle.torch.manual_seed(0)
    return torch_oracle.instantiate(torch_oracle.load(fx.path.read_text()), fx.name)


@functools.lru_cache(maxsize=None)
def report(fx: FixtureModel, optimizer: str = "adam", dtype: str = "float32"):
    result = analyse_source(fx.path.read_text(), f"fixtures/finetuning/{fx.path.name}",
                            Settings(optimizer=None if optimizer == OWN else optimizer, dtype=dtype, device="cpu",
                                     input_shape=fx.input_shape,
                                     batch_size=fx.batch_size), model=fx.name)
    assert [m.name for m in result.models] == [fx.name], (result.diagnostics, result.skipped)
    return result.models[0]


@functools.lru_cache(maxsize=None)
def measured(fx: FixtureModel, optimizer: str, dtype: str) -> torch_oracle.StepMemory:
    torch_oracle.torch.manual_seed(0)
    namespace = torch_oracle.load(fx.path.read_text())
    model = torch_oracle.instantiate(namespace, fx.name)
    build = (lambda m: _files_optimizer(namespace, m)) if optimizer == OWN else optimizer
    with torch_oracle.no_cyclic_collection():
        return torch_oracle.measure_step(model, fx.full_shape, fx.dtype, build, dtype)


def _files_optimizer(namespace: dict, model):
    """The optimizer the file built over `model`, again with foreach=True (CUDA's default), its
    parameter groups and settings as the file gave them."""
    mine = {id(p) for p in model.parameters()}
    built = next(v for v in namespace.values() if isinstance(v, torch_oracle.torch.optim.Optimizer)
                 and any(id(p) in mine for g in v.param_groups for p in g["params"]))
    return type(built)([{**g, "foreach": True} for g in built.param_groups])
