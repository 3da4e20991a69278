"""A source split into its top-level statements, each parsed with libcst only when first needed.

A class is split once more: its methods are parsed one by one, when first called, and the
rest of it (header, class attributes) on its own. A model class runs `__init__` and `forward`
and what they call; timm's and torchvision's classes hold as much again that no analysis runs.

Shared by source.py (which finds models in a file) and the interpreter (which reads a file's
names, and those of the files it imports), so that neither depends on the other for it.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from .values import Unresolved

LINES = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")  # Python's line breaks, kept
MAX_BOOLEAN_OPERANDS = 4000  # per statement: libcst's native parser overflows the C stack on longer chains


@dataclass(eq=False)
class Segment:
    """One top-level statement of a source (statements sharing a line together), parsed with
    libcst the first time the interpreter needs a name it binds."""

    first_line: int  # 1-based line of its first character in the file (a method: of the `class _:` put before it)
    text: str  # the statement as written
    names: tuple  # the module-level names it binds
    stars: tuple = ()  # (level, module) of a `from module import *` it holds
    previous: dict = field(default_factory=dict)  # name -> the Segment that bound it before this one
    members: dict = field(default_factory=dict)  # a class's methods: name -> Segment, the last def of a name
    code: str | None = None  # what libcst parses where it is not `text`: a class without its methods
    _module: object = None  # its libcst Module
    _positions: object = None  # node -> libcst CodeRange, resolved when a position is asked for

    @property
    def module(self):
        """Its libcst Module; raises Unresolved where libcst cannot read it."""
        if self._module is None:
            import libcst as cst  # imported on first use: files with nothing to analyse never pay for it

            code = self.text if self.code is None else self.code
            if code.count(" and ") + code.count(" or ") > MAX_BOOLEAN_OPERANDS:
                raise Unresolved(f"line {self.first_line} has more than {MAX_BOOLEAN_OPERANDS} and/or operators")
            try:
                self._module = cst.parse_module(code)
            except cst.ParserSyntaxError as exc:
                raise Unresolved(f"libcst cannot parse line {self.first_line + exc.raw_line - 1}: "
                                 f"{exc.message}") from None
            except RecursionError:
                raise Unresolved(f"line {self.first_line} nests too deeply for gpumem to read") from None
        return self._module

    @property
    def parsed(self) -> bool:
        return self._module is not None

    def position(self, node) -> tuple[int, int] | None:
        """(line, col) of a node of this statement in the file, or None if it is not one."""
        if self._positions is None:
            try:
                self._positions = _positions(self.module)
            except (RecursionError, KeyError):  # libcst's code generation recurses once per nesting level
                self._positions = {}
        pos = self._positions.get(node)
        return (pos.start.line + self.first_line - 1, pos.start.column) if pos is not None else None


def _positions(module) -> dict:
    """libcst's PositionProvider table (node -> CodeRange) for `module`.

    Run directly rather than through MetadataWrapper.resolve, which first walks the whole tree
    for batchable providers even when there are none: that walk costs as much as the positions."""
    from libcst.metadata import MetadataWrapper, PositionProvider

    provider = PositionProvider()
    try:
        provider._gen_impl(module)
        return provider._computed
    except AttributeError:  # a libcst without these internals: the public way
        return MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)


def split(lines: list, tree: ast.Module) -> tuple[list[Segment], list[list[ast.stmt]]]:
    """The top-level statements of a source (its `lines`, ends kept) as Segments, with their ast."""
    segments, statements = [], []
    for start, end, stmts in _statement_groups(tree.body):
        names = tuple(n for stmt in stmts for n in _bound_names(stmt))
        stars = tuple((s.level, s.module or "") for s in _imports(stmts)
                      if isinstance(s, ast.ImportFrom) and any(a.name == "*" for a in s.names))
        segment = Segment(start, "".join(lines[start - 1:end]), names, stars)
        if len(stmts) == 1 and isinstance(stmts[0], ast.ClassDef):
            _split_class(segment, stmts[0], lines)
        segments.append(segment)
        statements.append(stmts)
    return segments, statements


def _split_class(segment: Segment, cls: ast.ClassDef, lines: list) -> None:
    """Give a class statement its methods as members, each parsed alone inside a `class _:` line
    (so that its lines and columns stay the file's), and leave their lines blank in what is
    parsed of the class itself, so that its other statements keep their places."""
    code = lines[segment.first_line - 1:cls.end_lineno]
    for method in cls.body:
        if not isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        start = min([method.lineno] + [d.lineno for d in method.decorator_list])
        text = "class _:\n" + "".join(lines[start - 1:method.end_lineno])
        segment.members[member_key(method)] = Segment(start - 1, text, ())
        for i in range(start - segment.first_line, method.end_lineno - segment.first_line + 1):
            code[i] = code[i][len(code[i].rstrip("\r\n")):]  # its line ending only
    if segment.members:  # where the first statement was a method, a `pass`: a body left empty needs one
        first = cls.body[0]
        i = min([first.lineno] + [d.lineno for d in getattr(first, "decorator_list", ())]) - segment.first_line
        if not code[i].strip():
            line = lines[segment.first_line - 1 + i]
            code[i] = line[:len(line) - len(line.lstrip())] + "pass" + code[i]
        segment.code = "".join(code)


def member_key(method) -> str:
    """The name a class keeps a method under: `name.setter` for a property's setter (`@name.setter`),
    which would otherwise hide the getter it follows."""
    for d in getattr(method, "decorator_list", ()):
        if isinstance(d, ast.Attribute) and d.attr == "setter" and isinstance(d.value, ast.Name):
            return f"{d.value.id}.setter"
    return method.name


def _statement_groups(body: list):
    """(first line, last line, statements) of each top-level statement; decorators included,
    statements sharing a line (`import a; import b`) together."""
    groups: list = []
    for stmt in body:
        start = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", ())])
        if groups and start <= groups[-1][1]:
            groups[-1][1] = max(groups[-1][1], stmt.end_lineno)
            groups[-1][2].append(stmt)
        else:
            groups.append([start, stmt.end_lineno, [stmt]])
    return groups


def _bound_names(stmt: ast.stmt) -> list:
    """The module-level names a statement binds, as the interpreter will declare them."""
    if isinstance(stmt, ast.Import):
        return [a.asname or a.name.split(".")[0] for a in stmt.names]
    if isinstance(stmt, ast.ImportFrom):
        return [a.asname or a.name for a in stmt.names if a.name != "*"]
    if isinstance(stmt, ast.Assign):
        return [n for t in stmt.targets for n in _target_names(t)]
    if isinstance(stmt, ast.AnnAssign):
        return [stmt.target.id] if stmt.value is not None and isinstance(stmt.target, ast.Name) else []
    if isinstance(stmt, ast.AugAssign):  # WIDTH += 8 rebinds WIDTH from its value before
        return [stmt.target.id] if isinstance(stmt.target, ast.Name) else []
    if isinstance(stmt, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
        return [stmt.name]
    if isinstance(stmt, ast.If):  # `if "X" in os.environ: A = ... else: A = 1`: either branch
        return [n for inner in stmt.body + stmt.orelse for n in _bound_names(inner)]
    if isinstance(stmt, ast.Try):  # `try: ... except Missing: ... else: from .x import y`
        return [n for inner in stmt.body + stmt.orelse if isinstance(inner, (ast.Import, ast.ImportFrom))
                for n in _bound_names(inner)]
    return []


def type_checking(stmt: ast.stmt) -> bool:
    """`if TYPE_CHECKING:` (or `typing.TYPE_CHECKING`): taken as true for its imports, as type
    checkers take it. Libraries that load lazily (transformers' `_LazyModule`) write their real
    imports there and build the module at run time from the folder's files."""
    test = stmt.test if isinstance(stmt, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(stmts: list) -> list:
    """The statements of a group with the imports of its `if TYPE_CHECKING:` blocks."""
    out = []
    for s in stmts:
        for inner in s.body if type_checking(s) else [s]:
            out += inner.body + inner.orelse if isinstance(inner, ast.Try) else [inner]
    return out


def _target_names(target: ast.expr) -> list:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for e in target.elts for n in _target_names(e)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []
