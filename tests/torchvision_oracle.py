"""torchvision's classification zoo, run by PyTorch, as an oracle for whole real-world models.

PyPI's torchvision wheel carries a compiled extension built for the CUDA torch; beside the
CPU torch its operator registrations (the detection ops: nms, roi_align, ...) fail at import
with "operator torchvision::nms does not exist". The classification models are pure Python
and use none of those operators, so this module stands empty modules in for exactly the two
registration modules before importing torchvision. The installed files are untouched.
"""
from __future__ import annotations

import functools
import inspect
import sys
import types
from pathlib import Path

import torch

import torch_oracle

for _name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
    sys.modules.setdefault(_name, types.ModuleType(_name))

import torchvision.models  # noqa: E402

FACTORIES = sorted(torchvision.models.list_models(module=torchvision.models))

# Every factory takes 3x224x224 with its default arguments except inception_v3, whose auxiliary
# classifier (on by default, weights=None) needs 299x299: at 224 its 5x5 conv meets a 3x3 map.
# vit_* (image_size=224) and maxvit_t (input_size=(224, 224)) accept only the size they were built for.
_SHAPES = {"inception_v3": (3, 299, 299)}


def input_shape(name: str) -> tuple:
    return _SHAPES.get(name, (3, 224, 224))


def source_file(name: str) -> Path:
    """The .py file that defines the factory (unwrapped: torchvision decorates every factory)."""
    return Path(inspect.getsourcefile(inspect.unwrap(torchvision.models.get_model_builder(name))))


def build(name: str) -> torch.nn.Module:
    """The factory's default model, untrained (weights=None), seeded so every run is the same."""
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None)


@functools.lru_cache(maxsize=None)
def profile(name: str, batch: int = 2) -> torch_oracle.TorchProfile:
    """Parameters and leaf calls of one training-mode forward pass of the default model.

    Batch 2 because training-mode batch norm refuses a single value per channel (a 1x1 map).
    Under no_grad, since only shapes are recorded; inception_v3 and googlenet return their
    auxiliary logits as a namedtuple in training mode, whose first field is the main output.
    """
    with torch.no_grad():
        return torch_oracle.profile(build(name), torch.randn(batch, *input_shape(name)))
