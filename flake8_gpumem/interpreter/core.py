"""The interpreter: one model's construction, then one forward pass, from the parts in this package."""
from __future__ import annotations

from ..segments import Segment
from ..values import Unresolved
from . import imports
from .bindings import composite_scope
from .calls import Calls
from .construction import Construction
from .expressions import Expressions
from .imports import Resolver
from .objects import MAX_STEPS, Event, Module, Scope
from .pretrained import Pretrained
from .registries import Registries
from .scopes import Names
from .statements import Statements
from .tensors import TensorOps


class Interpreter(Names, Statements, Expressions, Calls, Construction, TensorOps, Registries, Pretrained):
    """Evaluates one model: construction, then one forward pass."""

    def __init__(self, scope: Scope, model_dtype: str = "float32", device: str = "cuda",
                 autocast: str | None = None, resolver: Resolver | None = None, checkpoint: tuple = (),
                 hf_config: str | None = None, checkpoint_every: int = 1):
        self.scope = scope
        self.resolver = resolver or imports.resolver(imports.roots_for(""))  # where imported source is found
        self.model_dtype = model_dtype
        self.device = device  # kernels differ: what they keep for backward and their temporaries
        self.autocast = autocast  # AMP: the half dtype autocast computes in, or None
        self.grad_enabled = True  # False inside torch.no_grad() and its kin: autograd records nothing
        self.inference = False  # inside torch.inference_mode(): kernels skip what only backward reads
        self.casts: dict = {}  # (id(tensor), dtype) -> its autocast copy, for weights
        self.held: dict = {}  # storage id -> index of the last event while a variable still held it
        self.yielded: list[list] = []  # the items of the generators running now, innermost last
        self.steps = 0
        self.depth = 0
        self.events: list[Event] = []
        self.stack: list[list] = []  # module calls in flight: [Module, had_child_call]
        self.anchor: tuple | None = None  # (Segment, node) of the innermost user code, for positions
        self.segment: Segment | None = None  # the statement whose code runs now
        self.in_foreign = False  # running another file's code, whose nodes have no place in the linted file
        self.hf_config = hf_config  # transformers' from_pretrained: the config.json the settings give
        self.checkpoint_classes = frozenset(checkpoint)  # what-if: every call of these runs checkpointed
        self.checkpoint_every, self.checkpoint_calls = checkpoint_every, 0  # ... or every n-th, the first first
        self.region: int | None = None  # the checkpointed call running now
        self.regions = 0
        self.selective = None  # the running region's selective checkpointing policy (objects.Selective)
        self.recomputed: frozenset = frozenset()  # ids of with-blocks read as checkpointed (custom_function)
        self.decorated: dict = {}  # ids of a method's def node and scope -> what its decorators make of it

    @property
    def torch_scope(self) -> Scope:
        """The layers PyTorch builds from others (composites.py), parsed the first time one is used."""
        return composite_scope()

    def where(self, node, module: Module | None = None) -> tuple | None:
        """(Segment, node) to report at: `node` (where `module` was constructed), or, inside
        PyTorch's code, the user code that reached it."""
        if node is None or self.in_foreign:
            return self.anchor
        return module.segment if module is not None else self.segment, node

    def _tick(self, node) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise Unresolved(f"analysis stopped after {MAX_STEPS} evaluation steps (model too large or a loop "
                             "too long to unroll)", node)
