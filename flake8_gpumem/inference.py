"""Shape inference: a small abstract interpreter over model source.

It evaluates `__init__` to build the module tree (with constants, defaults,
arithmetic, loops and helper calls resolved) and `forward` on tensors known by
shape only, recording one Event per layer call. Nothing is imported or run:
every name resolves to source in the file, to the catalogue, or to a short
list of safe builtins. Whatever cannot be known raises Unresolved.
"""
from __future__ import annotations

import ast
import builtins
import copy
import math
import operator
import re
from dataclasses import dataclass, field
from functools import lru_cache

import libcst as cst

from . import catalogue, composites
from .catalogue import Args, Op
from .signature import REQUIRED, Param, bind, parse
from .source import LINES, Segment, split
from .values import FLOAT_DTYPES, STRIDED, TORCH_DTYPES, AnalysisError, ShapeError, Tensor, Unresolved, tensors_in

MAX_STEPS = 200_000  # evaluated nodes per model: bounds work on any input
MAX_LOOP = 10_000  # iterations of one loop
MAX_DEPTH = 60  # nested calls of functions, methods and modules
MAX_INT_BITS = 63  # sizes beyond int64 are not sizes
WIDE_FORMAT = re.compile(r"[%:.][-+ #0<>^=,_]*\d{5,}")  # '%0999999999d': a width of 10,000+ characters


# ---------------------------------------------------------------- values

@dataclass(frozen=True)
class Q:
    """A name reached through an import, e.g. torch.nn.Conv2d."""

    path: str


@dataclass(eq=False)
class Scope:
    vars: dict
    parent: Scope | None = None
    thunks: dict = field(default_factory=dict)  # module level: name -> node or Segment, evaluated on first use
    torch: bool = False  # composites.py's globals: PyTorch's code, not the user's

    def in_torch(self) -> bool:
        s = self
        while s.parent is not None:
            s = s.parent
        return s.torch


@dataclass(eq=False)
class Function:
    node: cst.FunctionDef | cst.Lambda
    scope: Scope
    name: str
    owner: Class | None = None  # the class a method is defined in, for super()
    segment: Segment | None = None  # the user-file statement it is part of (None: PyTorch's code)


@dataclass(eq=False)
class Class:
    node: cst.ClassDef
    scope: Scope
    name: str
    segment: Segment | None = None

    def method(self, interp: Interpreter, name: str):
        """Look a method up along the in-file base classes."""
        for stmt in self.node.body.body:
            if isinstance(stmt, cst.FunctionDef) and stmt.name.value == name:
                return Function(stmt, self.scope, f"{self.name}.{name}", self, self.segment)
        for base in interp.bases(self):
            if isinstance(base, Class):
                found = base.method(interp, name)
                if found is not None:
                    return found
        return None


@dataclass(eq=False)
class Bound:
    """A method bound to its object: a user method, or a catalogue method of a tensor/list."""

    obj: object
    func: object  # Function, or the method name for tensors and containers


@dataclass(eq=False)
class Builtin:
    fn: object
    name: str


@dataclass(eq=False)
class Parameter:
    tensor: Tensor


@dataclass(eq=False)
class Module:
    """An nn.Module instance as the interpreter builds it."""

    kind: str  # torch class name, or the user class name
    node: cst.CSTNode | None  # where it was constructed
    op: Op | None = None  # catalogue entry, for leaf layers
    args: Args | None = None
    cls: Class | None = None
    container: str | None = None  # Sequential | ModuleList | ModuleDict
    children: dict = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)
    params: list = field(default_factory=list)  # shapes of its own parameters
    buffers: list = field(default_factory=list)  # its own buffer tensors
    lazy: tuple | None = None  # (layer, argument, input dim) of a Lazy* layer: known at its first call
    segment: Segment | None = None  # the statement whose code constructed it


@dataclass
class Event:
    """One call in forward: a leaf module, a functional op, a tensor method or an operator."""

    module: Module | None
    type: str
    node: cst.CSTNode
    inputs: list  # the tensors it reads
    output: object
    allocated: list  # tensors this call created (its activation memory)
    saved: list  # tensors autograd keeps for backward
    notes: list
    grad: str = "alloc"  # how backward makes the inputs' gradients (catalogue Op.grad)
    leaf: bool = True  # False for a custom module whose own ops are events already
    where: tuple | None = None  # (Segment, node) to report it at: the call, or the user code that reached it
    backward_temp: int = 0  # bytes its backward holds briefly beyond the gradients
    backward_late: int | None = None  # the same once it has consumed its output's gradient (freed then)
    forward_temp: int = 0  # bytes it holds briefly while it runs
    own_param_grads: bool = True  # False under AMP: the gradients reach the weights through their casts
    until_forward_end: bool = False  # its output lives until forward ends (autocast's weight cache)
    owner: Module | None = None  # the module whose forward made this call
    folded: bool = False  # made inside a leaf custom module: reported as part of that module's row


LAZY_PENDING = object()  # a lazy layer's size until its first input arrives


class _Return(Exception):
    def __init__(self, value):
        self.value = value


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")
MODULE_BASES = {"torch.nn.Module", "torch.nn.modules.module.Module", "pytorch_lightning.LightningModule",
                "lightning.LightningModule", "lightning.pytorch.LightningModule",
                "pytorch_lightning.core.LightningModule", "lightning.pytorch.core.LightningModule"}
SAFE_BUILTINS = ("range", "len", "int", "float", "bool", "str", "list", "tuple", "dict", "set", "zip",
                 "enumerate", "min", "max", "sum", "abs", "round", "reversed", "sorted", "any", "all",
                 "isinstance", "divmod", "pow", "map", "filter")
SAFE_MATH = ("sqrt", "floor", "ceil", "prod", "log", "log2", "log10", "exp", "pi", "e", "inf", "gcd", "isqrt")
LIST_METHODS = ("append", "extend", "insert", "pop", "index", "count", "copy", "reverse",
                "items", "keys", "values", "get", "update", "setdefault")
BINOPS = {
    cst.Add: operator.add, cst.Subtract: operator.sub, cst.Multiply: operator.mul, cst.Divide: operator.truediv,
    cst.FloorDivide: operator.floordiv, cst.Modulo: operator.mod, cst.Power: operator.pow,
    cst.MatrixMultiply: operator.matmul, cst.BitOr: operator.or_, cst.BitAnd: operator.and_,
    cst.BitXor: operator.xor, cst.LeftShift: operator.lshift, cst.RightShift: operator.rshift,
}
AUGOPS = {
    cst.AddAssign: cst.Add, cst.SubtractAssign: cst.Subtract, cst.MultiplyAssign: cst.Multiply,
    cst.DivideAssign: cst.Divide, cst.FloorDivideAssign: cst.FloorDivide, cst.ModuloAssign: cst.Modulo,
    cst.PowerAssign: cst.Power, cst.MatrixMultiplyAssign: cst.MatrixMultiply, cst.BitOrAssign: cst.BitOr,
}
TENSOR_BINOPS = {cst.Add: ("add", "+", "torch.add"), cst.Subtract: ("sub", "-", "torch.sub"),
                 cst.Multiply: ("mul", "*", "torch.mul"), cst.Divide: ("div", "/", "torch.div"),
                 cst.MatrixMultiply: ("matmul", "@", "torch.matmul")}
COMPARE = {
    cst.Equal: operator.eq, cst.NotEqual: operator.ne, cst.LessThan: operator.lt, cst.LessThanEqual: operator.le,
    cst.GreaterThan: operator.gt, cst.GreaterThanEqual: operator.ge, cst.Is: operator.is_,
    cst.IsNot: operator.is_not, cst.In: lambda a, b: a in b, cst.NotIn: lambda a, b: a not in b,
}
_code = cst.Module([])


def code(node: cst.CSTNode) -> str:
    return _code.code_for_node(node)


# ---------------------------------------------------------------- module scopes

@dataclass(eq=False)
class Rebinding:
    """A module-level name bound again from its own earlier value (`W = W * 2`, `W += 8`)."""

    node: cst.CSTNode  # the value, or the AugAssign
    previous: Segment  # the statement that bound the name before


def segment_scope(segments: list, torch: bool = False) -> Scope:
    """Globals of a source: each name bound by the last statement that binds it, parsed on first use."""
    scope = Scope({}, torch=torch)
    for segment in segments:
        for name in segment.names:
            if name in scope.thunks:
                segment.previous[name] = scope.thunks[name]
            scope.thunks[name] = segment
    return scope


def _parse_into(segment: Segment, scope: Scope) -> None:
    """Declare the names `segment` still owns in `scope` (a later statement may rebind the others)."""
    owned = [n for n in segment.names if scope.thunks.get(n) is segment]
    declared = Scope({})
    try:
        for stmt in segment.module.body:  # PyTorch's code has no place in the user's file
            _declare(stmt, scope, declared, None if scope.torch else segment)
    except AnalysisError as exc:
        declared.vars = {name: Unresolved(f"'{name}' could not be read: {exc.message}") for name in owned}
    for name in owned:
        del scope.thunks[name]
        if name in declared.vars:
            scope.vars[name] = declared.vars[name]
        elif name in declared.thunks:
            before = segment.previous.get(name)
            scope.thunks[name] = Rebinding(declared.thunks[name], before) if before else declared.thunks[name]
        else:  # e.g. a relative import, which gpumem does not follow
            scope.vars[name] = Unresolved(f"'{name}' (line {segment.first_line}) is not something gpumem reads")


def _declare(stmt, scope: Scope, into: Scope, segment: Segment | None = None) -> None:
    """Bind the names a top-level statement defines in `into`; functions and classes close over `scope`."""
    if isinstance(stmt, cst.SimpleStatementLine):
        for small in stmt.body:
            if isinstance(small, (cst.Import, cst.ImportFrom)):
                into.vars.update(imported_names(small))
            elif isinstance(small, cst.Assign):
                for target in small.targets:
                    for name in _target_names(target.target):
                        into.thunks[name] = small.value if isinstance(target.target, cst.Name) else small
                        into.vars.pop(name, None)
            elif isinstance(small, cst.AnnAssign) and small.value is not None and isinstance(small.target, cst.Name):
                into.thunks[small.target.value] = small.value
            elif isinstance(small, cst.AugAssign) and isinstance(small.target, cst.Name):
                into.thunks[small.target.value] = small
    elif isinstance(stmt, cst.ClassDef):
        into.vars[stmt.name.value] = Class(stmt, scope, stmt.name.value, segment)
        into.thunks.pop(stmt.name.value, None)
    elif isinstance(stmt, cst.FunctionDef):
        into.vars[stmt.name.value] = Function(stmt, scope, stmt.name.value, segment=segment)
        into.thunks.pop(stmt.name.value, None)
    elif isinstance(stmt, (cst.Try, cst.If)):  # `try: import x except ImportError: ...` and guarded imports
        for inner in stmt.body.body:
            if isinstance(inner, cst.SimpleStatementLine) and all(
                    isinstance(s, (cst.Import, cst.ImportFrom)) for s in inner.body):
                _declare(inner, scope, into, segment)


def binds(stmt, name: str) -> bool:
    """Whether a top-level statement defines `name` as a class or a plain assignment."""
    if isinstance(stmt, cst.ClassDef):
        return stmt.name.value == name
    return isinstance(stmt, cst.SimpleStatementLine) and any(
        isinstance(s, cst.Assign) and isinstance(s.targets[0].target, cst.Name) and s.targets[0].target.value == name
        for s in stmt.body)


def parse_expression(text: str) -> cst.BaseExpression:
    try:
        return cst.parse_expression(text)
    except cst.ParserSyntaxError as exc:
        raise Unresolved(f"libcst cannot parse {text[:40]!r}: {exc.message}") from None


def _target_names(target) -> list:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, (cst.Tuple, cst.List)):
        return [n for e in target.elements for n in _target_names(e.value)]
    return []


def dotted(node) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{dotted(node.value)}.{node.attr.value}"
    return ""


def imported_names(stmt) -> dict:
    names = {}
    if isinstance(stmt, cst.Import):
        for alias in stmt.names:
            path = dotted(alias.name)
            if alias.asname is not None:
                names[alias.asname.name.value] = Q(path)
            else:
                names[path.split(".")[0]] = Q(path.split(".")[0])
    elif isinstance(stmt.names, cst.ImportStar) or stmt.relative:
        pass
    else:
        base = dotted(stmt.module)
        for alias in stmt.names:
            local = alias.asname.name.value if alias.asname else alias.name.value
            names[local] = Q(f"{base}.{alias.name.value}")
    return names


@lru_cache(maxsize=1)
def _composite_scope() -> Scope:
    """composites.py's source, each layer parsed the first time a model uses it."""
    source = composites.SOURCE
    segments, _ = split(LINES.findall(source), ast.parse(source))
    return segment_scope(segments, torch=True)


def canonical(path: str) -> str:
    """torch.nn.modules.conv.Conv2d -> torch.nn.Conv2d; F aliases kept as written."""
    parts = path.split(".")
    if parts[:3] == ["torch", "nn", "modules"] and len(parts) > 3:
        return "torch.nn." + parts[-1]
    return path


# ---------------------------------------------------------------- the interpreter

class Interpreter:
    """Evaluates one model: construction, then one forward pass."""

    def __init__(self, scope: Scope, model_dtype: str = "float32", device: str = "cuda",
                 autocast: str | None = None):
        self.scope = scope
        self.model_dtype = model_dtype
        self.device = device  # kernels differ: what they keep for backward and their temporaries
        self.autocast = autocast  # AMP: the half dtype autocast computes in, or None
        self.casts: dict = {}  # (id(tensor), dtype) -> its autocast copy, for weights
        self.held: dict = {}  # storage id -> index of the last event while a variable still held it
        self.param_tensors: dict = {}  # id(module) -> its weights as tensors, made when AMP casts them
        self.steps = 0
        self.depth = 0
        self.events: list[Event] = []
        self.stack: list[list] = []  # module calls in flight: [Module, had_child_call]
        self.anchor: tuple | None = None  # (Segment, node) of the innermost user code, for positions
        self.segment: Segment | None = None  # the statement whose code runs now
        self.in_torch = False  # running composites.py's code, whose nodes have no place in the user's file
        self._function_names: dict[str, int] = {}

    @property
    def torch_scope(self) -> Scope:
        """The layers PyTorch builds from others (composites.py), parsed the first time one is used."""
        return _composite_scope()

    # ------------------------------------------------------------ positions

    def where(self, node, module: Module | None = None) -> tuple | None:
        """(Segment, node) to report at: `node` (where `module` was constructed), or, inside
        PyTorch's code, the user code that reached it."""
        if node is None or self.in_torch:
            return self.anchor
        return module.segment if module is not None else self.segment, node

    def _tick(self, node) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise Unresolved(f"analysis stopped after {MAX_STEPS} evaluation steps (model too large or a loop "
                             "too long to unroll)", node)

    # ------------------------------------------------------------ names

    def lookup(self, name: str, scope: Scope, node):
        s = scope
        while s is not None:
            if name in s.vars:
                value = s.vars[name]
                if isinstance(value, Unresolved):
                    raise Unresolved(value.message, node)
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
            s = s.parent
        if name in ("True", "False", "None"):
            return {"True": True, "False": False, "None": None}[name]
        if name in SAFE_BUILTINS:
            return Builtin(getattr(builtins, name), name)
        if name in ("super", "print", "setattr", "getattr", "hasattr", "type"):
            return Builtin(None, name)
        raise Unresolved(f"'{name}' is not known to gpumem: not defined in this file, nor a builtin it evaluates",
                         node)

    def _global_value(self, name: str, node, scope: Scope):
        if isinstance(node, Rebinding):  # evaluated where `name` still has its earlier binding
            before = Scope({}, scope, {name: node.previous})
            if isinstance(node.node, cst.AugAssign):
                self._augassign(node.node, before)  # as in a function body: `+=` on a list extends it
                return self.lookup(name, before, node.node)
            return self._global_value(name, node.node, before)
        if isinstance(node, cst.AugAssign):
            raise Unresolved(f"'{name}' is augmented before it is bound", node)
        if isinstance(node, cst.Assign):  # tuple unpacking at module level
            value = self.eval(node.value, scope)
            tmp = Scope({}, scope)
            for target in node.targets:
                self.assign(target.target, value, tmp)
            return tmp.vars[name]
        return self.eval(node, scope)

    # ------------------------------------------------------------ statements

    def run_block(self, body, scope: Scope) -> None:
        for stmt in body:
            self.run_stmt(stmt, scope)

    def run_stmt(self, stmt, scope: Scope) -> None:
        self._tick(stmt)
        if isinstance(stmt, cst.SimpleStatementLine):
            for small in stmt.body:
                self.run_small(small, scope)
        elif isinstance(stmt, cst.If):
            self._run_if(stmt, scope)
        elif isinstance(stmt, cst.For):
            self._run_for(stmt, scope)
        elif isinstance(stmt, cst.With):
            self.run_block(stmt.body.body, scope)
        elif isinstance(stmt, cst.Try):
            self.run_block(stmt.body.body, scope)
            if stmt.orelse is not None:
                self.run_block(stmt.orelse.body.body, scope)
            if stmt.finalbody is not None:
                self.run_block(stmt.finalbody.body.body, scope)
        elif isinstance(stmt, cst.FunctionDef):
            scope.vars[stmt.name.value] = Function(stmt, scope, stmt.name.value, segment=self.segment)
        elif isinstance(stmt, cst.ClassDef):
            scope.vars[stmt.name.value] = Class(stmt, scope, stmt.name.value, self.segment)
        elif isinstance(stmt, cst.While):
            raise Unresolved("a while loop cannot be unrolled statically", stmt)
        else:
            raise Unresolved(f"unsupported statement: {type(stmt).__name__}", stmt)

    def _run_if(self, stmt: cst.If, scope: Scope) -> None:
        if self.truth(self.eval(stmt.test, scope), stmt.test):
            self.run_block(stmt.body.body, scope)
        elif isinstance(stmt.orelse, cst.If):
            self._run_if(stmt.orelse, scope)
        elif stmt.orelse is not None:
            self.run_block(stmt.orelse.body.body, scope)

    def truth(self, value, node) -> bool:
        if isinstance(value, Tensor):
            raise Unresolved("a condition on tensor values depends on the data", node)
        return bool(value)

    def _run_for(self, stmt: cst.For, scope: Scope) -> None:
        broke = False
        for item in self.iterate(self.eval(stmt.iter, scope), stmt.iter):
            self._tick(stmt)
            self.assign(stmt.target, item, scope)
            try:
                self.run_block(stmt.body.body, scope)
            except _Break:
                broke = True
                break
            except _Continue:
                continue
        if not broke and stmt.orelse is not None:
            self.run_block(stmt.orelse.body.body, scope)

    def iterate(self, value, node) -> list:
        if isinstance(value, Module):
            if value.container in ("Sequential", "ModuleList"):
                return list(value.children.values())
            if value.container == "ModuleDict":
                return list(value.children)
            raise Unresolved(f"cannot iterate over a {value.kind}", node)
        if isinstance(value, Tensor):
            return [value.view(value.shape[1:]) for _ in range(value.shape[0])] if value.ndim else []
        if isinstance(value, range) and len(value) > MAX_LOOP:
            raise Unresolved(f"a loop of {len(value)} iterations is more than the {MAX_LOOP} unrolled", node)
        try:
            items = list(value) if not isinstance(value, (int, float)) else None
        except TypeError:
            items = None
        if items is None:
            raise Unresolved(f"cannot iterate over {type(value).__name__}", node)
        if len(items) > MAX_LOOP:
            raise Unresolved(f"a loop of {len(items)} iterations is more than the {MAX_LOOP} unrolled", node)
        return items

    def run_small(self, small, scope: Scope) -> None:
        if isinstance(small, cst.Expr):
            if isinstance(small.value, cst.Call) and not self._resolvable(small.value.func, scope):
                return  # print(...), logging, open(...).write(...): nothing a shape depends on
            self.eval(small.value, scope)
        elif isinstance(small, cst.Assign):
            value = self.eval(small.value, scope)
            for target in small.targets:
                self.assign(target.target, value, scope)
        elif isinstance(small, cst.AnnAssign):
            if small.value is not None:
                self.assign(small.target, self.eval(small.value, scope), scope)
        elif isinstance(small, cst.AugAssign):
            self._augassign(small, scope)
        elif isinstance(small, cst.Return):
            raise _Return(None if small.value is None else self.eval(small.value, scope))
        elif isinstance(small, (cst.Import, cst.ImportFrom)):
            scope.vars.update(imported_names(small))
        elif isinstance(small, cst.Break):
            raise _Break()
        elif isinstance(small, cst.Continue):
            raise _Continue()
        elif isinstance(small, cst.Raise):
            raise Unresolved("the code raises an exception here", small)
        elif isinstance(small, (cst.Pass, cst.Assert, cst.Global, cst.Nonlocal, cst.Del)):
            pass
        else:
            raise Unresolved(f"unsupported statement: {type(small).__name__}", small)

    def _resolvable(self, func, scope: Scope) -> bool:
        """Whether a called name is one gpumem knows (defined in the file, imported, or a safe builtin)."""
        root = func
        while isinstance(root, (cst.Attribute, cst.Call, cst.Subscript)):
            root = root.value if not isinstance(root, cst.Call) else root.func
        if not isinstance(root, cst.Name):
            return True
        try:
            self.lookup(root.value, scope, root)
        except AnalysisError:
            return False
        return True

    def _augassign(self, small: cst.AugAssign, scope: Scope) -> None:
        op = AUGOPS.get(type(small.operator))
        if op is None:
            raise Unresolved(f"unsupported operator {code(small.operator)}", small)
        current = self.eval(small.target, scope)
        value = self.eval(small.value, scope)
        if isinstance(current, list) and op is cst.Add:
            current.extend(self.iterate(value, small.value))  # `layers += [...]` mutates the list
            return
        if isinstance(current, Tensor):
            # In place: no new memory, the result keeps the target's storage.
            result = self.binop(op, current, value, small, inplace=True)
        else:
            result = self.binop(op, current, value, small)
        self.assign(small.target, result, scope)

    def assign(self, target, value, scope: Scope) -> None:
        if isinstance(target, cst.Name):
            self._hold(scope.vars.get(target.value))  # the old value lives until the name is rebound
            scope.vars[target.value] = value
        elif isinstance(target, (cst.Tuple, cst.List)):
            items = self.iterate(value, target)
            elements = target.elements
            star = next((i for i, e in enumerate(elements) if isinstance(e, cst.StarredElement)), None)
            if star is None:
                if len(items) != len(elements):
                    raise Unresolved(f"cannot unpack {len(items)} values into {len(elements)} names", target)
                for e, v in zip(elements, items):
                    self.assign(e.value, v, scope)
            else:
                after = len(elements) - star - 1
                for e, v in zip(elements[:star], items):
                    self.assign(e.value, v, scope)
                self.assign(elements[star].value, list(items[star:len(items) - after]), scope)
                for e, v in zip(elements[star + 1:], items[len(items) - after:]):
                    self.assign(e.value, v, scope)
        elif isinstance(target, cst.Attribute):
            self.setattr(self.eval(target.value, scope), target.attr.value, value, target)
        elif isinstance(target, cst.Subscript):
            container = self.eval(target.value, scope)
            key = self._index_value(target, scope)
            if isinstance(container, Module):
                self.register(container, str(key), value, target)
            elif isinstance(container, (list, dict)):
                container[key] = value
            else:
                raise Unresolved(f"cannot assign into {type(container).__name__}", target)
        else:
            raise Unresolved(f"unsupported assignment target {code(target)}", target)

    def _index_value(self, node: cst.Subscript, scope: Scope):
        if len(node.slice) != 1 or not isinstance(node.slice[0].slice, cst.Index):
            raise Unresolved(f"unsupported subscript {code(node)}", node)
        return self.eval(node.slice[0].slice.value, scope)

    # ------------------------------------------------------------ modules

    def setattr(self, obj, name: str, value, node) -> None:
        if not isinstance(obj, Module):
            raise Unresolved(f"cannot set attribute '{name}' on {type(obj).__name__}", node)
        self.register(obj, name, value, node)

    def register(self, obj: Module, name: str, value, node) -> None:
        """Attribute assignment with nn.Module's rules: modules and parameters are registered."""
        obj.children.pop(name, None) if not isinstance(value, Module) else None
        if isinstance(value, Module):
            obj.attrs.pop(name, None)
            obj.children[name] = value
        elif isinstance(value, Parameter):
            obj.params.append(value.tensor.shape)
            obj.attrs[name] = value.tensor
        else:
            obj.attrs[name] = value

    def construct(self, kind: str, op: Op | None, args: list, kwargs: dict, node) -> Module:
        """A catalogue layer or container from its constructor call."""
        if kind in CONTAINERS:
            return self._container(kind, args, kwargs, node)
        lazy = catalogue.LAZY.get(kind)
        if lazy is not None:  # LazyLinear(10): Linear(<from the first input>, 10)
            kind, op = lazy[0], catalogue.MODULES[lazy[0]]
            args = [LAZY_PENDING] + list(args)
        bound = Args(bind(_params(op.signature), args, kwargs, f"nn.{kind}", node))
        module = Module(kind, node, op=op, args=bound, lazy=lazy, segment=self.segment)
        if lazy is None:
            self._materialize(module, node)
        return module

    def _materialize(self, module: Module, node) -> None:
        """Parameters and buffers from the constructor arguments (a lazy layer's once its input is known)."""
        try:
            module.params = [tuple(s) for s in module.op.params(module.args)]
            module.buffers = list(module.op.buffers(module.args))
        except AnalysisError as exc:
            exc.node = exc.node or node
            raise
        except (TypeError, ValueError, ZeroDivisionError) as exc:
            raise Unresolved(f"nn.{module.kind} arguments cannot be used: {exc}", node) from None
        for shape in module.params + [t.shape for t in module.buffers]:
            bad = _bad_sizes(shape)
            if bad:  # PyTorch refuses to build such a layer
                named = ", ".join(f"{k}={v!r}" for k, v in module.args.items() if any(v is b for b in bad))
                what = f"nn.{module.kind}({named})" if named else (
                    f"nn.{module.kind} would hold a parameter of shape {catalogue.fmt(shape)}")
                raise ShapeError(f"{what}: a size must be a whole number, 0 or more", node)

    def _container(self, kind: str, args: list, kwargs: dict, node) -> Module:
        module = Module(kind, node, container=kind, segment=self.segment)
        if kind == "Sequential":
            if len(args) == 1 and isinstance(args[0], dict):
                for key, child in args[0].items():
                    self._add_child(module, str(key), child, node)
            else:
                for i, child in enumerate(args):
                    self._add_child(module, str(i), child, node)
        else:
            items = args[0] if args else kwargs.get("modules", kwargs.get("dict"))
            if items is None:
                return module
            if kind == "ModuleDict":
                pairs = items.items() if isinstance(items, dict) else items
                for key, child in pairs:
                    self._add_child(module, str(key), child, node)
            else:
                for child in self.iterate(items, node):
                    self._add_child(module, str(len(module.children)), child, node)
        return module

    def _add_child(self, module: Module, name: str, child, node) -> None:
        if not isinstance(child, Module):
            raise Unresolved(f"nn.{module.kind} holds {type(child).__name__}, not a module", node)
        module.children[name] = child

    def instantiate(self, cls: Class, args: list, kwargs: dict, node) -> Module:
        if not self.is_module_class(cls):
            raise Unresolved(f"'{cls.name}' is not an nn.Module", node)
        module = Module(cls.name, node, cls=cls, segment=self.segment)
        init = cls.method(self, "__init__")
        if init is not None:
            self.call_function(init, [module] + list(args), kwargs, node)
        return module

    def bases(self, cls: Class) -> list:
        out = []
        for arg in cls.node.bases:
            try:
                out.append(self.eval(arg.value, cls.scope))
            except AnalysisError:
                out.append(None)
        return out

    def is_module_class(self, cls: Class, seen=None) -> bool:
        seen = seen or set()
        if id(cls) in seen:
            return False
        seen.add(id(cls))
        for base in self.bases(cls):
            if isinstance(base, Q) and canonical(base.path) in MODULE_BASES:
                return True
            if isinstance(base, Class) and self.is_module_class(base, seen):
                return True
        return False

    def call_module(self, module: Module, args: list, kwargs: dict, node):
        if self.stack:
            self.stack[-1][1] = True
        self.stack.append([module, False])
        try:
            if module.container == "Sequential":
                if len(args) != 1 or kwargs:
                    raise Unresolved("nn.Sequential takes exactly one input", node)
                x = args[0]
                for child in module.children.values():
                    x = self.call(child, [x], {}, node)
                return x
            if module.container:
                raise Unresolved(f"nn.{module.container} is not callable", node)
            if module.op is not None:
                if module.lazy is not None and module.args[module.lazy[1]] is LAZY_PENDING:
                    x = next(tensors_in(args), None)
                    if x is None or x.ndim <= abs(module.lazy[2]) - (module.lazy[2] < 0):
                        raise Unresolved(f"Lazy{module.kind} cannot infer {module.lazy[1]} from its input", node)
                    module.args[module.lazy[1]] = x.shape[module.lazy[2]]
                    self._materialize(module, module.node)
                return self.apply(module.op, dict(module.args), module.op.forward, args, kwargs, node, module,
                                  module.kind)
            forward = module.cls.method(self, "forward")
            if forward is None:
                raise Unresolved(f"{module.kind} has no forward method", module.cls.node)
            first = len(self.events)
            out = self.call_function(forward, [module] + list(args), kwargs, node)
            if not self.stack[-1][1]:  # a custom module that calls no other module is a leaf too
                for ev in self.events[first:]:
                    ev.folded = True
                self.events.append(Event(module, module.kind, node, list(tensors_in(args)), out, [], [], [],
                                         leaf=False, where=self.where(module.node, module)))
            return out
        finally:
            self.stack.pop()

    # ------------------------------------------------------------ applying catalogue ops

    def apply(self, op: Op, fixed: dict, signature: str, args: list, kwargs: dict, node, module: Module | None,
              type_name: str, inplace: Tensor | None = None):
        """Run a catalogue entry on known shapes and record the call.

        With `inplace`, the result is written into that tensor's memory (`x += y`)."""
        bound = Args(fixed)
        bound.update(bind(_params(signature), args, kwargs, type_name, node))
        bound["_float"] = self.model_dtype
        bound["_device"] = self.device
        # the caller's arguments live until the call returns, also when autocast hands the op copies
        amp = self.autocast and op.autocast
        originals = list(tensors_in(list(bound.values()))) if amp else []
        weights = self._autocast(op, bound, module, node) if amp else []
        inputs = [t for t in tensors_in(list(bound.values()))] + weights
        try:
            out = op.shape(bound)
        except AnalysisError as exc:
            exc.node = exc.node or (module.node if module is not None else node)
            raise
        except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError, AttributeError) as exc:
            raise Unresolved(f"{type_name} arguments cannot be used: {exc}", node) from None
        if inplace is not None:
            if out.shape != inplace.shape:
                raise ShapeError(f"an in-place result of shape {catalogue.fmt(out.shape)} cannot be written "
                                 f"into {catalogue.fmt(inplace.shape)}", node)
            out = inplace.rewritten()
        input_ids = {id(t) for t in inputs}
        outputs = list(tensors_in(out))
        for t in outputs:
            if _bad_sizes(t.shape):
                raise ShapeError(f"{type_name} gives an output of shape {catalogue.fmt(t.shape)}: a size must be "
                                 "a whole number, 0 or more", node)
        if inputs and all(t.is_param for t in inputs) and all(t.base is not None for t in outputs):
            for t in outputs:
                t.is_param, t.requires_grad = True, True
            return out  # w.split(...), w.chunk(3): slices of a weight
        in_memory = {t.storage.id for t in inputs}
        new = list({t.storage.id: t.storage for t in outputs if id(t) not in input_ids  # a view of a new tensor
                    and t.storage.id not in in_memory}.values())
        grad = any(t.requires_grad for t in inputs) or bool(module and module.params)
        for t in outputs:
            if id(t) not in input_ids:
                t.requires_grad = grad and t.dtype in FLOAT_DTYPES
        saved = list(op.saves(bound, out)) if grad else []
        if weights and (op.keeps_weight or any(t.requires_grad and not t.is_param for t in inputs
                                               if t not in weights)):
            saved.append(weights[0])  # the half-precision weight copy, for the input's gradient
        known = input_ids | {id(t) for t in outputs}
        new += [t for t in saved if id(t) not in known and t.base is None]  # indices, masks, statistics
        temp = op.backward_temp(bound) if grad else 0
        early, late = temp if isinstance(temp, tuple) else (temp, None)
        written = next((t.base for t in outputs if t.rewrite), None)  # what an in-place op wrote
        if grad and written is not None and written.is_view:
            # in place on a view: autograd's CopySlices makes the base's gradient and clones the view's
            copy_slices = written.storage.nbytes + written.nbytes
            early, late = early + copy_slices, None if late is None else late + copy_slices
        self.events.append(Event(module, type_name, node, inputs, out, new, saved, bound.notes, op.grad,
                                 where=self.where(module.node, module) if module is not None else self.where(node),
                                 backward_temp=early, backward_late=late,
                                 forward_temp=op.forward_temp(bound, out),
                                 owner=self.stack[-1][0] if self.stack else None,
                                 own_param_grads=not weights))
        for t in originals:
            self.held[t.storage.id] = max(self.held.get(t.storage.id, -1), len(self.events) - 1)
        return out

    def _autocast(self, op: Op, bound: Args, module: Module | None, node) -> list:
        """Under AMP, cast the call's float inputs to the op's precision; return the module's
        half-precision weight copies (autocast caches one per weight per forward)."""
        target = self.autocast if op.autocast == "low" else (
            "float32" if op.autocast == "fp32" or self.device == "cuda" else None)
        if target is None:
            return []
        # autocast casts the arguments last to first (the module's bias, its weight, then the input),
        # so in backward the input's cast runs first
        weights = []
        if module is not None and target != "float32" and module.params:
            if id(module) not in self.param_tensors:
                self.param_tensors[id(module)] = [Tensor(tuple(s), self.model_dtype, True, is_param=True)
                                                  for s in module.params]
            weights = [self._cast(p, target, node) for p in reversed(self.param_tensors[id(module)])][::-1]
        for key, value in reversed(list(bound.items())):
            if isinstance(value, Tensor) and value.dtype in FLOAT_DTYPES and value.dtype != target:
                bound[key] = self._cast(value, target, node)
            elif isinstance(value, (list, tuple)) and any(isinstance(v, Tensor) for v in value):
                bound[key] = type(value)(self._cast(v, target, node) if isinstance(v, Tensor) and
                                         v.dtype in FLOAT_DTYPES and v.dtype != target else v for v in value)
        return weights

    def _cast(self, t: Tensor, dtype: str, node) -> Tensor:
        cached = self.casts.get((id(t), dtype))
        if cached is None:
            cached = self.apply(catalogue.CAST, {}, "input, dtype", [t, dtype], {}, node, None, "autocast")
            if t.is_param:  # autocast's weight cache holds it until the forward pass ends
                self.casts[(id(t), dtype)] = cached
                self.events[-1].until_forward_end = True
        return cached

    def call_function_op(self, path: str, op: Op, args: list, kwargs: dict, node):
        return self.apply(op, {}, op.signature, args, kwargs, node, None, _short(node, path))

    # ------------------------------------------------------------ calls

    def call(self, func, args: list, kwargs: dict, node):
        self._tick(node)
        if isinstance(func, Module):
            return self.call_module(func, args, kwargs, node)
        if isinstance(func, Function):
            return self.call_function(func, args, kwargs, node)
        if isinstance(func, Bound):
            return self.call_bound(func, args, kwargs, node)
        if isinstance(func, Class):
            return self.instantiate(func, args, kwargs, node)
        if isinstance(func, Q):
            return self.call_q(func.path, args, kwargs, node)
        if isinstance(func, Builtin):
            return self.call_builtin(func, args, kwargs, node)
        raise Unresolved(f"{code(node.func) if isinstance(node, cst.Call) else func!r} is not callable here", node)

    def call_function(self, func: Function, args: list, kwargs: dict, node):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.depth -= 1
            raise Unresolved(f"calls nest deeper than {MAX_DEPTH} (recursive model or helper?)", node)
        caller_in_torch, self.in_torch = self.in_torch, func.scope.in_torch()
        caller_segment, self.segment = self.segment, func.segment or self.segment
        try:
            local = Scope({"__class__": func.owner} if func.owner else {}, func.scope)
            params = self._function_params(func, local)
            local.vars.update(bind(params, args, kwargs, func.name, node))
            if isinstance(func.node, cst.Lambda):
                return self.eval(func.node.body, local)
            try:
                body = func.node.body
                if isinstance(body, cst.IndentedBlock):
                    self.run_block(body.body, local)
                else:  # def f(): return x  on one line
                    for small in body.body:
                        self.run_small(small, local)
            except _Return as ret:
                return ret.value
            finally:
                self._hold_locals(local)
            return None
        finally:
            self.depth -= 1
            self.in_torch, self.segment = caller_in_torch, caller_segment

    def _hold_locals(self, local: Scope) -> None:
        """Tensors still bound to a function's variables live until it returns (Python frees them then)."""
        for value in local.vars.values():
            self._hold(value)

    def _hold(self, value) -> None:
        if self.events and isinstance(value, (list, tuple, dict, Tensor)):
            for t in tensors_in(value):
                self.held[t.storage.id] = len(self.events) - 1

    def _function_params(self, func: Function, scope: Scope) -> list:
        ps = func.node.params

        def default(p):
            return REQUIRED if p.default is None else self.eval(p.default, scope.parent)

        params = [Param(p.name.value, default(p)) for p in list(ps.posonly_params) + list(ps.params)]
        if isinstance(ps.star_arg, cst.Param):
            params.append(Param(ps.star_arg.name.value, kind="varargs"))
        params += [Param(p.name.value, default(p), "kwonly") for p in ps.kwonly_params]
        if ps.star_kwarg is not None:
            params.append(Param(ps.star_kwarg.name.value, kind="kwargs"))
        return params

    def call_bound(self, bound: Bound, args: list, kwargs: dict, node):
        obj, func = bound.obj, bound.func
        if isinstance(func, Function):
            return self.call_function(func, [obj] + list(args), kwargs, node)
        if isinstance(obj, Tensor):
            op = catalogue.METHODS.get(func)
            if op is None:
                raise Unresolved(f"tensor method .{func}() is not in the catalogue", node)
            return self.apply(op, {}, op.signature, [obj] + list(args), kwargs, node, None, f"Tensor.{func}")
        if isinstance(obj, Module):
            return self._module_method(obj, func, args, kwargs, node)
        if isinstance(obj, (list, dict)):
            try:
                return getattr(obj, func)(*args, **kwargs)
            except (TypeError, ValueError, IndexError, KeyError) as exc:
                raise Unresolved(f".{func}() failed: {exc}", node) from None
        raise Unresolved(f"cannot call .{func}() on {type(obj).__name__}", node)

    def _module_method(self, obj: Module, name: str, args: list, kwargs: dict, node):
        if name in ("append", "add_module", "register_module", "extend", "insert", "register_buffer",
                    "register_parameter", "update"):
            if name == "append":
                self._add_child(obj, str(len(obj.children)), args[0], node)
                return obj
            if name == "extend":
                for child in self.iterate(args[0], node):
                    self._add_child(obj, str(len(obj.children)), child, node)
                return obj
            if name == "update":
                for key, child in (args[0].items() if isinstance(args[0], dict) else args[0]):
                    self._add_child(obj, str(key), child, node)
                return None
            if name == "insert":
                items = list(obj.children.values())
                items.insert(args[0], args[1])
                obj.children = {str(i): m for i, m in enumerate(items)}
                return None
            if name == "register_buffer":
                if isinstance(args[1], Tensor):
                    obj.buffers.append(args[1])
                obj.attrs[args[0]] = args[1]
                return None
            self.register(obj, str(args[0]), args[1], node)
            return None
        if name in ("items", "keys", "values") and obj.container == "ModuleDict":
            return list(getattr(obj.children, name)())
        if name in ("modules", "children", "named_modules", "parameters", "named_parameters", "apply",
                    "to", "cuda", "cpu", "train", "eval", "float", "half", "double", "requires_grad_",
                    "zero_grad", "reset_parameters", "_reset_parameters", "init_weights"):
            return None if name not in ("to", "cuda", "cpu", "train", "eval", "float", "half", "double") else obj
        raise Unresolved(f"cannot call {obj.kind}.{name}() statically", node)

    def call_q(self, path: str, args: list, kwargs: dict, node):
        path = canonical(path)
        name = path.rsplit(".", 1)[-1]
        if path.startswith("torch.nn.") and path.count(".") == 2 and (
                name in catalogue.MODULES or name in CONTAINERS or name in catalogue.LAZY):
            return self.construct(name, catalogue.MODULES.get(name), args, kwargs, node)
        if path.startswith("torch.nn.") and path.count(".") == 2 and name in composites.LAYERS:
            self.anchor = self.where(node)
            return self.instantiate(self.lookup(name, self.torch_scope, node), args, kwargs, node)
        if path in catalogue.FUNCTIONS:
            return self.call_function_op(path, catalogue.FUNCTIONS[path], args, kwargs, node)
        if path in ("torch.nn.Parameter", "torch.nn.parameter.Parameter"):
            data = args[0] if args else kwargs.get("data")
            if not isinstance(data, Tensor):
                raise Unresolved("nn.Parameter of something that is not a tensor", node)
            return Parameter(Tensor(data.shape, self.model_dtype, True, is_param=True))
        if path.startswith("torch.nn.init.") or path in ("torch.manual_seed", "warnings.warn"):
            return None
        if path in ("collections.OrderedDict", "typing.OrderedDict"):
            return dict(*args, **kwargs)
        if path == "copy.deepcopy":
            return _clone(args[0])
        if path.startswith("math.") and name in SAFE_MATH:
            value = getattr(math, name)
            return value(*args, **kwargs) if callable(value) else value
        if path == "torch.Size":
            return tuple(args[0]) if args else ()
        raise Unresolved(f"{path}() is not known to gpumem", node)

    def call_builtin(self, func: Builtin, args: list, kwargs: dict, node):
        name = func.name
        if name == "super":
            raise Unresolved("super() is understood only as super().method(...)", node)
        if name == "print":
            return None
        if name == "setattr":
            self.setattr(args[0], args[1], args[2], node)
            return None
        if name in ("getattr", "hasattr"):
            try:
                value = self.getattr(args[0], args[1], node)
            except AnalysisError:
                if name == "hasattr":
                    return False
                if len(args) > 2:
                    return args[2]
                raise
            return True if name == "hasattr" else value
        if name == "type":
            raise Unresolved("type() of a value is not known statically", node)
        if name == "isinstance":
            return self._isinstance(args[0], args[1], node)
        if name == "len" and args and isinstance(args[0], Module):
            return len(args[0].children)
        if name == "len" and args and isinstance(args[0], Tensor):
            return args[0].shape[0]
        if name in ("list", "tuple", "enumerate", "zip", "reversed", "sorted", "sum", "min", "max", "map",
                    "filter", "any", "all", "dict", "set") and args and isinstance(args[0], Module):
            args = [self.iterate(args[0], node)] + list(args[1:])
        if name in ("map", "filter"):
            fn = args[0]
            items = [self.iterate(a, node) for a in args[1:]]
            if name == "map":
                return [self.call(fn, list(vals), {}, node) for vals in zip(*items)]
            return [v for v in items[0] if (self.truth(self.call(fn, [v], {}, node), node) if fn else v)]
        if name == "range":
            r = range(*args)
            if len(r) > MAX_LOOP:
                raise Unresolved(f"range of {len(r)} is more than the {MAX_LOOP} unrolled", node)
            return r
        if name == "pow":
            return self.binop(cst.Power, args[0], args[1], node)
        try:
            result = func.fn(*args, **kwargs)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
            raise Unresolved(f"{name}() failed: {exc}", node) from None
        return list(result) if name in ("enumerate", "zip", "reversed") else result

    def _isinstance(self, obj, kinds, node) -> bool:
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        for k in kinds:
            if isinstance(k, Q) and isinstance(obj, Module):
                name = canonical(k.path).rsplit(".", 1)[-1]
                if name == obj.kind or name == "Module":
                    return True
            elif isinstance(k, Class) and isinstance(obj, Module) and obj.cls is k:
                return True
            elif isinstance(k, Builtin) and isinstance(k.fn, type) and not isinstance(obj, (Module, Tensor)):
                if isinstance(obj, k.fn):
                    return True
            elif isinstance(k, Q) and isinstance(obj, Tensor) and k.path == "torch.Tensor":
                return True
        return False

    # ------------------------------------------------------------ attributes

    def getattr(self, obj, name: str, node):
        if isinstance(obj, Q):
            if obj.path == "torch" and name in TORCH_DTYPES:
                return TORCH_DTYPES[name]  # torch.float16, torch.half: the dtype "float16"
            return Q(f"{obj.path}.{name}")
        if isinstance(obj, Module):
            return self._module_attr(obj, name, node)
        if isinstance(obj, Tensor):
            if name == "shape":
                return obj.shape
            if name == "ndim":
                return obj.ndim
            if name == "dtype":
                return obj.dtype
            if name == "device":
                return Q("torch.device")
            if name == "T":
                return obj.view(obj.shape[::-1])
            if name == "requires_grad":
                return obj.requires_grad
            return Bound(obj, name)
        if isinstance(obj, (list, dict)) and name in LIST_METHODS:
            return Bound(obj, name)
        if isinstance(obj, Class):
            method = obj.method(self, name)
            if method is not None:
                return method
            for stmt in obj.node.body.body:
                if isinstance(stmt, cst.SimpleStatementLine):
                    for small in stmt.body:
                        if isinstance(small, cst.Assign) and any(
                                isinstance(t.target, cst.Name) and t.target.value == name for t in small.targets):
                            return self.eval(small.value, obj.scope)
        if isinstance(obj, (int, float, str, tuple)) and name in ("real", "upper", "lower", "format", "join",
                                                                   "startswith", "endswith", "split", "index",
                                                                   "count"):
            if name == "format":
                _check_format(obj, node)
            return Builtin(getattr(obj, name), name)
        raise Unresolved(f"attribute '{name}' of {type(obj).__name__} is not known", node)

    def _module_attr(self, obj: Module, name: str, node):
        if name in obj.children:
            return obj.children[name]
        if name in obj.attrs:
            value = obj.attrs[name]
            if isinstance(value, Unresolved):
                raise Unresolved(value.message, node)
            return value
        if name == "training":
            return True
        if obj.cls is not None:
            method = obj.cls.method(self, name)
            if method is not None:
                return Bound(obj, method)
            for cls in [obj.cls] + [b for b in self.bases(obj.cls) if isinstance(b, Class)]:
                try:
                    return self.getattr(cls, name, node)
                except AnalysisError:
                    continue
        if obj.op is not None and name in ("weight", "bias"):
            idx = 0 if name == "weight" else 1
            if idx >= len(obj.params):
                return None  # bias=False
            key = (id(obj), name)
            if key not in self.param_tensors:  # one tensor per weight, so its gradient is counted once
                self.param_tensors[key] = Tensor(obj.params[idx], self.model_dtype, True, is_param=True)
            return self.param_tensors[key]
        if obj.args is not None and name in obj.args:  # e.g. conv.out_channels
            return obj.args[name]
        return Bound(obj, name)

    # ------------------------------------------------------------ expressions

    def eval(self, node, scope: Scope):
        self._tick(node)
        try:
            return self._eval(node, scope)
        except (AnalysisError, _Return, _Break, _Continue):
            raise
        except RecursionError:
            raise Unresolved("an expression nests too deeply for gpumem", None) from None
        except Exception as exc:  # any Python-level failure of an evaluated value
            raise Unresolved(f"cannot evaluate {code(node)[:80]}: {exc or type(exc).__name__}", node) from None

    def _eval(self, node, scope: Scope):
        handler = _EVAL.get(type(node))  # by exact type: isinstance on libcst's ABC-based nodes is slow
        if handler is None:
            raise Unresolved(f"unsupported expression {code(node)[:60]}", node)
        return handler(self, node, scope)

    def _name(self, node: cst.Name, scope: Scope):
        return self.lookup(node.value, scope, node)

    def _boolean(self, node: cst.BooleanOperation, scope: Scope):
        left = self.eval(node.left, scope)
        if isinstance(node.operator, cst.And):
            return self.eval(node.right, scope) if self.truth(left, node) else left
        return left if self.truth(left, node) else self.eval(node.right, scope)

    def _ifexp(self, node: cst.IfExp, scope: Scope):
        test = self.truth(self.eval(node.test, scope), node.test)
        return self.eval(node.body if test else node.orelse, scope)

    def _sequence(self, node, scope: Scope):
        items = []
        for e in node.elements:
            value = self.eval(e.value, scope)
            items.extend(self.iterate(value, e) if isinstance(e, cst.StarredElement) else [value])
        return tuple(items) if isinstance(node, cst.Tuple) else (list(items) if isinstance(node, cst.List)
                                                                 else set(items))

    def _dict(self, node: cst.Dict, scope: Scope):
        out = {}
        for e in node.elements:
            if isinstance(e, cst.StarredDictElement):
                out.update(self.eval(e.value, scope))
            else:
                out[self.eval(e.key, scope)] = self.eval(e.value, scope)
        return out

    def _listcomp(self, node, scope: Scope):
        items = []
        self._comprehend(node.for_in, Scope({}, scope), lambda s: items.append(self.eval(node.elt, s)))
        return set(items) if isinstance(node, cst.SetComp) else items

    def _dictcomp(self, node: cst.DictComp, scope: Scope):
        out = {}
        self._comprehend(node.for_in, Scope({}, scope),
                         lambda s: out.__setitem__(self.eval(node.key, s), self.eval(node.value, s)))
        return out

    def _fstring(self, node: cst.FormattedString, scope: Scope) -> str:
        out = []
        for part in node.parts:
            if isinstance(part, cst.FormattedStringText):
                out.append(part.value)
            else:
                value = self.eval(part.expression, scope)
                if not isinstance(value, (int, float, str, bool)):
                    raise Unresolved("an f-string of a non-constant value", node)
                out.append(str(value))
        return "".join(out)

    def _comprehend(self, comp: cst.CompFor, scope: Scope, emit) -> None:
        for item in self.iterate(self.eval(comp.iter, scope), comp.iter):
            self._tick(comp)
            self.assign(comp.target, item, scope)
            if all(self.truth(self.eval(c.test, scope), c.test) for c in comp.ifs):
                if comp.inner_for_in is not None:
                    self._comprehend(comp.inner_for_in, scope, emit)
                else:
                    emit(scope)

    def _eval_call(self, node: cst.Call, scope: Scope):
        func_node = node.func
        # super().__init__(...) and Base.__init__(self, ...): run the base class constructor.
        if isinstance(func_node, cst.Attribute) and isinstance(func_node.value, cst.Call) and dotted(
                func_node.value.func) == "super":
            return self._super_call(func_node.attr.value, node, scope)
        func = self.eval(func_node, scope)
        args, kwargs = [], {}
        for arg in node.args:
            value = self.eval(arg.value, scope)
            if arg.star == "*":
                args.extend(self.iterate(value, arg.value))
            elif arg.star == "**":
                if not isinstance(value, dict):
                    raise Unresolved("** of something that is not a dict", arg)
                kwargs.update(value)
            elif arg.keyword is not None:
                kwargs[arg.keyword.value] = value
            else:
                args.append(value)
        if not self.in_torch:
            saved, self.anchor = self.anchor, (self.segment, node)
            try:
                return self.call(func, args, kwargs, node)
            finally:
                self.anchor = saved
        return self.call(func, args, kwargs, node)

    def _super_call(self, method: str, node: cst.Call, scope: Scope):
        self_obj = self.lookup("self", scope, node)
        if not isinstance(self_obj, Module) or self_obj.cls is None:
            return None
        args = [self.eval(a.value, scope) for a in node.args if not a.keyword and not a.star]
        kwargs = {a.keyword.value: self.eval(a.value, scope) for a in node.args if a.keyword}
        owner = self._owner_class(scope)
        for base in self.bases(owner or self_obj.cls):
            if isinstance(base, Class):
                found = base.method(self, method)
                if found is not None:
                    return self.call_function(found, [self_obj] + args, kwargs, node)
        return None  # nn.Module.__init__ and friends

    def _owner_class(self, scope: Scope) -> Class | None:
        """The class whose method is running: the innermost function scope's defining class."""
        s = scope
        while s is not None:
            owner = s.vars.get("__class__")
            if owner is not None:
                return owner
            s = s.parent
        return None

    def _unary(self, node: cst.UnaryOperation, scope: Scope):
        value = self.eval(node.expression, scope)
        if isinstance(node.operator, cst.Not):
            return not self.truth(value, node)
        if isinstance(value, Tensor):
            if isinstance(node.operator, cst.Minus):
                return self.apply(catalogue.unary(), {}, "input", [value], {}, node, None, "neg")
            raise Unresolved(f"unsupported operator on a tensor: {code(node)}", node)
        if isinstance(node.operator, cst.Minus):
            return -value
        if isinstance(node.operator, cst.Plus):
            return +value
        return ~value

    def _compare(self, node: cst.Comparison, scope: Scope):
        left = self.eval(node.left, scope)
        for target in node.comparisons:
            right = self.eval(target.comparator, scope)
            if isinstance(left, Tensor) or isinstance(right, Tensor):
                if not isinstance(target.operator, (cst.Is, cst.IsNot, cst.In, cst.NotIn)):
                    if len(node.comparisons) > 1:
                        raise Unresolved("chained comparisons of tensors are not supported", node)
                    return catalogue.broadcast(left, right).like(catalogue.broadcast(left, right).shape, "bool")
                result = COMPARE[type(target.operator)](left, right)
            else:
                result = COMPARE[type(target.operator)](left, right)
            if not result:
                return False
            left = right
        return True

    def binop(self, op, left, right, node, inplace: bool = False):
        if isinstance(left, Tensor) or isinstance(right, Tensor):
            if op not in TENSOR_BINOPS:
                raise Unresolved(f"unsupported tensor operator in {code(node)[:60]}", node)
            name, symbol, path = TENSOR_BINOPS[op]
            spec = catalogue.FUNCTIONS[path]
            if isinstance(left, (int, float)) and op in (cst.Add, cst.Multiply):
                left, right = right, left
            elif not isinstance(left, Tensor):
                left = Tensor((), "float32")  # 1 - x, 2 / x: a scalar on the left
            return self.apply(spec, {}, spec.signature, [left, right], {}, node, None,
                              symbol + "=" if inplace else symbol, inplace=left if inplace else None)
        if op is cst.Power and isinstance(left, int) and isinstance(right, int) and (
                right > MAX_INT_BITS or abs(left) > 2 ** MAX_INT_BITS):
            raise Unresolved(f"{code(node)[:60]} is too large to be a size", node)
        if op is cst.LeftShift and isinstance(right, int) and right > MAX_INT_BITS:
            raise Unresolved(f"{code(node)[:60]} is too large to be a size", node)
        if op is cst.Multiply and any(isinstance(v, (list, tuple, str)) for v in (left, right)):
            seq, times = (left, right) if isinstance(left, (list, tuple, str)) else (right, left)
            if isinstance(times, int) and len(seq) * times > MAX_LOOP * 100:
                raise Unresolved(f"{code(node)[:60]} builds {len(seq) * times} items, more than gpumem "
                                 "evaluates", node)
        if op is cst.Modulo and isinstance(left, str):
            _check_format(left, node)
        result = BINOPS[op](left, right)
        if isinstance(result, int) and not isinstance(result, bool) and result.bit_length() > MAX_INT_BITS:
            raise Unresolved(f"{code(node)[:60]} = {result} is too large to be a size", node)
        return result

    def _subscript(self, node: cst.Subscript, scope: Scope):
        value = self.eval(node.value, scope)
        if isinstance(value, Tensor):
            return self._index_tensor(value, node, scope)
        if len(node.slice) != 1:
            raise Unresolved(f"unsupported subscript {code(node)}", node)
        element = node.slice[0].slice
        if isinstance(element, cst.Slice):
            key = slice(*(None if p is None else self.eval(p, scope)
                          for p in (element.lower, element.upper, element.step)))
        else:
            key = self.eval(element.value, scope)
        if isinstance(value, Module):
            items = list(value.children.values())
            if value.container == "ModuleDict":
                return value.children[key]
            if isinstance(key, slice):
                sub = Module(value.kind, value.node, container=value.container, segment=value.segment)
                sub.children = dict(list(value.children.items())[key])
                return sub
            return items[key]
        if isinstance(value, Q):
            return value  # type annotations like Optional[nn.Module]
        return value[key]

    def _index_tensor(self, x: Tensor, node: cst.Subscript, scope: Scope):
        keys = []
        for element in node.slice:
            s = element.slice
            if isinstance(s, cst.Slice):
                keys.append(slice(*(None if p is None else self.eval(p, scope) for p in (s.lower, s.upper, s.step))))
            else:
                keys.append(self.eval(s.value, scope))
        if len(keys) == 1 and isinstance(keys[0], tuple):
            keys = list(keys[0])
        consumed = sum(1 for k in keys if k is not None and k is not Ellipsis)
        if Ellipsis in keys:
            i = keys.index(Ellipsis)
            keys[i:i + 1] = [slice(None)] * (x.ndim - consumed)
        shape, dim, narrowed = [], 0, []
        for k in keys:
            if k is None:
                shape.append(1)
                continue
            if dim >= x.ndim:
                raise ShapeError(f"too many indices for a tensor of shape {catalogue.fmt(x.shape)}", node)
            if isinstance(k, slice):
                shape.append(len(range(*k.indices(x.shape[dim]))))
                if shape[-1] != x.shape[dim]:
                    narrowed.append(dim)
            elif isinstance(k, int) and not isinstance(k, bool):
                if not -x.shape[dim] <= k < x.shape[dim]:
                    raise ShapeError(f"index {k} is out of range for dimension {dim} of size {x.shape[dim]}", node)
                narrowed.append(dim)
            else:
                raise Unresolved(f"indexing a tensor with {type(k).__name__} depends on the data", node)
            dim += 1
        shape = tuple(shape) + x.shape[dim:]
        # A slice of the outermost dimension of contiguous memory stays contiguous; others are strided.
        outer = next((i for i in (x.layout or range(x.ndim)) if x.shape[i] != 1), 0)
        keeps = x.contiguous and all(d == outer for d in narrowed) or not narrowed
        out = x.view(shape, x.layout if not narrowed else (None if keeps else STRIDED))
        # Backward of indexing scatters into a zero gradient the size of the whole input.
        self.events.append(Event(None, "[]", node, [x], out, [], [], []))
        return out


_EVAL = {
    cst.Name: Interpreter._name,
    cst.Integer: lambda self, node, scope: int(node.value, 0),
    cst.Float: lambda self, node, scope: float(node.value),
    cst.SimpleString: lambda self, node, scope: ast.literal_eval(node.value),
    cst.ConcatenatedString: lambda self, node, scope: self.eval(node.left, scope) + self.eval(node.right, scope),
    cst.FormattedString: Interpreter._fstring,
    cst.Attribute: lambda self, node, scope: self.getattr(self.eval(node.value, scope), node.attr.value, node),
    cst.Call: Interpreter._eval_call,
    cst.BinaryOperation: lambda self, node, scope: self.binop(
        type(node.operator), self.eval(node.left, scope), self.eval(node.right, scope), node),
    cst.UnaryOperation: Interpreter._unary,
    cst.BooleanOperation: Interpreter._boolean,
    cst.Comparison: Interpreter._compare,
    cst.IfExp: Interpreter._ifexp,
    cst.Tuple: Interpreter._sequence,
    cst.List: Interpreter._sequence,
    cst.Set: Interpreter._sequence,
    cst.Dict: Interpreter._dict,
    cst.ListComp: Interpreter._listcomp,
    cst.GeneratorExp: Interpreter._listcomp,
    cst.SetComp: Interpreter._listcomp,
    cst.DictComp: Interpreter._dictcomp,
    cst.Subscript: Interpreter._subscript,
    cst.Lambda: lambda self, node, scope: Function(node, scope, "lambda", segment=self.segment),
    cst.Ellipsis: lambda self, node, scope: Ellipsis,
}


def _bad_sizes(shape: tuple) -> list:
    return [d for d in shape if isinstance(d, bool) or not isinstance(d, int) or d < 0]


def _check_format(text: str, node) -> None:
    """Refuse a format string that would build a string of 10,000+ characters ('%0999999999d' % 1)."""
    if WIDE_FORMAT.search(text):
        raise Unresolved(f"the format {text[:40]!r} asks for a width of 10,000 characters or more", node)


def _params(signature: str):
    return parse(signature)


def _short(node, path: str) -> str:
    """The op's type as written in the source, e.g. F.relu."""
    if isinstance(node, cst.Call):
        return dotted(node.func) or code(node.func)
    return path


def _clone(module):
    """copy.deepcopy of a module: fresh Module objects, shared structure copied."""
    if not isinstance(module, Module):
        return copy.copy(module)
    memo = {}

    def clone(m: Module) -> Module:
        if id(m) in memo:
            return memo[id(m)]
        new = copy.copy(m)
        memo[id(m)] = new
        new.children = {k: clone(c) for k, c in m.children.items()}
        new.attrs = {k: (clone(v) if isinstance(v, Module) else
                         Tensor(v.shape, v.dtype, True, is_param=True) if isinstance(v, Tensor) and v.is_param
                         else v) for k, v in m.attrs.items()}
        new.params, new.buffers = list(m.params), list(m.buffers)
        return new

    return clone(module)
