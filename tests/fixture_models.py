"""The fixture models: every model in fixtures/*.py with the input its comment gives.

    class Net(nn.Module):  # gpumem: input_shape=(3, 50, 50) batch_size=64

Shared by the tests and the benchmarks; read with a regex, independently of the analyser.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"

_CLASS_LINE = re.compile(r"^class\s+(?P<name>\w+)\b[^#]*#\s*gpumem:(?P<spec>.*)$")
_ASSIGN_LINE = re.compile(r"^(?P<name>\w+)\s*(?::[^=#]*)?=[^#]*#\s*gpumem:(?P<spec>.*)$")
_INPUT_SHAPE = re.compile(r"\binput_shape\s*=\s*(\((?:[^()]|\([^()]*\))*\))")  # (3, 50, 50) or ((64,), (64,))
_BATCH_SIZE = re.compile(r"\bbatch_size\s*=\s*(\d+)")
_INPUT_DTYPE = re.compile(r"\binput_dtype\s*=\s*(\w+)")


@dataclass(frozen=True)
class FixtureModel:
    path: Path
    name: str
    line: int
    input_shape: tuple  # per sample, batch excluded; a tuple of such shapes for several forward inputs
    batch_size: int
    dtype: str

    @property
    def id(self) -> str:
        return f"{self.path.name}::{self.name}"

    @property
    def inputs(self) -> list[tuple]:
        """Each forward input's per-sample shape."""
        several = self.input_shape and isinstance(self.input_shape[0], tuple)
        return list(self.input_shape) if several else [self.input_shape]

    @property
    def full_shape(self) -> tuple:
        """The batch's shape, or a list of them (one per forward input)."""
        shapes = [(self.batch_size, *s) for s in self.inputs]
        return shapes[0] if len(shapes) == 1 else shapes


def _parse_spec(path: Path, lineno: int, name: str, spec: str) -> FixtureModel:
    shape = _INPUT_SHAPE.search(spec)
    batch = _BATCH_SIZE.search(spec)
    if not shape or not batch:
        raise ValueError(f"{path.name}:{lineno}: gpumem comment lacks input_shape or batch_size: {spec!r}")
    dims = ast.literal_eval(shape.group(1))
    dtype = _INPUT_DTYPE.search(spec)
    return FixtureModel(path, name, lineno, dims, int(batch.group(1)), dtype.group(1) if dtype else "float32")


def discover(directory: Path = FIXTURES) -> list[FixtureModel]:
    found = []
    for path in sorted(directory.glob("*.py")):
        for lineno, text in enumerate(path.read_text().splitlines(), start=1):
            match = _CLASS_LINE.match(text) or _ASSIGN_LINE.match(text)
            if match:
                found.append(_parse_spec(path, lineno, match["name"], match["spec"]))
    return found


