"""Following imports without importing: a dotted module name is found as a source file on a
search path (the linted file's own package root and project first, then the running Python's
sys.path, where installed libraries such as torchvision and timm live), read once per process,
and its globals bound lazily like the linted file's: only the names a model reaches are parsed.

PyTorch itself is not followed (its layers are the catalogue's), nor the standard library and
the few libraries whose functions the interpreter knows by name (numpy, einops, packaging's
version parsing), nor einx, whose calls go through a tracing backend: a call of it is said not known.
A library of shims.py (PEFT) is read from its stand-in source, never from the installed one.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .. import shims
from ..segments import LINES, split
from ..values import Unresolved
from .bindings import segment_scope
from .objects import File, Scope

MAX_FILES = 500  # source files one process keeps read through imports
NOT_FOLLOWED = frozenset({"torch", "numpy", "einops", "einx", "packaging", "typing_extensions", "__future__"}) | (
    frozenset(getattr(sys, "stdlib_module_names", ())))


@dataclass(eq=False)
class Namespace:
    """A module reached through an import: its globals, or a folder without __init__.py."""

    name: str  # its dotted name
    scope: Scope | None  # None: a namespace package (a folder), whose names are its submodules


def followed(path: str) -> bool:
    """Whether names under this dotted path are read from source (not torch, not the stdlib)."""
    return path.partition(".")[0] not in NOT_FOLLOWED


def package_of(filename: str) -> tuple[str | None, Path | None]:
    """(dotted package of a file, the folder above its top package); (None, None) for stdin.

    `a/b/c.py` where a/ and a/b/ hold __init__.py is in package `a.b`, found from the folder above a/."""
    path = Path(filename)
    if not path.is_file():
        return None, None
    parts, folder = [], path.resolve().parent
    while (folder / "__init__.py").is_file() and folder.parent != folder:
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts), folder


def module_name(filename: str) -> str | None:
    """The dotted name a file is imported under, from its package folders (None for stdin)."""
    package, _ = package_of(filename)
    if package is None:
        return None
    stem = Path(filename).stem
    return package if stem == "__init__" else ".".join(p for p in (package, stem) if p)


class Resolver:
    """Finds and reads modules for one linted file's search path; files are cached per process."""

    def __init__(self, roots: tuple[Path, ...]):
        self.roots = roots
        self.modules: dict[str, Namespace | None] = {}

    def module(self, name: str) -> Namespace | None:
        """The module `name`, or None when no source for it is on the search path."""
        if name not in self.modules:
            self.modules[name] = None  # a module importing itself while being found
            self.modules[name] = self._find(name)
        return self.modules[name]

    def source(self, name: str) -> Path | None:
        """The file module `name` is read from, or None (no source, or a folder without __init__.py)."""
        rel = Path(*name.split("."))
        for root in self.roots:
            for candidate in (root / rel.with_suffix(".py"), root / rel / "__init__.py"):
                if candidate.is_file():
                    return candidate
        return None

    def _find(self, name: str) -> Namespace | None:
        top = name.partition(".")[0]
        if top in shims.SOURCES:
            if name != top:
                raise Unresolved(f"{name}: gpumem reads {top} from a stand-in of its top-level names only")
            return Namespace(name, _stand_in(name))
        path = self.source(name)
        if path is not None:
            return Namespace(name, _read(str(path), name))
        rel = Path(*name.split("."))
        for root in self.roots:
            if (root / rel).is_dir():
                return Namespace(name, None)
        return None


def roots_for(filename: str) -> tuple[Path, ...]:
    """Where imports of a file are looked for: the folder above its top package, the project
    (the nearest folder with a pyproject.toml, and its src/), then the running Python's sys.path."""
    roots = []
    _, top = package_of(filename)
    if top is not None:
        roots.append(top)
        project = next((d for d in [top, *top.parents] if (d / "pyproject.toml").is_file()), None)
        if project is not None:
            roots += [project, project / "src"]
    roots += [Path(p) for p in sys.path if p]
    seen, out = set(), []
    for r in roots:
        if r not in seen and r.is_dir():
            seen.add(r)
            out.append(r)
    return tuple(out)


@lru_cache(maxsize=64)
def resolver(roots: tuple[Path, ...]) -> Resolver:
    return Resolver(roots)


@lru_cache(maxsize=MAX_FILES)
def _read(path: str, name: str) -> Scope:
    """A source file's globals, each statement parsed with libcst when a name it binds is needed."""
    try:
        text = Path(path).read_text(encoding="utf-8").removeprefix("\ufeff")
        segments, _ = split(LINES.findall(text), ast.parse(text))
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        raise Unresolved(f"cannot read {path} (imported as {name}): {exc}") from None
    package = name if Path(path).name == "__init__.py" else name.rpartition(".")[0]
    return segment_scope(segments, File(name, package, foreign=True))


@lru_cache(maxsize=None)
def _stand_in(name: str) -> Scope:
    """A library read from shims.py's source in place of its own (a package: its names are its __init__'s)."""
    text = shims.SOURCES[name]
    segments, _ = split(LINES.findall(text), ast.parse(text))
    return segment_scope(segments, File(name, name, foreign=True))
