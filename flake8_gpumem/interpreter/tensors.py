"""Tensor operations: a catalogue entry applied to known shapes, recorded as an Event, with
autocast's casts under AMP; indexing."""
from __future__ import annotations

import contextlib

import libcst as cst

from .. import catalogue
from . import numbers
from ..catalogue import Args, Op
from ..signature import bind, parse
from ..values import (FLOAT_DTYPES, GRAD_DTYPES, STRIDED, AnalysisError, ShapeError, Tensor, Unresolved, bad_sizes,
                      tensors_in)
from .objects import Event, Module, Scope, code, dotted


class TensorOps:
    """Applies catalogue ops to tensors known by shape."""

    def apply(self, op: Op, fixed: dict, signature: str, args: list, kwargs: dict, node, module: Module | None,
              type_name: str, inplace: Tensor | None = None):
        """Run a catalogue entry on known shapes and record the call.

        With `inplace`, the result is written into that tensor's memory (`x += y`)."""
        bound = Args(fixed)
        params = parse(signature)
        varargs = next((p.name for p in params if p.kind == "varargs"), None)
        if varargs in kwargs and len(args) <= sum(p.kind == "plain" for p in params):
            # torch's parser takes `*shape` by its name too: x.reshape(shape=(2, 3)) (diffusers' DiT)
            args, kwargs = [*args, kwargs[varargs]], {k: v for k, v in kwargs.items() if k != varargs}
        bound.update(bind(params, args, kwargs, type_name, node))
        if op.steps is not None:
            return self._compose(op, bound, args, node, module, type_name)
        bound["_float"] = self.model_dtype
        bound["_device"] = self.device
        bound["_inference"] = self.inference
        # the caller's arguments live until the call returns, also when autocast hands the op copies
        amp = self.autocast and op.autocast
        originals = list(tensors_in(list(bound.values()))) if amp else []
        weights = self._autocast(op, bound, module, node) if amp else []
        inputs = [t for t in tensors_in(list(bound.values()))] + weights
        with _rule_errors(type_name, node, module):
            out = op.shape(bound)
        if inplace is not None:
            if out.shape != inplace.shape:
                raise ShapeError(f"an in-place result of shape {catalogue.fmt(out.shape)} cannot be written "
                                 f"into {catalogue.fmt(inplace.shape)}", node)
            out = inplace.rewritten()
        if isinstance(out, Tensor) and out.values is None and any(t.values is not None for t in inputs):
            out.values = numbers.evaluate(op, bound, out)
        elif isinstance(out, (tuple, list)) and any(t.values is not None for t in inputs):
            numbers.pieces(op, bound, out)
        input_ids = {id(t) for t in inputs}
        outputs = list(tensors_in(out))
        for t in outputs:
            if bad_sizes(t.shape):
                raise ShapeError(f"{type_name} gives an output of shape {catalogue.fmt(t.shape)}: a size must be "
                                 "a whole number, 0 or more", node)
        # w.split(...), w.chunk(3), w.reshape(...): views of a weight, no bigger than it (an expanded
        # class token is an activation: its gradient is summed into the weight's)
        if inputs and all(t.is_param for t in inputs) and all(
                t.base is not None and t.numel <= t.storage.numel for t in outputs):
            for t in outputs:
                t.is_param, t.requires_grad = True, self.grad_enabled and t.storage.requires_grad
            return out
        in_memory = {t.storage.id for t in inputs}
        new = list({t.storage.id: t.storage for t in outputs if id(t) not in input_ids  # a view of a new tensor
                    and t.storage.id not in in_memory}.values())
        # autograd records the call when gradients are on and an input or the layer's own weight needs one
        grad = self.grad_enabled and op.grad != "none" and (any(t.requires_grad for t in inputs) or (
            module is not None and any(module.trains(k) for k in range(len(module.params)))))
        for t in outputs:
            if id(t) not in input_ids:
                t.requires_grad = grad and t.dtype in GRAD_DTYPES
        if module is not None:  # which of the layer's parameters train: autograd keeps only what their gradients need
            bound["_trains"] = tuple(module.trains(k) for k in range(len(module.params)))
        saved = list(op.saves(bound, out)) if grad else []
        if grad and weights and (op.keeps_weight or any(t.requires_grad and not t.is_param for t in inputs
                                               if t not in weights)):
            saved.append(weights[0])  # the half-precision weight copy, for the input's gradient
        known = input_ids | {id(t) for t in outputs}
        made = [t for t in saved if id(t) not in known and t.base is None]  # indices, masks, statistics, copies
        new += made
        bound["_records"] = grad  # autograd records the call: what it saves is kept, not made and freed
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
                                 weight_grad_copy=grad and op.weight_grad_copy(bound),
                                 owner=self.stack[-1][0] if self.stack else None,
                                 own_param_grads=not weights,
                                 cached=self.cached(op, bound, type_name, node, outputs, made)))
        for t in originals:
            self.held[t.storage.id] = max(self.held.get(t.storage.id, -1), len(self.events) - 1)
        return out

    def _compose(self, op: Op, bound: Args, args: list, node, module: Module | None, type_name: str):
        """A composite entry: each op it runs applied with its own rules, recorded under the
        composite's type; in a layer (einops' Rearrange) they make up the layer's row."""
        first = len(self.events)

        def run(name: str, *step_args, into: Tensor | None = None, **step_kwargs):
            """One step; `into` writes its result into that tensor's memory, as an in-place op."""
            step = catalogue.METHODS.get(name) or catalogue.FUNCTIONS[name]
            return self.apply(step, {}, step.signature, list(step_args), step_kwargs, node, None, type_name,
                              inplace=into)

        with _rule_errors(type_name, node, module):
            out = op.steps(bound, run)
        if module is not None:
            self.fold(module, first, args, out, node)
        return out

    def _autocast(self, op: Op, bound: Args, module: Module | None, node) -> list:
        """Under AMP, cast the call's float inputs to the op's precision; return the module's
        half-precision weight copies (autocast caches one per weight per forward)."""
        floats = [t for t in tensors_in(list(bound.values())) if t.dtype in FLOAT_DTYPES]
        target = self.autocast if op.autocast == "low" else (
            (catalogue.promote(*floats) if floats else None) if op.autocast == "promote" else
            "float32" if op.autocast == "fp32" or self.device == "cuda" else None)
        if target is None:
            return []
        # autocast casts the arguments last to first (the module's bias, its weight, then the input),
        # so in backward the input's cast runs first
        weights = []
        if module is not None and target != "float32" and module.params:
            params = [self.weight_tensor(module, k) for k in range(len(module.params))]
            weights = [self.cast(p, target, node) for p in reversed(params)][::-1]
        for key, value in reversed(list(bound.items())):
            if isinstance(value, Tensor) and value.dtype in FLOAT_DTYPES and value.dtype != target:
                bound[key] = self.cast(value, target, node)
            elif isinstance(value, (list, tuple)) and any(isinstance(v, Tensor) for v in value):
                bound[key] = type(value)(self.cast(v, target, node) if isinstance(v, Tensor) and
                                         v.dtype in FLOAT_DTYPES and v.dtype != target else v for v in value)
        return weights

    def cast(self, t: Tensor, dtype: str, node, name: str = "autocast") -> Tensor:
        """`t` in `dtype`, as autocast (or FSDP's mixed precision) casts it: a weight that trains is cast
        once per forward."""
        cached = self.casts.get((id(t), dtype))
        if cached is None:
            cached = self.apply(catalogue.CAST, {}, "input, dtype", [t, dtype], {}, node, None, name)
            if t.is_param and t.requires_grad:  # autocast caches a weight that trains until forward ends
                self.casts[(id(t), dtype)] = cached
                self.events[-1].until_forward_end = True
        return cached

    def call_function_op(self, path: str, op: Op, args: list, kwargs: dict, node):
        return self.apply(op, {}, op.signature, args, kwargs, node, None, _short(node, path))

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
        keys = [self._list_index(x, i - keys[:i].count(None), k, node) if isinstance(k, list) else k
                for i, k in enumerate(keys)]
        picks = [i for i, k in enumerate(keys) if isinstance(k, Tensor)]
        if picks:  # table[index]: a gather, its shape known from the index's
            dim = picks[0]
            if len(picks) > 1 or keys[picks[0]].dtype not in ("int64", "int32") or any(
                    k != slice(None) for k in keys[:dim]):
                raise Unresolved("indexing a tensor with a mask or several index tensors depends on the data", node)
            taken = self.apply(catalogue.TAKE, {}, catalogue.TAKE.signature, [x, dim, keys[dim]], {}, node, None,
                               "[]")
            rest = keys[dim + 1:]
            return taken if all(k == slice(None) for k in rest) else self._index_keys(taken, keys[:dim] + [
                slice(None)] * keys[dim].ndim + rest, node)
        return self._index_keys(x, keys, node)

    def _list_index(self, x: Tensor, dim: int, key: list, node) -> Tensor | list:
        """x[:, [-1]]: a list of ints is an index tensor PyTorch makes from it (its length known)."""
        if not key or not all(isinstance(k, int) and not isinstance(k, bool) for k in key) or dim >= x.ndim:
            return key
        bad = next((k for k in key if not -x.shape[dim] <= k < x.shape[dim]), None)
        if bad is not None:
            raise ShapeError(f"index {bad} is out of range for dimension {dim} of size {x.shape[dim]}", node)
        op = catalogue.FUNCTIONS["torch.tensor"]
        return self.apply(op, {}, op.signature, [key], {}, node, None, "[]")

    def _index_keys(self, x: Tensor, keys: list, node):
        """x[keys] for ints, slices, None: a view."""
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
        outer = next((i for i in x.order if x.shape[i] != 1), 0)
        keeps = x.contiguous and all(d == outer for d in narrowed) or not narrowed
        out = x.view(shape, x.layout if not narrowed else (None if keeps else STRIDED))
        out.values = numbers.picked(x, keys)
        # Backward of indexing scatters into a zero gradient the size of the whole input.
        self.events.append(Event(None, "[]", node, [x], out, [], [], []))
        return out


@contextlib.contextmanager
def _rule_errors(type_name: str, node, module: Module | None):
    """A catalogue rule's failure as the user's: at the call (or the layer), naming the op."""
    try:
        yield
    except AnalysisError as exc:
        exc.node = exc.node or (module.node if module is not None else node)
        raise
    except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError, AttributeError) as exc:
        raise Unresolved(f"{type_name} arguments cannot be used: {exc}", node) from None


def _short(node, path: str) -> str:
    """The op's type as written in the source, e.g. F.relu."""
    if isinstance(node, cst.Call):
        return dotted(node.func) or code(node.func)
    return path
