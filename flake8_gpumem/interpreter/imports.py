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
import re
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .. import shims
from ..segments import LINES, split
from ..values import Unresolved
from .bindings import absolute, segment_scope
from .objects import File, Scope

MAX_FILES = 500  # source files one process keeps read through imports
STAR = re.compile(rb"^[ \t]*from[ \t]+(\.*)([\w.]*)[ \t]+import[ \t]+\*", re.M)
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
        self.mentioned: dict[tuple, bool] = {}  # (module, name) -> whether its source may bind the name
        self.paths: dict[str, Path | None] = {}  # module -> its source file (or folder)

    def module(self, name: str) -> Namespace | None:
        """The module `name`, or None when no source for it is on the search path."""
        if name not in self.modules:
            self.modules[name] = None  # a module importing itself while being found
            self.modules[name] = self._find(name)
        return self.modules[name]

    def source(self, name: str) -> Path | None:
        """The file module `name` is read from, or None (no source, or a folder without __init__.py)."""
        path = self._path(name)
        return path if path is not None and path.is_file() else None

    def _find(self, name: str) -> Namespace | None:
        top = name.partition(".")[0]
        if top in shims.SOURCES:
            if name != top:
                raise Unresolved(f"{name}: gpumem reads {top} from a stand-in of its top-level names only")
            return Namespace(name, _stand_in(name))
        path = self._path(name)
        if path is None:
            return None
        return Namespace(name, _read(str(path), name) if path.is_file() else None)

    def _path(self, name: str) -> Path | None:
        """The source file of module `name`, its folder for a namespace package, or None. A
        submodule of a regular package is looked for in that package's folder only, as Python's
        import does (its __path__): no walk over the search path per module."""
        if name not in self.paths:
            parent, _, last = name.rpartition(".")
            base = self._path(parent) if parent else None
            if base is not None and base.name == "__init__.py":
                folder = base.parent
                found = next((c for c in (folder / f"{last}.py", folder / last / "__init__.py") if c.is_file()),
                             folder / last if (folder / last).is_dir() else None)
            else:
                found = self._search(name)
            self.paths[name] = found
        return self.paths[name]

    def _search(self, name: str) -> Path | None:
        rel = Path(*name.split("."))
        for root in self.roots:
            for candidate in (root / rel.with_suffix(".py"), root / rel / "__init__.py"):
                if candidate.is_file():
                    return candidate
        for root in self.roots:
            if (root / rel).is_dir():
                return root / rel
        return None

    def exporters(self, modules: list, name: str) -> list:
        """Of the modules a file star-imports, those whose source may bind `name`, told without
        parsing: their text names it, or a module they star-import in turn does. transformers'
        `models/__init__.py` star-imports some 400 packages; only the one that defines a name is
        read. Those named like the name first (`gpt2` for `GPT2LMHeadModel`)."""
        key = name.lower()
        likely = sorted(modules, key=lambda m: m.rpartition(".")[2].replace("_", "") not in key)
        return (m for m in likely if self._mentions(m, name.encode(), 0))  # lazily: the first to bind it ends it

    def _mentions(self, module: str, name: bytes, depth: int) -> bool:
        key = (module, name)
        if key not in self.mentioned:
            self.mentioned[key] = False  # a star-import cycle
            path = self._path(module)
            try:
                text = path.read_bytes() if path is not None and path.is_file() else b""
            except OSError:
                text = b""
            package = module if path is not None and path.name == "__init__.py" else module.rpartition(".")[0]
            self.mentioned[key] = name in text or (depth < 8 and b"import *" in text and any(
                self._mentions(absolute(m.decode(), len(level), package), name, depth + 1)
                for level, m in STAR.findall(text)))
        return self.mentioned[key]


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
