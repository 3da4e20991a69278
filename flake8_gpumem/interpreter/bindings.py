"""What a source's statements bind before anything runs: its globals as statements still to parse,
the names an assignment target or an import binds. Below the resolver (imports.py), which reads
other files' globals this way, and the name lookup (scopes.py), which evaluates them."""
from __future__ import annotations

import ast
from functools import lru_cache

import libcst as cst

from .. import composites
from ..segments import LINES, split
from ..values import Unresolved
from .objects import File, Q, Scope, dotted


def segment_scope(segments: list, file: File) -> Scope:
    """Globals of a source: each name bound by the last statement that binds it, parsed on first use.
    `__name__` is the name the file is imported under, never "__main__": gpumem reads a file as a
    module, so what `if __name__ == "__main__":` does is not what a model is built with."""
    file.stars = tuple(star for segment in segments for star in segment.stars)
    file.yields = any("yield" in segment.text for segment in segments)
    scope = Scope({"__name__": file.module or "<stdin>"}, file=file)
    for segment in segments:
        for name in segment.names:
            if name in scope.thunks:
                segment.previous[name] = scope.thunks[name]
            scope.thunks[name] = segment
            scope.vars.pop(name, None)
    return scope


def absolute(module: str, level: int, package: str | None) -> str:
    """`from ..x import y` inside package `a.b.c` is `a.x`; raises Unresolved outside a package."""
    if not level:
        return module
    parts = package.split(".") if package else []
    if len(parts) < level:
        raise Unresolved(f"relative import {'.' * level}{module} outside a package (or above its top)")
    return ".".join(parts[:len(parts) - level + 1] + ([module] if module else []))


def target_names(target) -> list:
    """The names an assignment target binds: `a`, `a, (b, *c)`; an attribute or a subscript
    target changes an object and binds none."""
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for e in target.elements for n in target_names(e.value)]
    if isinstance(target, cst.StarredElement):
        return target_names(target.value)
    return []


def imported_names(stmt, package: str | None) -> dict:
    """The names an import binds, as qualified names (relative ones made absolute from `package`)."""
    names = {}
    if isinstance(stmt, cst.Import):
        for alias in stmt.names:
            path = dotted(alias.name)
            if alias.asname is not None:
                names[alias.asname.name.value] = Q(path)
            else:
                names[path.split(".")[0]] = Q(path.split(".")[0])
    elif not isinstance(stmt.names, cst.ImportStar):  # star imports are looked through by Names.lookup
        base = absolute(dotted(stmt.module) if stmt.module else "", len(stmt.relative), package)
        for alias in stmt.names:
            local = alias.asname.name.value if alias.asname else alias.name.value
            names[local] = Q(f"{base}.{alias.name.value}", base)
    return names


def binds(stmt, name: str) -> bool:
    """Whether a top-level statement defines `name` as a class or a plain assignment."""
    if isinstance(stmt, cst.ClassDef):
        return stmt.name.value == name
    return isinstance(stmt, cst.SimpleStatementLine) and any(
        isinstance(s, cst.Assign) and isinstance(s.targets[0].target, cst.Name) and s.targets[0].target.value == name
        for s in stmt.body)


@lru_cache(maxsize=1)
def composite_scope() -> Scope:
    """composites.py's source, each layer parsed the first time a model uses it."""
    source = composites.SOURCE
    segments, _ = split(LINES.findall(source), ast.parse(source))
    return segment_scope(segments, File("torch.nn", None, foreign=True))
