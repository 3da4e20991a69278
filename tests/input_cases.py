"""The models of fixtures/inputs/ and the inputs PyTorch runs them on, written out by hand; shared by
tests/test_inputs_vs_torch.py and benchmarks/inputs.py."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch_oracle

from flake8_gpumem.analysis import analyse_source
from flake8_gpumem.config import Settings

INPUTS = Path(__file__).resolve().parent.parent / "fixtures" / "inputs"


@dataclass(frozen=True)
class Case:
    file: str
    model: str
    shapes: list  # the batch as forward gets it, at batch `batch`
    dtypes: list
    names: list  # None: by position, else forward's keyword
    loss: str = "cross_entropy"
    forward_args: dict = field(default_factory=dict)
    batch: int = 4

    @property
    def id(self) -> str:
        return f"{self.model}{''.join(f'[{k}={v}]' for k, v in self.forward_args.items())}"


CASES = [
    # forward(x, t, y): t and y one number per sample
    Case("diffusion.py", "Denoiser", [(4, 3, 32, 32), (4,), (4,)], ["float32", "int64", "int64"], [None] * 3, "mse"),
    # nn.LSTM without batch_first: (T, B, F) = (35, 4, 16), the output (35, 4, 9)
    Case("sequence_first.py", "Tagger", [(35, 4, 16)], ["float32"], [None]),
    Case("sequence_first.py", "Tagger", [(35, 4, 16)], ["float32"], [None], forward_args={"noise_std": 0.1}),
    # nn.TransformerEncoderLayer without batch_first: (S, B, E) = (64, 4, 32)
    Case("sequence_first.py", "Encoder", [(64, 4, 32)], ["float32"], [None]),
    # model(image=x, target=y) into forward(self, **kwargs); the teacher frozen
    Case("keywords.py", "Distiller", [(8, 3, 32, 32), (8,)], ["float32", "int64"], ["image", "target"], batch=8),
    # model(pixel_values, labels=y) returns {"loss": ..., "logits": ...}: that loss is the step's
    Case("keywords.py", "Classifier", [(8, 3, 32, 32), (8,)], ["float32", "int64"], [None, "labels"], batch=8),
]
STEPS = [(c, o) for c in CASES for o in ("adam", "sgd")]


def analysed(case: Case, optimizer: str = "adam", **settings):
    """gpumem's report, the inputs from the model's comment; the batch, optimizer and forward args given here."""
    path = INPUTS / case.file
    overrides = Settings(batch_size=case.batch, device="cpu", optimizer=optimizer, forward_args=case.forward_args,
                         **settings)
    result = analyse_source(path.read_text(), str(path), overrides, model=case.model)
    assert len(result.models) == 1, (result.skipped, result.diagnostics)
    return result.models[0]


def built(case: Case) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch_oracle.load((INPUTS / case.file).read_text())[case.model]()


def measured(case: Case, optimizer: str = "adam") -> torch_oracle.StepMemory:
    """MemTracker's step on the inputs as written here: by position, by keyword, forward's arguments."""
    return torch_oracle.measure_step(built(case), case.shapes, case.dtypes, optimizer, loss=case.loss,
                                     names=case.names, forward_args=case.forward_args)
