"""The package's modules import each other one way: no circle, and no module takes another's
private name. Read from the source with `ast`, every import counted (inside functions and under
`if TYPE_CHECKING:` too), so a lazy import that hides a circle from Python does not hide it here."""
from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import flake8_gpumem

PACKAGE = Path(flake8_gpumem.__file__).parent


def modules() -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__)."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


def imports() -> list[tuple[str, str, str]]:
    """(importer, imported module, name) for every import of the package's own modules."""
    mods, out = modules(), []
    for name, (path, is_package) in mods.items():
        here = name.split(".") if is_package else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = ".".join(here[:len(here) - node.level + 1] + [node.module or ""]) if node.level else node.module
                base = base.rstrip(".")
                for alias in node.names:
                    target = f"{base}.{alias.name}"
                    if target in mods:  # `from . import numbers`: the module itself
                        out.append((name, target, ""))
                    elif base in mods:
                        out.append((name, base, alias.name))
            elif isinstance(node, ast.Import):
                out += [(name, a.name, "") for a in node.names if a.name in mods]
    return out


def test_the_import_graph_is_read():
    """The reader finds imports at all three depths it must: a sibling, a parent's module, a child."""
    edges = {(a, b) for a, b, _ in imports()}
    assert ("flake8_gpumem.cli", "flake8_gpumem.analysis") in edges
    assert ("flake8_gpumem.interpreter.calls", "flake8_gpumem.catalogue") in edges
    assert ("flake8_gpumem.interpreter.core", "flake8_gpumem.interpreter.calls") in edges


def test_no_module_imports_itself_through_others():
    graph = {}
    for importer, imported, _ in imports():
        graph.setdefault(importer, set()).add(imported)
    try:
        list(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        raise AssertionError(f"import circle: {' -> '.join(exc.args[1])}") from None


def test_no_module_takes_another_modules_private_name():
    taken = [f"{importer} takes {imported}.{name}" for importer, imported, name in imports()
             if name.startswith("_") and not name.startswith("__")]
    assert not taken, "\n".join(taken)
