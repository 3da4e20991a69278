"""nn.Module construction: catalogue layers, containers, user classes, registration of
children and parameters, and calling a module."""
from __future__ import annotations

import types
from dataclasses import dataclass

import libcst as cst

from .. import catalogue, composites
from ..signature import REQUIRED, Param, bind, parse
from ..values import (FLOAT_DTYPES, MODULE_CASTS, TORCH_DTYPES, AnalysisError, Raised, ShapeError, Tensor, Unresolved,
                      bad_sizes, tensors_in)
from .objects import (BUILTINS, CONTAINERS, LAZY_PENDING, MISSING, MODULE_BASES, Bound, Buffer, Class, Event, Field,
                      Function, Instance, Module, OrderedDict, Parameter, Partial, Q, Region, Scope, Selective,
                      canonical, walk_modules)
from ..catalogue import Args, Op


@dataclass(frozen=True)
class _Default:
    """A field's default, evaluated only when the caller does not give it."""

    node: object
    scope: object


# nn.Module's own methods that _module_method evaluates
MODULE_METHODS = ("append", "add_module", "register_module", "extend", "insert", "register_buffer",
                  "register_parameter", "update", "items", "keys", "values", "modules", "named_modules", "children",
                  "named_children", "parameters", "named_parameters", "apply", "to", "cuda", "cpu", "train", "eval",
                  "float", "half", "bfloat16", "double", "requires_grad_", "zero_grad", "reset_parameters",
                  "_reset_parameters", "init_weights", "compile", "load_state_dict", "get_submodule",
                  "get_parameter", "get_buffer", "buffers", "named_buffers", "__setattr__", "__getattr__")
# Library classes whose subclasses' forward a class-creation hook wraps (`__init_subclass__`, which
# gpumem does not run): transformers' decoder layers. gpumem runs what that wrapper does
# (`_checkpointing_layer`) once the library's `gradient_checkpointing_enable()`, run as written, has
# set `gradient_checkpointing` and `_gradient_checkpointing_func` on them.
CHECKPOINTING_LAYERS = {("transformers.modeling_layers", "GradientCheckpointingLayer")}
# the cache arguments that wrapper drops under checkpointing (a layer that only reads its cache keeps them)
CACHE_ARGUMENTS = ("past_key_values", "layer_past")
NOOP_CONTEXT = "torch.utils.checkpoint.noop_context_fn"  # checkpoint's default context_fn
RUNNING_STATS = ("running_mean", "running_var", "num_batches_tracked")
ENUMS = frozenset(f"enum.{name}" for name in ("Enum", "IntEnum", "StrEnum", "Flag", "IntFlag"))
PER_DIMENSION = ("kernel_size", "stride", "padding", "dilation", "output_padding")
# torch layers that store those as n-tuples (_single, _pair, _triple): the convolutions and AvgPool1d;
# MaxPoolNd, AvgPool2d and AvgPool3d keep them as given, a stride of None as the kernel size
TUPLED = {**{f"{conv}{n}d": n for conv in ("Conv", "ConvTranspose") for n in (1, 2, 3)}, "AvgPool1d": 1}


class Construction:
    """Builds the module tree in __init__ and dispatches module calls in forward."""

    def setattr(self, obj, name: str, value, node, hooks: bool = True) -> None:
        """`obj.name = value`: through the class's `__setattr__` where `hooks` (False: object.__setattr__,
        as `super().__setattr__` reaches it), then a property's setter, as Python runs them."""
        cls = obj.cls if isinstance(obj, (Instance, Module)) else None
        if isinstance(obj, Instance) and isinstance(cls, Class) and hooks:
            hook = cls.method(self, "__setattr__")
            if hook is not None:  # transformers' configs map names through `attribute_map` there
                self.call_function(hook, [obj, name, value], {}, node)
                return
        setter = cls.method(self, f"{name}.setter") if isinstance(cls, Class) else None
        if setter is not None:  # a property's setter runs
            self.call_function(setter, [obj, value], {}, node)
            return
        if isinstance(obj, Instance):
            obj.attrs[name] = value
            return
        if isinstance(obj, OrderedDict):
            vars(obj)[name] = value
            return
        if isinstance(obj, Class):  # a class decorator's `cls.forward = forward`, a cached flag
            obj.attrs[name] = value
            return
        if isinstance(obj, Tensor) and name == "requires_grad":  # for p in model.parameters(): p.requires_grad = False
            self.set_requires_grad(obj, value, node)
            return
        if isinstance(obj, Tensor) and name == "data" and isinstance(value, Tensor) and value.shape == obj.shape:
            return  # new values in the same shape (a momentum encoder's update): its memory is unchanged
        if not isinstance(obj, Module):
            raise Unresolved(f"cannot set attribute '{name}' on {type(obj).__name__}", node)
        self.register(obj, name, value, node)

    def set_requires_grad(self, t: Tensor, flag, node) -> None:
        """`requires_grad` as the code sets it, on a leaf: a parameter, or a tensor no op made."""
        if not isinstance(flag, bool):
            raise Unresolved(f"requires_grad set to {flag!r}: a bool is needed to know what trains", node)
        if t.requires_grad and not t.is_param:
            raise Unresolved("only a leaf tensor's requires_grad can be changed (PyTorch raises here); "
                             "detach() it instead", node)
        t.requires_grad = flag

    def register(self, obj: Module, name: str, value, node) -> None:
        """Attribute assignment with nn.Module's rules: modules and parameters are registered."""
        obj.children.pop(name, None) if not isinstance(value, Module) else None
        if isinstance(value, Module):
            obj.attrs.pop(name, None)
            obj.children[name] = value
        elif isinstance(value, Parameter):
            k = self._own_parameter(obj, name)  # a parameter set again keeps its place (timm's DeiT pos_embed)
            if k is None:
                k = len(obj.params)
                obj.params.append(value.tensor.shape)
            obj.params[k] = value.tensor.shape
            obj.weights[k] = value.tensor
            obj.attrs[name] = value.tensor
        elif value is None and self._own_parameter(obj, name) is not None:  # nn.Module drops the parameter
            k = self._own_parameter(obj, name)
            del obj.params[k]
            obj.weights = {i - (i > k): t for i, t in obj.weights.items() if i != k}
            obj.attrs[name] = None
        elif isinstance(value, Buffer):
            obj.buffers.append(value.tensor)
            obj.attrs[name] = value.tensor
        elif obj.op is not None and name in ("weight", "bias") and isinstance(value, Tensor) and value.is_param:
            self._tie(obj, name, value, node)
        else:
            obj.attrs[name] = value

    @staticmethod
    def _own_parameter(obj: Module, name: str) -> int | None:
        """The index of the parameter attribute `name` of a module is: a layer's bias (timm's
        `self.bias = None` in a LayerNorm subclass drops it), a class's nn.Parameter; else None."""
        if obj.op is not None:
            return 1 if name == "bias" and len(obj.params) == 2 else None
        held = obj.attrs.get(name)
        if not isinstance(held, Tensor) or not held.is_param:
            return None
        return next((k for k, t in obj.weights.items() if t is held), None)

    def _tie(self, obj: Module, name: str, value: Tensor, node) -> None:
        """`wte.weight = lm_head.weight`: the layer's parameter becomes another's (one tensor, one gradient)."""
        idx = 0 if name == "weight" else 1
        if idx >= len(obj.params) or tuple(obj.params[idx]) != tuple(value.shape):
            have = catalogue.fmt(obj.params[idx]) if idx < len(obj.params) else "no such parameter"
            raise ShapeError(f"{obj.kind}.{name} ({have}) is set to a parameter of shape {catalogue.fmt(value.shape)}",
                             node)
        obj.weights[idx] = value

    def weight_tensor(self, module: Module, k: int) -> Tensor:
        """Parameter k of a layer as a tensor: one per parameter, so its gradient is counted once."""
        if k not in module.weights:
            module.weights[k] = Tensor(tuple(module.params[k]), self.model_dtype, True, is_param=True)
        return module.weights[k]

    def construct(self, kind: str, op: Op | None, args: list, kwargs: dict, node) -> Module:
        """A catalogue layer or container from its constructor call."""
        if kind in CONTAINERS:
            return self._container(kind, args, kwargs, node)
        lazy = catalogue.LAZY.get(kind)
        if lazy is not None:  # LazyLinear(10): Linear(<from the first input>, 10)
            kind, op = lazy[0], catalogue.MODULES[lazy[0]]
            args = [LAZY_PENDING] + list(args)
        bound = Args(bind(parse(op.signature), args, kwargs, f"nn.{kind}", node))
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
            bad = bad_sizes(shape)
            if bad:  # PyTorch refuses to build such a layer
                named = ", ".join(f"{k}={v!r}" for k, v in module.args.items() if any(v is b for b in bad))
                what = f"nn.{module.kind}({named})" if named else (
                    f"nn.{module.kind} would hold a parameter of shape {catalogue.fmt(shape)}")
                raise ShapeError(f"{what}: a size must be a whole number, 0 or more", node)

    def _container(self, kind: str, args: list, kwargs: dict, node) -> Module:
        return self.fill_container(Module(kind, node, container=kind, segment=self.segment), args, kwargs, node)

    def fill_container(self, module: Module, args: list, kwargs: dict, node) -> Module:
        """nn.Sequential / ModuleList / ModuleDict's __init__: its children from the arguments."""
        kind = module.container
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
        """A child under `name`; None holds the place, as nn.Module.add_module(name, None) does (x-transformers'
        absent norms), and is in no walk over the modules."""
        if child is not None and not isinstance(child, Module):
            raise Unresolved(f"nn.{module.kind} holds {type(child).__name__}, not a module", node)
        module.children[name] = child

    def instantiate(self, cls: Class, args: list, kwargs: dict, node) -> Module | Instance:
        if not self.is_module_class(cls):
            return self._plain_instance(cls, args, kwargs, node)
        base = self.torch_base(cls)
        module = Module(cls.name, node, cls=cls, segment=self.segment, container=base if base in CONTAINERS else None)
        init = cls.method(self, "__init__")
        if init is not None:
            self.call_method(init, [module] + list(args), kwargs, node)
        elif base is not None:
            self.init_torch_base(module, args, kwargs, node)
        return module

    def _plain_instance(self, cls: Class, args: list, kwargs: dict, node) -> Instance:
        """A config object: a dataclass or NamedTuple gets its fields (defaults and default factories
        evaluated in the class body's scope), then __post_init__; any other class runs __init__."""
        if self._enum(cls):
            return self._enum_member(cls, args, kwargs, node)
        obj = Instance(cls)
        # the nearest class that defines __init__, or is a dataclass (which writes its own)
        maker = next((c for c in self.mro(cls) if c.defines("__init__") or self.dataclass_like(c)), None)
        init = maker.method(self, "__init__") if maker is not None and maker.defines("__init__") else None
        if init is None and maker is not None:
            self.init_fields(obj, cls, args, kwargs, node)
        elif init is None and self.dict_based(cls):
            obj.items = dict(*args, **kwargs)
        elif init is not None:
            self.call_method(init, [obj] + list(args), kwargs, node)
        return obj

    def call_method(self, method: Function, args: list, kwargs: dict, node):
        """A method called on its object (`args[0]`), through what its decorators make of it: a
        forward's (transformers' @can_return_tuple), an __init__'s (diffusers' @register_to_config,
        which records the arguments in the object's config before running it)."""
        if not method.node.decorators:
            return self.call_function(method, args, kwargs, node)
        key = id(method.node), id(method.scope)  # one def a class decorator sets on several classes
        if key not in self.decorated:
            self.decorated[key] = self.decorate(method)
        wrapped = self.decorated[key]
        if wrapped is method:
            return self.call_function(method, args, kwargs, node)
        return self.call(wrapped, args, kwargs, node)

    def _enum(self, cls: Class) -> bool:
        return any(isinstance(b, Q) and canonical(b.path) in ENUMS for c in self.mro(cls) for b in self.bases(c))

    def _enum_member(self, cls: Class, args: list, kwargs: dict, node):
        """`Format("NHWC")`: the member of that value, as `Format.NHWC` evaluates (class_attr)."""
        value = args[0] if len(args) == 1 and not kwargs else kwargs.get("value", MISSING)
        for c in self.mro(cls):
            for name in c.member_names():
                member, found = self.eval(c.body_value(name), c.scope), self.enum_member(c, name)
                if member == value or found is value:
                    return member if found is MISSING else found
        raise Unresolved(f"{value!r} is not a {cls.name}", node)

    def enum_member(self, cls: Class, name: str):
        """`ResNet50_Weights.IMAGENET1K_V1`: a plain Enum's member, an instance of its class with its
        `name` and `value`, made once (`is` holds between two uses); MISSING where `name` is no
        member of `cls`'s own body, or `cls` an enum with a data type (IntEnum, StrEnum, `class
        Format(str, Enum)`, the flags), whose members are instances of that type and so known by
        their values (a str enum's member equals its string, as in Python)."""
        if name.startswith("_") or name not in cls.member_names() or not self._enum(cls) or any(
                not isinstance(b, Class) and not (isinstance(b, Q) and canonical(b.path) == "enum.Enum")
                for c in self.mro(cls) for b in self.bases(c)):
            return MISSING
        node = cls.body_value(name)
        if type(node) is cst.Name and node.value != name and node.value in cls.member_names():
            return self.enum_member(cls, node.value)  # DEFAULT = IMAGENET1K_V2: another name of that member
        if name not in cls.enum_members:
            value = self.eval(node, cls.scope)
            cls.enum_members[name] = Instance(cls, {"name": name, "value": value, "_name_": name, "_value_": value})
        return cls.enum_members[name]

    def dict_based(self, cls: Class) -> bool:
        """A subclass of dict or OrderedDict (transformers' ACT2FN): its items live in `Instance.items`."""
        return any(b is BUILTINS["dict"] or isinstance(b, Q) and canonical(b.path) == "collections.OrderedDict"
                   for c in self.mro(cls) for b in self.bases(c))

    def mapping(self, value):
        """What `**value` unpacks: a dict, or a dict subclass's items (diffusers' FrozenDict config);
        None for anything else."""
        if isinstance(value, dict):
            return value
        return value.items if isinstance(value, Instance) and self.dict_based(value.cls) else None

    def dataclass_like(self, cls: Class) -> bool:
        """A dataclass, a NamedTuple, or a class below a `@dataclass_transform` base (PEP 681: what
        type checkers take a dataclass for; transformers' configs are made dataclasses that way)."""
        return cls.decorated("dataclass") or any(
            isinstance(b, Q) and b.path.rpartition(".")[2] == "NamedTuple" for b in self.bases(cls)) or any(
            c.decorated("dataclass_transform") for c in self.mro(cls))

    def init_fields(self, obj: Instance, cls: Class, args: list, kwargs: dict, node) -> None:
        """The __init__ a dataclass or NamedTuple is given: its fields (and its bases'), then __post_init__."""
        params = {name: Param(name, REQUIRED if default is None else _Default(default, c.scope))
                  for c in reversed(self.mro(cls)) for name, default in c.fields()}  # a subclass's default wins
        post = cls.method(self, "__post_init__")
        extra = {}
        if post is not None and post.node.params.star_kwarg is not None:  # huggingface_hub's accept_kwargs
            extra = {k: v for k, v in kwargs.items() if k not in params}
            kwargs = {k: v for k, v in kwargs.items() if k in params}
        for name, value in bind(list(params.values()), args, kwargs, cls.name, node).items():
            self.setattr(obj, name, self._field_value(value), node)
        if post is not None:
            self.call_function(post, [obj], extra, node)

    def _field_value(self, value):
        """A dataclass default as the class would give it: `field(default_factory=f)` calls f."""
        if isinstance(value, _Default):
            value = self.eval(value.node, value.scope)
        if isinstance(value, Field):
            return self.call(value.factory, [], {}, None) if value.factory is not None else value.default
        return value

    def mro(self, cls: Class) -> list:
        """The class and its base classes gpumem reads, nearest first (single inheritance order)."""
        out, todo = [], [cls]
        while todo:
            c = todo.pop(0)
            if c not in out:
                out.append(c)
                todo += [b for b in self.bases(c) if isinstance(b, Class)]
        return out

    def bases(self, cls: Class) -> list:
        """Its bases, evaluated where the class statement runs (before it binds its own name); a layer
        PyTorch builds from others (`class Model(nn.Transformer)`) as the class composites.py writes,
        so that its __init__ and forward run as the base's."""
        scope = cls.scope if cls.previous is None else Scope({}, cls.scope, {cls.name: cls.previous})
        out = []
        for arg in cls.node.bases:
            try:
                base = self.eval(arg.value, scope)
            except AnalysisError:
                base = None
            name = canonical(base.path).removeprefix("torch.nn.") if isinstance(base, Q) else None
            out.append(self.lookup(name, self.torch_scope, arg) if name in composites.LAYERS else base)
        return out

    def is_module_class(self, cls: Class, seen=None) -> bool:
        seen = seen or set()
        if id(cls) in seen:
            return False
        seen.add(id(cls))
        for base in self.bases(cls):
            if isinstance(base, Q) and (canonical(base.path) in MODULE_BASES or _torch_base(base)):
                return True
            if isinstance(base, Class) and self.is_module_class(base, seen):
                return True
        return False

    def torch_base(self, cls: Class) -> str | None:
        """The container or catalogue layer a class derives from: `class MLP(nn.Sequential)`,
        `class LayerNorm2d(nn.LayerNorm)`; None for a plain nn.Module."""
        for c in self.mro(cls):
            for base in self.bases(c):
                if isinstance(base, Q) and _torch_base(base):
                    return _torch_base(base)
        return None

    def init_torch_base(self, module: Module, args: list, kwargs: dict, node) -> None:
        """`super().__init__(...)` reaching the torch class a user class derives from."""
        kind = self.torch_base(module.cls)
        if kind in CONTAINERS:
            self.fill_container(module, args, kwargs, node)
        elif kind is not None:  # the layer's parameters, arguments and shape rule, under the user's class
            layer = self.construct(kind, catalogue.MODULES[kind], args, kwargs, node)
            module.op, module.args, module.params, module.buffers = layer.op, layer.args, layer.params, layer.buffers

    def call_module(self, module: Module, args: list, kwargs: dict, node):
        if self.region is None and (module.kind in self.checkpoint_classes or (
                module.cls is not None and module.cls.name in self.checkpoint_classes)):
            self.checkpoint_calls += 1
            if (self.checkpoint_calls - 1) % self.checkpoint_every == 0:
                return self.checkpointed(lambda: self._run_module(module, args, kwargs, node))
        if self.region is None and module.attrs.get("gradient_checkpointing") is True and module.cls is not None and (
                any((c.scope.root().file.module, c.name) in CHECKPOINTING_LAYERS for c in self.mro(module.cls))):
            return self._checkpointing_layer(module, args, kwargs, node)
        return self._run_module(module, args, kwargs, node)

    def _checkpointing_layer(self, module: Module, args: list, kwargs: dict, node):
        """transformers' GradientCheckpointingLayer in training: its forward run by the layer's
        `_gradient_checkpointing_func` (functools.partial of torch.utils.checkpoint.checkpoint with the
        keywords `gradient_checkpointing_kwargs` gave), the cache turned off, as the library's wrapper does."""
        if self._module_attr(module, "training", node) is not True:
            return self._run_module(module, args, kwargs, node)
        func = module.attrs.get("_gradient_checkpointing_func")
        if not (isinstance(func, Partial) and isinstance(func.func, Q) and (
                func.func.path == "torch.utils.checkpoint.checkpoint") and not func.args):
            raise Unresolved(f"{module.kind} runs under a checkpointing function gpumem does not model "
                             f"({func!r}; activation offloading is not modelled)", node)
        kwargs = dict(kwargs)
        if kwargs.get("use_cache"):
            kwargs["use_cache"] = False
        if not self._module_attr(module, "_can_checkpoint_with_cache", node):
            kwargs.update((k, None) for k in CACHE_ARGUMENTS if kwargs.get(k) is not None)
        return self.checkpoint_call(lambda: self._run_module(module, args, kwargs, node), args, func.kwargs, node)

    def checkpoint_call(self, run, inputs: list, options: dict, node):
        """torch.utils.checkpoint.checkpoint(fn, *inputs, **options) around `run()`, its keywords read:
        use_reentrant, context_fn (selective checkpointing) and early_stop."""
        reentrant = options.get("use_reentrant") is True
        selective = self.selective_policy(options.get("context_fn"), reentrant, node)
        return self.checkpointed(run, inputs, reentrant, selective, options.get("early_stop") is not False)

    def checkpointed(self, run, inputs: list = (), reentrant: bool = False, selective: Selective | None = None,
                     early_stop: bool = True):
        """torch.utils.checkpoint around `run()`: its events are one region, which forward keeps
        nothing of but its inputs and backward runs again (a region inside one is part of it).
        The reentrant variant gives no gradient at all when none of its inputs needs one. Under a
        `selective` policy forward also keeps the results of the ops it saves (Event.cached)."""
        if self.region is not None:
            if selective is not None and selective != self.selective:
                raise Unresolved("a selectively checkpointed call inside another checkpointed call is not modelled")
            return run()
        self.regions += 1
        self.region, first = self.regions, len(self.events)
        self.selective = selective
        try:
            out = run()
        finally:
            self.region = self.selective = None
        region = Region(self.regions, reentrant, early_stop)
        for ev in self.events[first:]:
            ev.checkpoint = region
        if reentrant and not any(t.requires_grad for t in tensors_in(list(inputs))):
            for t in tensors_in(out):
                t.requires_grad = False
        return out

    def selective_policy(self, context_fn, reentrant: bool, node) -> Selective | None:
        """checkpoint's `context_fn`: None for the default; the policy when it calls
        create_selective_checkpoint_contexts (a functools.partial of it, or a function returning it)."""
        if context_fn is None or (isinstance(context_fn, Q) and context_fn.path == NOOP_CONTEXT):
            return None
        if reentrant:
            raise Unresolved("checkpoint takes context_fn only with use_reentrant=False (PyTorch raises)", node)
        made = self.call(context_fn, [], {}, node)
        if not isinstance(made, Selective):
            raise Unresolved(f"checkpoint's context_fn {context_fn!r} is not create_selective_checkpoint_contexts: "
                             "what it runs forward and recomputation under is not modelled", node)
        return made

    def selective_contexts(self, policy_fn_or_list, node, allow_cache_entry_mutation=False) -> Selective:
        """create_selective_checkpoint_contexts: the ATen ops whose results forward caches, from a list
        of op overloads (torch.ops.aten.mm.default; PyTorch takes no other collection) or a policy
        function, asked about each call in forward order (a policy that counts calls, as torchtitan's
        saving every second mm, is read) and first about an op it cannot name, which it must not save;
        an ATen op beyond SAC_OPS that it or the list names is GPM900 (which entries dispatch it is not read).
        Ops of another namespace (collectives) are dispatched by no catalogue entry."""
        if isinstance(policy_fn_or_list, list):
            return Selective(frozenset(filter(None, (_aten_name(op, node) for op in policy_fn_or_list))))
        if not isinstance(policy_fn_or_list, (Function, Partial, Bound)):
            raise Unresolved(f"create_selective_checkpoint_contexts({policy_fn_or_list!r}): a list of ATen ops or a "
                             "policy function is read (PyTorch raises for another collection)", node)
        for op in self._named_ops(policy_fn_or_list):
            _aten_name(op, node)
        if self._policy_saves(policy_fn_or_list, UNNAMED_OP, node):
            raise Unresolved("a selective checkpointing policy that saves ops it does not name: which results it "
                             "caches is not read", node)
        return Selective(policy=policy_fn_or_list)

    def _policy_saves(self, policy, name: str, node) -> bool:
        """The policy's answer for the op aten.`name`, in forward (ctx.is_recompute False)."""
        ctx = types.SimpleNamespace(is_recompute=False)
        answer = self.call(policy, [ctx, Q(f"torch.ops.aten.{name}.default")], {}, node)
        if isinstance(answer, bool):
            return answer
        kind = answer.path.rpartition(".")[2] if isinstance(answer, Q) else None
        if kind not in CHECKPOINT_POLICIES:
            raise Unresolved(f"a selective checkpointing policy answers {answer!r} for aten.{name}: a CheckpointPolicy "
                             "or a bool is read", node)
        return CHECKPOINT_POLICIES[kind]

    def _named_ops(self, policy) -> list:
        """The op overloads a policy function's names and attributes reach (its module's lists and sets)."""
        func = policy.func if isinstance(policy, (Partial, Bound)) else policy
        if not isinstance(func, Function):
            return []
        ops = []
        for n in _names_in(func.node):
            try:
                value = self.eval(n, func.scope)
            except AnalysisError:
                continue  # a parameter or a local: what it holds is an op named elsewhere in the body
            values = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
            ops += [v for v in values if isinstance(v, Q) and v.path.startswith("torch.ops.")]
        return ops

    def cached(self, op: Op, bound: Args, type_name: str, node, outputs: list, made: list) -> tuple:
        """What the running region's selective policy caches of this call: its results (`outputs`), and
        the statistics it keeps (of `made`) where the op returns them, when the ATen op that makes them,
        as the catalogue names it (Op.aten), is one the policy saves; not the copies of its inputs it
        keeps. An entry without `aten` dispatches none of SAC_OPS, the only ops a policy read may save."""
        if self.selective is None or op.aten is None:
            return ()
        candidates = op.aten(bound)
        if candidates is None:
            raise Unresolved(f"{type_name} under selective checkpointing: which ATen op makes its result, and "
                             "so whether the policy keeps it, is not read for these arguments", node)
        policy = self.selective.policy
        saved = {self._policy_saves(policy, name, node) if policy is not None else name in self.selective.saves
                 for name in candidates}
        if len(saved) > 1:
            raise Unresolved(f"{type_name} under selective checkpointing runs one of {', '.join(candidates)}, "
                             "which one is not read, and the policy saves some of them: save all or none", node)
        if not saved.pop():
            return ()
        return tuple(outputs) + (tuple(made) if any(catalogue.SAC_OPS[n] for n in candidates) else ())

    def _run_module(self, module: Module, args: list, kwargs: dict, node):
        if self.stack:
            self.stack[-1][1] = True
        self.stack.append([module, False])
        try:
            own_forward = module.cls is not None and module.cls.method(self, "forward") is not None
            if module.container == "Sequential" and not own_forward:
                if len(args) != 1 or kwargs:
                    raise Unresolved("nn.Sequential takes exactly one input", node)
                x = args[0]
                for child in module.children.values():
                    x = self.call(child, [x], {}, node)
                if not module.children:  # an empty Sequential is a leaf, its input passed on (ghostnet's shortcut)
                    self.fold(module, len(self.events), args, x, node)
                return x
            if module.container and not own_forward:
                raise Unresolved(f"nn.{module.container} is not callable", node)
            if module.op is not None and not own_forward:
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
            # transformers' @can_return_tuple, @merge_with_config_defaults, ...
            out = self.call_method(forward, [module] + list(args), kwargs, node)
            if not self.stack[-1][1]:  # a custom module that calls no other module is a leaf too
                self.fold(module, first, args, out, node)
            return out
        finally:
            self.stack.pop()

    def fold(self, module: Module, first: int, args: list, out, node) -> None:
        """A leaf module that ran other ops (events from `first` on): they are reported as its row."""
        for ev in self.events[first:]:
            ev.folded = True
        self.events.append(Event(module, module.kind, node, list(tensors_in(args)), out, [], [], [], leaf=False,
                                 where=self.where(module.node, module)))

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
        if name == "__setattr__":  # nn.Module's, called by name (pytorch-cifar's DLA: `level_%d` subtrees)
            self.setattr(obj, args[0], args[1], node)
            return None
        if name == "__getattr__":
            return self._module_attr(obj, args[0], node)
        if name in ("get_submodule", "get_parameter", "get_buffer"):
            return self._get_by_path(obj, name, str(args[0] if args else kwargs["target"]), node)
        if name in ("items", "keys", "values") and obj.container == "ModuleDict":
            return list(getattr(obj.children, name)())
        if name in ("modules", "named_modules", "children", "named_children"):
            named = walk_modules(obj) if "modules" in name else [
                (k, m) for k, m in obj.children.items() if m is not None]
            return named if name.startswith("named") else [m for _, m in named]
        if name in ("buffers", "named_buffers"):  # the tensors register_buffer / nn.Buffer registered
            named = [(f"{prefix}.{key}" if prefix else key, value) for prefix, m in walk_modules(obj)
                     for key, value in m.attrs.items() if any(value is b for b in m.buffers)]
            return named if name == "named_buffers" else [t for _, t in named]
        if name in ("parameters", "named_parameters"):
            named = [(f"{prefix}.{key}" if prefix else key, value) for prefix, m in walk_modules(obj)
                     for key, value in self._parameters_of(m, node)]
            return named if name == "named_parameters" else [t for _, t in named]
        if name == "apply":
            for _, m in reversed(walk_modules(obj)):  # children first, as nn.Module.apply
                self.call(args[0], [m], {}, node)
            return obj
        if name == "requires_grad_":  # every parameter under the module
            flag = args[0] if args else kwargs.get("requires_grad", True)
            for _, m in walk_modules(obj):
                for k in range(len(m.params)):
                    self.set_requires_grad(self.weight_tensor(m, k), flag, node)
            return obj
        if name in MODULE_CASTS or name == "to":
            dtype = TORCH_DTYPES[name] if name in MODULE_CASTS else _to_dtype(args, kwargs)
            if dtype is not None:  # the model's dtype is a setting; a part cast apart is noted (analysis.py)
                for _, m in walk_modules(obj):
                    m.cast = (dtype, self.where(node), obj)
            return obj
        if name in ("cuda", "cpu", "train", "eval"):
            return obj
        if name in ("zero_grad", "reset_parameters", "_reset_parameters", "init_weights", "compile"):
            return None
        if name == "load_state_dict":  # values copied into the parameters the constructor built, or it raises
            return None
        raise Unresolved(f"cannot call {obj.kind}.{name}() statically", node)

    def _stored_arg(self, obj: Module, name: str):
        """A layer's constructor argument as the torch layer keeps it: nn.Conv2d(3, 8, 3).kernel_size
        is (3, 3), nn.MaxPool2d(2).kernel_size is 2 and its stride 2; under a subclass's name too."""
        value = obj.args[name]
        if name not in PER_DIMENSION:
            return value
        kind = obj.kind if obj.cls is None else self.torch_base(obj.cls)
        if name == "stride" and value is None and "Pool" in (kind or ""):
            value = obj.args["kernel_size"]
        n = TUPLED.get(kind)
        if n is None or isinstance(value, str):  # padding="same" stays a string
            return value
        return (value,) * n if isinstance(value, int) else tuple(value)

    def _parameters_of(self, m: Module, node) -> list:
        """(name, tensor) of a module's own parameters: a layer's weight and bias, a class's nn.Parameters."""
        if m.op is not None:
            return [(key, self._module_attr(m, key, node)) for key in ("weight", "bias")[:len(m.params)]]
        return [(key, value) for key, value in m.attrs.items() if isinstance(value, Tensor) and value.is_param]

    def _get_by_path(self, obj: Module, method: str, target: str, node):
        """nn.Module.get_submodule / get_parameter / get_buffer of a dotted path; AttributeError as
        PyTorch raises it where there is no such thing."""
        path = target.split(".") if target else []
        leaf = path.pop() if method != "get_submodule" else None
        for part in path:
            if part not in obj.children:
                raise Raised(f"{obj.kind} has no attribute `{part}`", node, AttributeError)
            obj = obj.children[part]
        if leaf is None:
            return obj
        try:
            value = self._module_attr(obj, leaf, node)
        except AnalysisError:
            value = None
        wanted = isinstance(value, Tensor) and (value.is_param == (method == "get_parameter"))
        if not wanted:
            raise Raised(f"`{leaf}` is not a {method[4:]} of {obj.kind}", node, AttributeError)
        return value

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
            found = self.class_attr(obj.cls, name, obj, node)
            if found is not MISSING:
                return found
        if name == "__class__":
            return obj.cls if obj.cls is not None else Q(f"torch.nn.{obj.kind}")
        if name == "__module__":
            file = obj.cls.scope.root().file if obj.cls is not None else None
            return (file.module if file is not None else None) or "__main__"
        if obj.op is not None and name in ("weight", "bias"):
            idx = 0 if name == "weight" else 1
            return self.weight_tensor(obj, idx) if idx < len(obj.params) else None  # bias=False: None
        if obj.op is not None and name in RUNNING_STATS:  # a norm layer's buffers, in running_stats' order
            i = RUNNING_STATS.index(name)
            return obj.buffers[i] if i < len(obj.buffers) else None  # track_running_stats=False: None
        if obj.args is not None and name in obj.args:  # e.g. conv.out_channels
            return self._stored_arg(obj, name)
        if name in MODULE_METHODS:
            return Bound(obj, name)
        raise Unresolved(f"{obj.kind} has no attribute '{name}' that gpumem knows", node)


def _to_dtype(args: list, kwargs: dict) -> str | None:
    """The dtype `module.to(...)` casts to: to(dtype), to(device, dtype), to(dtype=...), to(tensor);
    None where it only places the module."""
    values = (v.dtype if isinstance(v, Tensor) else v for v in (*args, *kwargs.values()))
    return next((v for v in values if isinstance(v, str) and v in FLOAT_DTYPES), None)


def _torch_base(q: Q) -> str | None:
    """The torch.nn container or catalogue layer a base class names, or None."""
    path = canonical(q.path)
    name = path.rpartition(".")[2]
    return name if path == f"torch.nn.{name}" and (name in CONTAINERS or name in catalogue.MODULES) else None


# CheckpointPolicy's members: whether forward caches the op's result
CHECKPOINT_POLICIES = {"MUST_SAVE": True, "PREFER_SAVE": True, "MUST_RECOMPUTE": False, "PREFER_RECOMPUTE": False}
UNNAMED_OP = "_gpumem_unnamed"  # an ATen op no policy names, to ask a policy what it does with the rest


def _aten_name(op, node) -> str | None:
    """torch.ops.aten.mm.default -> "mm"; None for another namespace's op."""
    parts = op.path.split(".") if isinstance(op, Q) else []
    if parts[:2] != ["torch", "ops"] or len(parts) != 5:
        raise Unresolved(f"a selective checkpointing policy naming {op!r}, no op overload such as "
                         "torch.ops.aten.mm.default: PyTorch refuses a packet in a list, and gpumem asks a policy "
                         "function about overloads only", node)
    if parts[2] != "aten":
        return None
    if parts[3] not in catalogue.SAC_OPS:
        raise Unresolved(f"a selective checkpointing policy saving aten.{parts[3]}: gpumem reads policies that save "
                         f"{', '.join(sorted(catalogue.SAC_OPS))}", node)
    return parts[3]


def _names_in(node) -> list:
    """The outermost names and attribute chains in a function's code."""
    found = []

    class Visitor(cst.CSTVisitor):
        def visit_Attribute(self, n):
            found.append(n)
            return False

        def visit_Name(self, n):
            found.append(n)

    node.visit(Visitor())
    return found
