"""Names: a source's globals bound lazily statement by statement, imports as qualified names,
and the lookup of a name through nested scopes."""
from __future__ import annotations

import builtins
from dataclasses import dataclass

import libcst as cst

from ..segments import Segment
from ..values import AnalysisError, Unresolved
from .bindings import absolute, imported_names, target_names
from .imports import Namespace, followed
from .objects import BUILTINS, MISSING, Builtin, Class, Function, Q, Scope


@dataclass(eq=False)
class Rebinding:
    """A module-level name bound again from its own earlier value (`W = W * 2`, `W += 8`)."""

    node: cst.CSTNode  # the value, or the AugAssign
    previous: Segment  # the statement that bound the name before


@dataclass(eq=False)
class Decorated:
    """A module-level `def` or `class` under decorators: what they return, worked out when the name
    is used."""

    function: Function | Class


def _parse_into(segment: Segment, scope: Scope) -> None:
    """Declare the names `segment` still owns in `scope` (a later statement may rebind the others)."""
    owned = [n for n in dict.fromkeys(segment.names) if scope.thunks.get(n) is segment]  # a name may repeat
    declared = Scope({})
    try:
        for stmt in segment.module.body:  # PyTorch's code has no place in the user's file
            _declare(stmt, scope, declared, None if scope.foreign() else segment, segment.members)
    except AnalysisError as exc:
        declared.vars = {name: Unresolved(f"'{name}' could not be read: {exc.message}") for name in owned}
    for name in owned:
        del scope.thunks[name]
        if name in declared.vars:
            scope.vars[name] = declared.vars[name]
            if isinstance(scope.vars[name], Class):
                scope.vars[name].previous = segment.previous.get(name)
        elif name in declared.thunks:
            before = segment.previous.get(name)
            scope.thunks[name] = Rebinding(declared.thunks[name], before) if before else declared.thunks[name]
        else:  # e.g. a relative import, which gpumem does not follow
            scope.vars[name] = Unresolved(f"'{name}' (line {segment.first_line}) is not something gpumem reads")


def _declare(stmt, scope: Scope, into: Scope, segment: Segment | None = None, members: dict | None = None) -> None:
    """Bind the names a top-level statement defines in `into`; functions and classes close over `scope`.
    `members`: a class statement's methods, parsed apart (segments.py)."""
    if isinstance(stmt, cst.SimpleStatementLine):
        for small in stmt.body:
            if isinstance(small, (cst.Import, cst.ImportFrom)):
                into.vars.update(imported_names(small, scope.root().file.package))
            elif isinstance(small, cst.Assign):
                for target in small.targets:
                    for name in target_names(target.target):
                        into.thunks[name] = small.value if isinstance(target.target, cst.Name) else small
                        into.vars.pop(name, None)
            elif isinstance(small, cst.AnnAssign) and small.value is not None and isinstance(small.target, cst.Name):
                into.thunks[small.target.value] = small.value
            elif isinstance(small, cst.AugAssign) and isinstance(small.target, cst.Name):
                into.thunks[small.target.value] = small
    elif isinstance(stmt, (cst.ClassDef, cst.FunctionDef)):
        made = Class(stmt, scope, stmt.name.value, segment, members or {}) if isinstance(stmt, cst.ClassDef) else (
            Function(stmt, scope, stmt.name.value, segment=segment))
        if stmt.decorators:
            into.thunks[stmt.name.value] = Decorated(made)
            into.vars.pop(stmt.name.value, None)
        else:
            into.vars[stmt.name.value] = made
            into.thunks.pop(stmt.name.value, None)
    elif isinstance(stmt, (cst.Try, cst.If)):  # `try: import x except ImportError: ...` and guarded imports
        orelse = stmt.orelse.body.body if isinstance(stmt, cst.Try) and stmt.orelse is not None else ()
        for inner in (*stmt.body.body, *orelse):
            if isinstance(inner, cst.SimpleStatementLine) and all(
                    isinstance(s, (cst.Import, cst.ImportFrom)) for s in inner.body):
                _declare(inner, scope, into, segment)
            elif isinstance(inner, (cst.Try, cst.If)) and isinstance(stmt, cst.If):
                _declare(inner, scope, into, segment)  # guarded imports under TYPE_CHECKING (diffusers':
                # `if TYPE_CHECKING or DIFFUSERS_SLOW_IMPORT:` then `if is_torch_available():`)
        if isinstance(stmt, cst.If):  # a name a branch assigns: the branch the condition takes, when looked up
            branch = Scope({})
            for inner in _branches(stmt):
                _declare(inner, scope, branch, segment)
            for name in branch.thunks:
                into.thunks[name] = stmt
                into.vars.pop(name, None)


def _branches(stmt: cst.If) -> list:
    """The statements of every branch of an if/elif/else."""
    out = list(stmt.body.body)
    if isinstance(stmt.orelse, cst.If):
        out += _branches(stmt.orelse)
    elif stmt.orelse is not None:
        out += list(stmt.orelse.body.body)
    return out


def parse_expression(text: str) -> cst.BaseExpression:
    try:
        return cst.parse_expression(text)
    except cst.ParserSyntaxError as exc:
        raise Unresolved(f"libcst cannot parse {text[:40]!r}: {exc.message}") from None


class Names:
    """Name lookup through scopes, module-level names evaluated on first use."""

    def lookup(self, name: str, scope: Scope, node):
        value = scope.vars.get(name, MISSING)  # the usual case, a plain local, without the search
        if value is MISSING or isinstance(value, (Unresolved, Q)):
            value = self._find(name, scope, node)
        if value is not MISSING:
            return value
        if name in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[name]
        if name in BUILTINS:
            return BUILTINS[name]
        if name in ("super", "print", "setattr", "getattr", "hasattr", "type", "callable", "dir", "issubclass", "next",
                    "hash", "id"):
            return Builtin(None, name)
        if name.endswith(("Error", "Warning", "Exception")) and isinstance(getattr(builtins, name, None), type):
            return Builtin(getattr(builtins, name), name)  # raise ValueError(...), warnings.warn(..., FutureWarning)
        raise Unresolved(f"'{name}' is not known to gpumem: not defined in this file, nor a builtin it evaluates",
                         node)

    def _find(self, name: str, scope: Scope, node):
        """`name` as bound in `scope` or around it (a module's star imports included), or MISSING."""
        s = scope
        while s is not None:
            if name in s.vars:
                value = s.vars[name]
                if isinstance(value, Unresolved):
                    raise Unresolved(value.message, node)
                if isinstance(value, Q) and followed(value.path):
                    value = s.vars[name] = self._own_submodule(value, s, node) or self.follow(value, node)
                return value
            if isinstance(s.thunks.get(name), Segment):
                _parse_into(s.thunks[name], s)
                continue  # look again: the statement has declared its names
            if name in s.thunks:
                thunk = s.thunks.pop(name)
                s.vars[name] = Unresolved(f"'{name}' is defined in terms of itself", thunk)
                try:
                    s.vars[name] = self._global_value(name, thunk, s)
                except AnalysisError as exc:
                    s.vars[name] = Unresolved(f"'{name}' could not be resolved: {exc.message}", thunk)
                    raise Unresolved(s.vars[name].message, node) from None
                return s.vars[name]
            if s.file is not None and s.file.stars and not name.startswith("_"):
                stars = [absolute(module, level, s.file.package) for level, module in s.file.stars]
                for module in self.resolver.exporters(stars, name):
                    found = self.resolver.module(module)
                    value = self._find(name, found.scope, node) if found and found.scope else MISSING
                    if value is not MISSING:
                        return value
            s = s.parent
        return MISSING

    def _own_submodule(self, q: Q, scope: Scope, node):
        """A package's import of its own submodule (`from torchvision import models` in torchvision's
        __init__, `from . import detection`): Python finds no such name on the half-built package
        and imports the submodule, and so does gpumem (looking the name up in the package finds
        this import again, without end). None for any other import."""
        if scope.file is None or scope.file.module is None or q.module != scope.file.module:
            return None
        found = self.resolver.module(q.path)
        if found is None:
            raise Unresolved(f"module {q.module} imports {q.path} from itself, and no such submodule exists", node)
        return found

    def follow(self, q: Q, node):
        """What a qualified name of followed code stands for, read from its source; the name itself
        where the search path holds no source for its top module. As an import does it: the longest
        leading part that is a module (`import timm.layers.create_attn`), then names in it; after
        `from timm.layers import create_attn`, the name the package binds (a function) before its submodule."""
        parts = q.path.split(".")
        for i in range(len(parts), 0, -1):
            if q.module and i > q.module.count(".") + 1:
                continue  # `from M import n`: M is the module, n a name in it
            value = self.resolver.module(".".join(parts[:i]))
            if value is not None:
                break
        else:
            return q
        try:
            for part in parts[i:]:
                value = self.getattr(value, part, node)
        except Unresolved as exc:
            raise Unresolved(f"cannot follow the import of {q.path}: {exc.message}", node) from None
        return value

    def member(self, ns: Namespace, name: str, node):
        """`ns.name`: a name its source binds (`from .create_attn import create_attn` in a package's
        __init__ is the function, not the submodule), else a submodule."""
        value = self._find(name, ns.scope, node) if ns.scope is not None else MISSING
        if value is MISSING:
            value = self.resolver.module(f"{ns.name}.{name}") or MISSING
        if value is MISSING:
            raise Unresolved(f"module {ns.name} has no name '{name}' that gpumem can find", node)
        return value

    def _global_value(self, name: str, node, scope: Scope):
        if isinstance(node, Decorated):
            return self.decorate(node.function)
        if isinstance(node, Rebinding):  # evaluated where `name` still has its earlier binding
            before = Scope({}, scope, {name: node.previous})
            if isinstance(node.node, cst.AugAssign):
                self._augassign(node.node, before)  # as in a function body: `+=` on a list extends it
                return self.lookup(name, before, node.node)
            return self._global_value(name, node.node, before)
        if isinstance(node, cst.AugAssign):
            raise Unresolved(f"'{name}' is augmented before it is bound", node)
        if isinstance(node, cst.If):  # the branch the condition takes, run where the name is bound
            branch = Scope({}, scope)
            self.run_stmt(node, branch)
            if name in branch.vars:
                return branch.vars[name]
            if name in scope.thunks:  # a branch not taken leaves the name as an earlier statement bound it
                return self.lookup(name, scope, node)
            raise Unresolved(f"'{name}' is not bound by the branch its module-level `if` takes", node)
        if isinstance(node, cst.Assign):  # tuple unpacking at module level
            value = self.eval(node.value, scope)
            tmp = Scope({}, scope)
            for target in node.targets:
                self.assign(target.target, value, tmp)
            return tmp.vars[name]
        return self.eval(node, scope)
