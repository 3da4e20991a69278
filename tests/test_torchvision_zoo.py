"""Every torchvision classification factory, read from its own source file, against PyTorch.

As a user runs `gpumem report <torchvision/models/resnet.py> --model resnet18 --input-shape
3,224,224 --batch-size 2`: gpumem must follow the factory to the model it builds and agree with
torch on the parameter count and on every leaf module call (name, type, output shape), in order.
"""
import pytest

pytest.importorskip("torch")

import torchvision_oracle  # noqa: E402

from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402


@pytest.mark.parametrize("name", torchvision_oracle.FACTORIES)
def test_factory_matches_torch(name):
    shape = torchvision_oracle.input_shape(name)
    path = torchvision_oracle.source_file(name)
    result = analyse_source(path.read_text(), str(path), Settings(input_shape=shape, batch_size=2, device="cpu"),
                            model=name)
    why = result.error or "; ".join(f"{m}: {reason}" for m, reason in result.skipped) or f"no model named {name!r}"
    assert len(result.models) == 1, f"{path.name}: {len(result.models)} model reports for {name} ({why})"
    report = result.models[0]
    truth = torchvision_oracle.profile(name)
    assert report.params == truth.params, f"params: gpumem {report.params:,}, torch {truth.params:,}"
    ours = [(r.name, r.type, tuple(r.output_shape)) for r in report.layers if r.module]
    theirs = [(c.name, c.type, c.output_shape) for c in truth.calls]
    first = next((i for i, pair in enumerate(zip(ours, theirs)) if pair[0] != pair[1]), min(len(ours), len(theirs)))
    assert ours == theirs, (f"leaf call {first} of gpumem {len(ours)} / torch {len(theirs)}: "
                            f"gpumem {ours[first:first + 1]}, torch {theirs[first:first + 1]}")
