"""The models of fixtures/diffusion/ and the noise-prediction step PyTorch runs them on; shared by
tests/test_diffusion.py and benchmarks/diffusion.py.

Each case is a model built by an expression in its file's namespace (as `--model` takes it), its
inputs at the batch given (the image, and the timestep, and the label, one int64 number per sample,
allocated inside the step as the oracle allocates every input), the loss against a target of the
output's shape, an optimizer and a dtype.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import torch
import torch_oracle

from flake8_gpumem.analysis import analyse_source
from flake8_gpumem.config import Settings

DIFFUSION = Path(__file__).resolve().parent.parent / "fixtures" / "diffusion"


@dataclass(frozen=True)
class Case:
    file: str
    model: str  # as --model takes it: a class name or a call
    shapes: tuple  # per sample, one per forward input
    dtypes: tuple
    batch: int = 4
    dtype: str = "float32"
    optimizer: str = "adam"
    loss: str = "mse"

    @property
    def id(self) -> str:
        return f"{self.model}[{self.optimizer},{self.dtype}]"

    @property
    def full(self) -> list:
        return [(self.batch, *s) for s in self.shapes]


IMAGE_T = (((3, 16, 16), ()), ("float32", "int64"))
LATENT_T_Y = (((4, 16, 16), (), ()), ("float32", "int64", "int64"))
CASES = [
    Case("ddpm.py", "UNet", *IMAGE_T),
    Case("ddpm.py", "UNet", *IMAGE_T, dtype="amp-bf16"),
    # the step as a module: the timestep and the noise drawn in forward, which returns the MSE
    Case("ddpm.py", "GaussianDiffusion", ((3, 16, 16),), ("float32",)),
    Case("dit.py", "DiT", *LATENT_T_Y),
    # use_checkpoint: at 32x32 the recomputation in backward, not the optimizer step, holds the peak
    Case("improved.py", "UNetModel", ((3, 32, 32), ()), IMAGE_T[1]),
    Case("improved.py", "UNetModel(use_checkpoint=False)", ((3, 32, 32), ()), IMAGE_T[1]),
]
# the same, larger or in another dtype: printed by benchmarks/diffusion.py, not asserted
MORE = [
    Case("ddpm.py", "UNet(image_size=32, mults=(1, 2, 2), attention_resolutions=(16,))", ((3, 32, 32), ()),
         IMAGE_T[1], batch=2),
    Case("dit.py", "DiT", *LATENT_T_Y, dtype="amp-bf16"),
    Case("improved.py", "UNetModel", *IMAGE_T),
    Case("improved.py", "UNetModel", ((3, 32, 32), ()), IMAGE_T[1], batch=8),
]


@functools.lru_cache(maxsize=None)
def analysed(case: Case, **settings):
    path = DIFFUSION / case.file
    result = analyse_source(path.read_text(), str(path), Settings(
        input_shape=case.shapes, input_dtype=case.dtypes, batch_size=case.batch, dtype=case.dtype,
        optimizer=case.optimizer, loss=case.loss, device="cpu", **settings), model=case.model)
    assert [m.name for m in result.models] == [case.model], (result.skipped, result.diagnostics)
    return result.models[0]


def built(case: Case) -> torch.nn.Module:
    torch.manual_seed(0)
    model = eval(case.model, torch_oracle.load((DIFFUSION / case.file).read_text()))
    return model() if isinstance(model, type) else model


@functools.lru_cache(maxsize=None)
def measured(case: Case) -> torch_oracle.StepMemory:
    with torch_oracle.no_cyclic_collection(), torch_oracle.views_made_without_grad_untracked():
        return torch_oracle.measure_step(built(case), case.full, list(case.dtypes), case.optimizer, case.dtype,
                                         loss=case.loss)
