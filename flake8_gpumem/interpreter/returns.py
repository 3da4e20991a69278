"""What a function can return, read without running it.

A module-level `x = f(...)` is a model when `f` builds a module. Some functions plainly cannot:
timm's `default_cfgs = generate_default_cfgs({...})` returns the dict it fills. Telling so from
the function's returns, before its arguments are evaluated, spares evaluating tables of
configurations (and reporting each as a model gpumem cannot read).
"""
from __future__ import annotations

import libcst as cst

from ..values import AnalysisError
from .bindings import target_names
from .objects import Builtin, Function, Q, canonical, dotted

# classes whose instances are containers: never an nn.Module, whatever they are given
CONTAINER_CLASSES = frozenset({"collections.defaultdict", "collections.OrderedDict", "collections.Counter",
                               "collections.deque"})
BUILTIN_VALUES = frozenset({dict, list, set, tuple, frozenset, str, int, float, bool})
LITERALS = (cst.Dict, cst.List, cst.Set, cst.Tuple, cst.DictComp, cst.ListComp, cst.SetComp, cst.SimpleString,
            cst.ConcatenatedString, cst.FormattedString, cst.Integer, cst.Float)


def builds_no_module(interp, fn: Function) -> bool:
    """Whether every value `fn` returns is None, a literal or display, or what a container class
    makes (dict(...), defaultdict(...)), directly or through local names bound only to those."""
    if not isinstance(fn.node, cst.FunctionDef) or fn.is_generator:
        return False
    found = _Bindings()
    fn.node.body.visit(found)
    if found.matches:
        return False  # a match statement's patterns bind names too
    params = {p.name.value for p in (*fn.node.params.posonly_params, *fn.node.params.params,
                                      *fn.node.params.kwonly_params)}
    params |= {p.name.value for p in (fn.node.params.star_arg, fn.node.params.star_kwarg)
               if isinstance(p, cst.Param)}
    local = params | found.opaque | set(found.values)

    def plain(value, seen: frozenset) -> bool:
        if value is None or isinstance(value, LITERALS):
            return True
        if isinstance(value, cst.Name):
            name = value.value
            if name == "None":
                return True
            if name in params or name in found.opaque or name in seen or name not in found.values:
                return False
            return all(plain(v, seen | {name}) for v in found.values[name])
        if isinstance(value, cst.Call):
            path = dotted(value.func)
            return bool(path) and path.partition(".")[0] not in local and _container_class(interp, fn, path)
        return False

    return bool(found.returns) and all(plain(r, frozenset()) for r in found.returns)


def _container_class(interp, fn: Function, path: str) -> bool:
    head, _, rest = path.partition(".")
    try:
        value = interp.lookup(head, fn.scope, None)
    except AnalysisError:
        return False
    if isinstance(value, Builtin):
        return not rest and value.fn in BUILTIN_VALUES
    if isinstance(value, Q):
        return canonical(f"{value.path}.{rest}" if rest else value.path) in CONTAINER_CLASSES
    return False


class _Bindings(cst.CSTVisitor):
    """A function body's return values and what each local name is bound to: `values` for names
    only ever assigned whole (`out = ...`), `opaque` for names bound any other way."""

    def __init__(self):
        self.returns: list = []
        self.values: dict = {}
        self.opaque: set = set()
        self.matches = False

    def visit_FunctionDef(self, node) -> bool:
        self.opaque.add(node.name.value)
        return False  # a nested def's returns are not ours

    def visit_ClassDef(self, node) -> bool:
        self.opaque.add(node.name.value)
        return False

    def visit_Lambda(self, node) -> bool:
        return False

    def visit_Return(self, node) -> None:
        self.returns.append(node.value)

    def visit_Assign(self, node) -> None:
        for target in node.targets:
            self._bind(target.target, node.value)

    def visit_AnnAssign(self, node) -> None:
        self._bind(node.target, node.value)

    def visit_AugAssign(self, node) -> None:
        self._bind(node.target, None)

    def visit_For(self, node) -> None:
        self._bind(node.target, None)

    def visit_CompFor(self, node) -> None:
        self._bind(node.target, None)

    def visit_AsName(self, node) -> None:  # with ... as x, except ... as x, import ... as x
        self._bind(node.name, None)

    def visit_NamedExpr(self, node) -> None:
        self._bind(node.target, None)

    def visit_ImportAlias(self, node) -> None:
        if node.asname is None:
            self.opaque.add(dotted(node.name).partition(".")[0])

    def visit_Match(self, node) -> None:
        self.matches = True

    def visit_Global(self, node) -> None:
        self.opaque.update(n.name.value for n in node.names)

    def visit_Nonlocal(self, node) -> None:
        self.opaque.update(n.name.value for n in node.names)

    def _bind(self, target, value) -> None:
        """The names `target` binds, to `value` where it is a plain name (None: to something not
        read here)."""
        if isinstance(target, cst.Name) and value is not None:
            self.values.setdefault(target.value, []).append(value)
        else:
            self.opaque.update(target_names(target))
