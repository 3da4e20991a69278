"""timm's registered factories, built by timm itself, as an oracle for `timm.create_model(name)`.

timm imports torchvision, so tests/torchvision_oracle.py is imported first. A model is built on
PyTorch's meta device where it can be (no memory is allocated, so the huge models cost nothing)
and run there on its pretrained config's input size: parameter counts and every leaf module's
output shape come out as on the CPU. A model whose forward needs real values (`.item()`, a
data-dependent shape) is run on the CPU instead, if it is small enough to.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

import torch_oracle
import torchvision_oracle  # noqa: F401  (stubs torchvision's registration modules before timm imports it)

import timm  # noqa: E402

FACTORIES = sorted(timm.list_models())
CPU_PARAMS = 100_000_000  # above this, a model the meta device cannot run is not run on the CPU
BATCH = 2  # training-mode batch norm refuses a single value per channel


@dataclass(frozen=True)
class TimmProfile:
    input_shape: tuple  # per sample, from the model's pretrained config
    params: int
    trainable: int
    calls: list | None  # leaf module calls (torch_oracle.Call), None where no device could run it
    why: str = ""  # why calls is None


def build(name: str, device: str = "meta", **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    with torch.device(device):
        return timm.create_model(name, **kwargs)


@functools.lru_cache(maxsize=None)
def profile(name: str, **kwargs) -> TimmProfile:
    """Parameters and leaf calls of one training-mode forward of `timm.create_model(name, **kwargs)`."""
    model = build(name, **kwargs)
    shape = tuple(model.pretrained_cfg["input_size"])
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    why = ""
    for device in ("meta", "cpu"):
        if device == "cpu":
            if params > CPU_PARAMS:
                return TimmProfile(shape, params, trainable, None, why)
            model = build(name, "cpu", **kwargs)
        try:
            with torch.no_grad():
                x = torch.randn(BATCH, *shape, device=device)
                calls = torch_oracle.profile(model, x).calls
            return TimmProfile(shape, params, trainable, calls)
        except Exception as exc:  # noqa: BLE001  (whatever the model raises, the truth is unknown)
            why = f"{device}: {type(exc).__name__}: {str(exc).splitlines()[0][:100] if str(exc) else ''}"
    return TimmProfile(shape, params, trainable, None, why)
