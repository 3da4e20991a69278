"""Reading model source: parse with libcst and find the models and what the file says about them."""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from .config import ConfigError, Settings, settings_from
from .inference import Class, Interpreter, Scope, dotted, module_scope

INLINE = re.compile(r"#\s*gpumem:(.*)$")
INLINE_PAIR = re.compile(r"(\w+)\s*=\s*(\([^)]*\)|\[[^\]]*\]|\"[^\"]*\"|'[^']*'|[^\s,]+)")
CONTAINER_CALLS = ("Sequential",)


@dataclass
class ModelDecl:
    """A model the file defines: an nn.Module subclass or a module-level nn.Sequential."""

    name: str
    node: cst.CSTNode
    line: int
    col: int
    inline: Settings = field(default_factory=Settings)
    is_class: bool = True
    component: bool = False  # instantiated by another model in the file


@dataclass
class SourceFile:
    filename: str
    module: cst.Module
    scope: Scope
    models: list[ModelDecl]
    positions: object  # node -> (line, col) or None
    errors: list  # (line, col, message) for unreadable inline settings


def read_source(source: str, filename: str) -> SourceFile:
    """Parse `source` (raises libcst.ParserSyntaxError on invalid Python)."""
    module = cst.parse_module(source)
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    table = wrapper.resolve(PositionProvider)

    def positions(node):
        pos = table.get(node)
        return (pos.start.line, pos.start.column) if pos is not None else None

    scope = module_scope(module)
    lines = source.splitlines()
    probe = Interpreter(scope, positions)
    models, errors = [], []
    for stmt in module.body:
        decl = None
        if isinstance(stmt, cst.ClassDef) and probe.is_module_class(scope.vars[stmt.name.value]):
            decl = ModelDecl(stmt.name.value, stmt, *positions(stmt))
        elif isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1 and _is_sequential(
                stmt.body[0], scope):
            target = stmt.body[0].targets[0].target
            decl = ModelDecl(target.value, stmt, *positions(stmt), is_class=False)
        if decl is not None:
            try:
                decl.inline = inline_settings(lines[decl.line - 1], f"{filename}:{decl.line}")
            except ConfigError as exc:
                errors.append((decl.line, 0, str(exc)))
            models.append(decl)
    used = _instantiated_names(module, {m.name for m in models if m.is_class})
    for m in models:
        m.component = m.name in used
    return SourceFile(filename, module, scope, models, positions, errors)


def _is_sequential(small, scope: Scope) -> bool:
    if not (isinstance(small, cst.Assign) and len(small.targets) == 1
            and isinstance(small.targets[0].target, cst.Name) and isinstance(small.value, cst.Call)):
        return False
    name = dotted(small.value.func)
    head, _, last = name.rpartition(".")
    if last not in CONTAINER_CALLS:
        return False
    root = scope.vars.get(head.split(".")[0] if head else last)
    return getattr(root, "path", "").startswith("torch")


def _instantiated_names(module: cst.Module, classes: set) -> set:
    """Model classes another model class calls, e.g. Block(64) inside Net.__init__."""
    used = set()

    class Calls(cst.CSTVisitor):
        def __init__(self, owner):
            self.owner = owner

        def visit_Call(self, node):
            if isinstance(node.func, cst.Name) and node.func.value in classes and node.func.value != self.owner:
                used.add(node.func.value)

    for stmt in module.body:
        if isinstance(stmt, cst.ClassDef) and stmt.name.value in classes:
            stmt.visit(Calls(stmt.name.value))
        elif isinstance(stmt, cst.FunctionDef):
            stmt.visit(Calls(None))
    return used


def inline_settings(line: str, where: str) -> Settings:
    """Settings from a `# gpumem: input_shape=(3, 50, 50) batch_size=64` comment."""
    m = INLINE.search(line)
    if not m:
        return Settings()
    values = {}
    for key, raw in INLINE_PAIR.findall(m.group(1)):
        try:
            values[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            values[key] = raw
    return settings_from(values, where)


def find_class(source: SourceFile, name: str) -> Class | None:
    value = source.scope.vars.get(name)
    return value if isinstance(value, Class) else None
