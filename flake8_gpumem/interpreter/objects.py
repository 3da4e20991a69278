"""What the interpreter computes with besides numbers and tensors: names reached through
imports, scopes, user functions and classes, module instances, and one Event per call."""
from __future__ import annotations

import builtins
import copy
from dataclasses import dataclass, field

import libcst as cst

from ..catalogue import Args, Op
from ..segments import Segment
from ..values import Tensor

MAX_STEPS = 500_000  # evaluated nodes per model: bounds work on any input (timm's largest need 400,000)
MAX_LOOP = 10_000  # iterations of one loop
AUTOGRAD_APPLY = "torch.autograd.Function.apply"  # `Fn.apply` of a user's autograd.Function, as a call
MAX_DEPTH = 60  # nested calls of functions, methods and modules
MAX_INT_BITS = 63  # sizes beyond int64 are not sizes
MISSING = object()  # a name bound nowhere in a scope chain, an attribute a class does not have
# the builtins the interpreter runs itself, on the values it computes
SAFE_BUILTINS = ("range", "len", "int", "float", "bool", "str", "list", "tuple", "dict", "set", "zip",
                 "enumerate", "min", "max", "sum", "abs", "round", "reversed", "sorted", "any", "all",
                 "isinstance", "divmod", "pow", "map", "filter", "object", "iter", "frozenset",
                 "slice")


@dataclass(frozen=True)
class Q:
    """A name reached through an import, e.g. torch.nn.Conv2d."""

    path: str
    module: str = field(default="", compare=False)  # `from <module> import ...`: where the names start

    def __str__(self) -> str:
        return f"<class '{self.path}'>"  # as Python prints a class (transformers tells torch types so)


class OrderedDict(dict):
    """`collections.OrderedDict(...)`: a dict that, unlike a plain one, holds attributes
    (transformers' auto mappings set one on the table of names they are given)."""


@dataclass(eq=False)
class File:
    """What a module-level scope knows of its file, for imports and for positions."""

    module: str | None  # its dotted name (None: stdin, or a file outside any package)
    package: str | None  # where its relative imports start
    foreign: bool = False  # another file's code (composites.py, an imported module): its nodes have
    # no place in the linted file, so diagnostics point at the linted code that reached them
    stars: tuple = ()  # (level, module) of its `from x import *` statements, in order
    yields: bool = False  # whether its text says `yield` anywhere (walking a body for one is slow)
    generators: dict = field(default_factory=dict)  # id(def node) -> whether that function yields


@dataclass(eq=False)
class Scope:
    vars: dict
    parent: Scope | None = None
    thunks: dict = field(default_factory=dict)  # module level: name -> node or Segment, evaluated on first use
    file: File | None = None  # module level only

    def root(self) -> Scope:
        s = self
        while s.parent is not None:
            s = s.parent
        return s

    def foreign(self) -> bool:
        file = self.root().file
        return file is not None and file.foreign

    def __repr__(self) -> str:  # the dataclass one would print every value and syntax tree in it
        return "<scope>"


@dataclass(eq=False)
class Function:
    node: cst.FunctionDef | cst.Lambda
    scope: Scope
    name: str
    owner: Class | None = None  # the class a method is defined in, for super()
    segment: Segment | None = None  # the user-file statement it is part of (None: PyTorch's code)
    wrapped: object = None  # functools.wraps: the function it stands for (its name, its signature)

    def __repr__(self) -> str:  # as Python's, and cheap: str() of it runs inside loops of model code
        return f"<function {self.name}>"

    def wrapping(self, wrapped) -> Function:
        """This function as functools.wraps(wrapped) returns it: under the wrapped one's name."""
        return Function(self.node, self.scope, getattr(wrapped, "name", self.name), self.owner, self.segment, wrapped)

    @property
    def unwrapped(self) -> Function:
        """The function at the end of its functools.wraps chain (inspect.unwrap)."""
        f = self
        while isinstance(f.wrapped, Function):
            f = f.wrapped
        return f

    @property
    def is_generator(self) -> bool:
        """A `def` whose own body (not a nested def) yields."""
        file = self.scope.root().file
        if not file.yields:
            return False
        known = file.generators  # the file's nodes live as long as it: ids stay theirs
        if id(self.node) not in known:
            known[id(self.node)] = isinstance(self.node, cst.FunctionDef) and _yields(self.node.body)
        return known[id(self.node)]

    def decorated(self, name: str) -> bool:
        """Whether a decorator named `name` (as its last dotted part: classmethod, dataclass) is on it."""
        return any(_decorator_name(d) == name for d in getattr(self.node, "decorators", ()))


@dataclass(eq=False)
class Class:
    node: cst.ClassDef
    scope: Scope
    name: str
    segment: Segment | None = None
    members: dict = field(default_factory=dict)  # a top-level class's methods, parsed when first called
    enum_members: dict = field(default_factory=dict)  # a plain Enum's members by name, each made once
    previous: object = None  # the statement that bound its name before, which its bases may name (a subclass
    # under its base's name: diffusers' deprecated `class Transformer2DModelOutput(Transformer2DModelOutput)`)
    attrs: dict = field(default_factory=dict)  # set on the class after its body ran (`cls.forward = ...`)
    nested: dict = field(default_factory=dict)  # classes defined in its body, by name, each made once

    def __repr__(self) -> str:
        return f"<class '{self.name}'>"

    def decorated(self, name: str) -> bool:
        return any(_decorator_name(d) == name for d in self.node.decorators)

    def body_value(self, name: str):
        """The expression a class-level `name = ...` or `name: T = ...` assigns, or None."""
        for stmt in self.node.body.body:
            if isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    if isinstance(small, cst.Assign) and any(
                            isinstance(t.target, cst.Name) and t.target.value == name for t in small.targets):
                        return small.value
                    if isinstance(small, cst.AnnAssign) and isinstance(small.target, cst.Name) and (
                            small.target.value == name and small.value is not None):
                        return small.value
        return None

    def body_class(self, name: str):
        """A class its body defines (rtdl's `Transformer.FFN`), or None; its methods see the scope
        this class sees, as Python's class bodies are no enclosing scope."""
        if name not in self.nested:
            stmt = next((s for s in self.node.body.body if isinstance(s, cst.ClassDef) and s.name.value == name), None)
            self.nested[name] = None if stmt is None else Class(stmt, self.scope, name, self.segment)
        return self.nested[name]

    def member_names(self) -> list:
        """The names a class-level `name = value` binds, in order: an enum's members."""
        return [t.target.value for stmt in self.node.body.body if isinstance(stmt, cst.SimpleStatementLine)
                for small in stmt.body if isinstance(small, cst.Assign)
                for t in small.targets if isinstance(t.target, cst.Name)]

    def fields(self) -> list:
        """A dataclass's or NamedTuple's fields in order: (name, default expression or None)."""
        out = []
        for stmt in self.node.body.body:
            if isinstance(stmt, cst.SimpleStatementLine):
                for small in stmt.body:
                    if isinstance(small, cst.AnnAssign) and isinstance(small.target, cst.Name) and not (
                            _class_var(small.annotation.annotation)):
                        out.append((small.target.value, small.value))
        return out

    def defines(self, name: str) -> bool:
        """Whether its own body defines the method `name`."""
        return name in self.members or isinstance(self.attrs.get(name), Function) or any(
            isinstance(stmt, cst.FunctionDef) and stmt.name.value == name for stmt in self.node.body.body)

    def method(self, interp, name: str):
        """Look a method up along the in-file base classes (`interp.bases` resolves them)."""
        if isinstance(self.attrs.get(name), Function):  # a function a decorator set on the class
            return self.attrs[name]
        member = self.members.get(name)
        if member is not None:
            node = member.module.body[0].body.body[0]  # the def inside its `class _:` line
            file = self.scope.root().file
            if file is not None and "yield" not in member.text:  # no walk of its body for one
                file.generators.setdefault(id(node), False)
            # another file's method, like the class, has no statement of the linted file
            return Function(node, self.scope, f"{self.name}.{name}", self, member if self.segment else None)
        for stmt in reversed(self.node.body.body):  # the last definition wins (@overload stubs come first)
            if isinstance(stmt, cst.FunctionDef) and _member_name(stmt) == name:
                return Function(stmt, self.scope, f"{self.name}.{name}", self, self.segment)
        for base in interp.bases(self):
            if isinstance(base, Class):
                found = base.method(interp, name)
                if found is not None:
                    return found
        return None


def _member_name(stmt: cst.FunctionDef) -> str:
    """As segments.member_key: `name.setter` for a property's setter."""
    for d in stmt.decorators:
        if isinstance(d.decorator, cst.Attribute) and d.decorator.attr.value == "setter":
            return f"{d.decorator.value.value}.setter" if isinstance(d.decorator.value, cst.Name) else stmt.name.value
    return stmt.name.value


@dataclass(eq=False)
class Instance:
    """An object of a plain class (a config dataclass, a NamedTuple, a helper object)."""

    cls: Class
    attrs: dict = field(default_factory=dict)
    items: dict = field(default_factory=dict)  # a subclass of dict: what `super().__setitem__` stored

    def __repr__(self) -> str:
        return f"<{self.cls.name} object>"


MAPPING_MIXINS = ("keys", "items", "values", "get", "__contains__")  # what collections.abc.Mapping gives


@dataclass(frozen=True)
class Pattern:
    """re.compile(pattern, flags): its methods are re's functions given the pattern first."""

    pattern: str
    flags: int = 0

    def method(self, name: str):
        return Partial(Q(f"re.{name}"), [self.pattern], {"flags": self.flags} if self.flags else {})


@dataclass(eq=False)
class Partial:
    """functools.partial(func, *args, **kwargs)."""

    func: object
    args: list
    kwargs: dict

    def __repr__(self) -> str:
        return f"functools.partial({self.func!r}, ...)"


@dataclass(frozen=True)
class Loaded:
    """What torch.load or torch.hub reads at run time (a state dict, a checkpoint): values gpumem
    never reads and no shape needs. Handing it to `load_state_dict` changes no size (PyTorch copies
    values into the parameters the constructor built, or raises); any other use stops the analysis."""

    call: str


@dataclass(frozen=True)
class Distributed:
    """FSDP2's settings as a file builds them, read by the set-up, never run: `MixedPrecisionPolicy(...)`,
    an offload policy, `init_device_mesh(...)`; `options` their keywords as written (a mesh: its size,
    None where it is not written)."""

    kind: str  # the class or function's name
    options: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Field:
    """dataclasses.field(default=..., default_factory=...)."""

    default: object = None
    factory: object = None


def _yields(node) -> bool:
    if isinstance(node, cst.Yield):
        return True
    if isinstance(node, (cst.FunctionDef, cst.Lambda, cst.ClassDef)):
        return False
    return any(_yields(child) for child in node.children)


def _decorator_name(decorator) -> str:
    node = decorator.decorator
    node = node.func if isinstance(node, cst.Call) else node
    return dotted(node).rpartition(".")[2]


@dataclass(eq=False)
class Bound:
    """A method bound to its object: a user method, or a catalogue method of a tensor/list."""

    obj: object
    func: object  # Function, or the method name for tensors and containers

    def __repr__(self) -> str:
        return f"<bound method {getattr(self.func, 'name', self.func)}>"


@dataclass(eq=False)
class Builtin:
    fn: object
    name: str


# each builtin gpumem runs, one object per name: `type(obj) is str` holds as in Python
BUILTINS = {name: Builtin(getattr(builtins, name), name) for name in SAFE_BUILTINS}


@dataclass(eq=False)
class Parameter:
    tensor: Tensor


@dataclass(eq=False)
class Buffer:
    """nn.Buffer(tensor): assigned to a module, registered as a buffer."""

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
    weights: dict = field(default_factory=dict)  # index in params -> its tensor, once code touched it
    buffers: list = field(default_factory=list)  # its own buffer tensors
    lazy: tuple | None = None  # (layer, argument, input dim) of a Lazy* layer: known at its first call
    segment: Segment | None = None  # the statement whose code constructed it
    cast: tuple | None = None  # (dtype, site, module cast) of the last `.half()`, `.to(dtype)` of it or a parent

    def __repr__(self) -> str:
        return f"{self.kind}()"

    def trains(self, k: int) -> bool:
        """Whether parameter k requires a gradient (`requires_grad` as the code left it)."""
        t = self.weights.get(k)
        return t is None or t.requires_grad

    def param_key(self, k: int):
        """The identity of parameter k: its tensor's, where code has touched it, else its place."""
        t = self.weights.get(k)
        return ("t", t.id) if t is not None else (id(self), k)


def param_keys(m: Module) -> list:
    """(identity, shape) of a module's parameters: a tied weight (`wte.weight = lm_head.weight`)
    is the other layer's tensor, so it is counted once, as model.parameters() yields it once."""
    return [(m.param_key(k), shape) for k, shape in enumerate(m.params)]


def walk_modules(root: Module) -> list:
    """(qualified name, module) of `root` and everything under it, as nn.Module.named_modules()
    gives them (a module reached twice is listed once, under its first name)."""
    out, seen = [], set()

    def visit(m: Module, prefix: str) -> None:
        if id(m) not in seen:
            seen.add(id(m))
            out.append((prefix, m))
            for key, child in m.children.items():
                if child is not None:
                    visit(child, f"{prefix}.{key}" if prefix else key)

    visit(root, "")
    return out


@dataclass(frozen=True)
class Region:
    """A call torch.utils.checkpoint runs: backward runs its forward again. The reentrant variant
    recomputes its outputs too (the non-reentrant one stops once what backward needs exists)."""

    id: int
    reentrant: bool = False
    early_stop: bool = True  # checkpoint(early_stop=): the recomputation stops once what backward needs exists


@dataclass(frozen=True)
class Selective:
    """create_selective_checkpoint_contexts(ops) as checkpoint's context_fn returns it: the ATen ops
    (names such as "mm", catalogue.SAC_OPS) whose outputs forward caches for the recomputation, or
    the policy function asked about each op in forward order, as PyTorch asks it."""

    saves: frozenset = frozenset()
    policy: object = None


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
    weight_grad_copy: bool = False  # its layer's weight gradient is copied to the parameter's memory order
    own_param_grads: bool = True  # False under AMP: the gradients reach the weights through their casts
    until_forward_end: bool = False  # its output lives until forward ends (autocast's weight cache)
    owner: Module | None = None  # the module whose forward made this call
    folded: bool = False  # made inside a leaf custom module: reported as part of that module's row
    checkpoint: Region | None = None  # the checkpointed call (torch.utils.checkpoint) it runs in
    cached: tuple = ()  # what selective checkpointing keeps of it from forward, for the recomputation to reuse


LAZY_PENDING = object()  # a lazy layer's size until its first input arrives


class ReturnValue(Exception):
    """A `return` leaving the function body the interpreter runs."""

    def __init__(self, value):
        self.value = value


class BreakLoop(Exception):
    """A `break` leaving the loop the interpreter unrolls."""


class ContinueLoop(Exception):
    """A `continue`: the unrolled loop goes on with its next item."""


CONTAINERS = ("Sequential", "ModuleList", "ModuleDict")


MODULE_BASES = {"torch.nn.Module", "torch.nn.modules.module.Module", "pytorch_lightning.LightningModule",
                "lightning.LightningModule", "lightning.pytorch.LightningModule",
                "pytorch_lightning.core.LightningModule", "lightning.pytorch.core.LightningModule"}

_code = cst.Module([])


def _class_var(annotation: cst.BaseExpression) -> bool:
    """`ClassVar[int]`, `typing.ClassVar`, `"ClassVar[int]"`: read from the nodes, since generating
    the annotation's code for every field of every dataclass built costs more than building it."""
    if isinstance(annotation, cst.SimpleString):
        return "ClassVar" in annotation.value
    head = annotation.value if isinstance(annotation, cst.Subscript) else annotation
    return dotted(head).rpartition(".")[2] == "ClassVar"


def code(node: cst.CSTNode) -> str:
    return _code.code_for_node(node)


def dotted(node) -> str:
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        return f"{dotted(node.value)}.{node.attr.value}"
    return ""


# torch's wrappers of a model, by what they are: the forward they run is the model's own (eagerly)
WRAPPERS = {"torch.compile": "torch.compile", "torch.nn.DataParallel": "DataParallel",
            "torch.nn.parallel.DataParallel": "DataParallel",
            "torch.nn.parallel.data_parallel.DataParallel": "DataParallel",
            "torch.nn.parallel.DistributedDataParallel": "DDP",
            "torch.nn.parallel.distributed.DistributedDataParallel": "DDP"}


def canonical(path: str) -> str:
    """torch.nn.modules.conv.Conv2d -> torch.nn.Conv2d; F aliases kept as written."""
    parts = path.split(".")
    if parts[:3] == ["torch", "nn", "modules"] and len(parts) > 3:
        return "torch.nn." + parts[-1]
    return path


def clone(module):
    """copy.deepcopy of a module: fresh Module objects, shared structure copied."""
    if not isinstance(module, Module):
        return copy.copy(module)
    memo, tensors = {}, {}

    def fresh(t: Tensor) -> Tensor:  # a parameter copied once, so weights tied inside stay tied
        if id(t) not in tensors:
            tensors[id(t)] = Tensor(t.shape, t.dtype, t.requires_grad, is_param=True)
        return tensors[id(t)]

    def clone(m: Module) -> Module:
        if id(m) in memo:
            return memo[id(m)]
        new = copy.copy(m)
        memo[id(m)] = new
        new.children = {k: None if c is None else clone(c) for k, c in m.children.items()}
        new.attrs = {k: (clone(v) if isinstance(v, Module) else
                         fresh(v) if isinstance(v, Tensor) and v.is_param else v) for k, v in m.attrs.items()}
        new.weights = {k: fresh(t) for k, t in m.weights.items()}
        new.params, new.buffers = list(m.params), list(m.buffers)
        return new

    return clone(module)
