"""Statements: blocks, branches, loops (unrolled, bounded) and assignment."""
from __future__ import annotations

import libcst as cst

from ..values import AnalysisError, Raised, Tensor, Unresolved
from .bindings import imported_names
from .objects import MAX_LOOP, BreakLoop, Class, ContinueLoop, Function, Instance, Module, ReturnValue, Scope, code

AUGOPS = {
    cst.AddAssign: cst.Add, cst.SubtractAssign: cst.Subtract, cst.MultiplyAssign: cst.Multiply,
    cst.DivideAssign: cst.Divide, cst.FloorDivideAssign: cst.FloorDivide, cst.ModuloAssign: cst.Modulo,
    cst.PowerAssign: cst.Power, cst.MatrixMultiplyAssign: cst.MatrixMultiply, cst.BitOrAssign: cst.BitOr,
    cst.BitAndAssign: cst.BitAnd, cst.BitXorAssign: cst.BitXor, cst.LeftShiftAssign: cst.LeftShift,
    cst.RightShiftAssign: cst.RightShift,
}


class Statements:
    """Runs statements of a function body (or a class body) in a scope."""

    def _run_with(self, stmt: cst.With, scope: Scope) -> None:
        """A `with` block: torch.no_grad() and its kin switch autograd's recording for the block; other
        context managers (autocast, sdpa_kernel, ...) change nothing modelled here. A custom autograd
        Function's no_grad block that its backward runs again is a checkpointed region (custom_function)."""
        modes = [] if id(stmt) in self.recomputed else [self.grad_mode(item.item, scope) for item in stmt.items]
        self.run_in_grad_mode(next((m for m in reversed(modes) if m is not None), None),
                              lambda: self.run_block(stmt.body.body, scope))

    def run_block(self, body, scope: Scope) -> None:
        for stmt in body:
            self.run_stmt(stmt, scope)

    def run_stmt(self, stmt, scope: Scope) -> None:
        self._tick(stmt)
        handler = _STATEMENTS.get(type(stmt))  # by exact type, as expressions are dispatched
        if handler is None:
            raise Unresolved(f"unsupported statement: {type(stmt).__name__}", stmt)
        handler(self, stmt, scope)

    def _run_line(self, stmt: cst.SimpleStatementLine, scope: Scope) -> None:
        for small in stmt.body:
            self.run_small(small, scope)

    def _run_try(self, stmt: cst.Try, scope: Scope) -> None:
        """The body; where it raises what Python raises (a `raise ValueError(...)`, a call's bad
        arguments) before any call was recorded, the handler that catches it, as in Python. Whatever
        else stops the body stops the analysis."""
        first = len(self.events)
        try:
            self.run_block(stmt.body.body, scope)
        except Raised as exc:
            handler = next((h for h in stmt.handlers if self._catches(h, exc.exception, scope)), None)
            if handler is None or len(self.events) != first:
                raise
            if handler.name is not None:
                self.assign(handler.name.name, exc, scope)
            self.run_block(handler.body.body, scope)
            if stmt.finalbody is not None:
                self.run_block(stmt.finalbody.body.body, scope)
            return
        if stmt.orelse is not None:
            self.run_block(stmt.orelse.body.body, scope)
        if stmt.finalbody is not None:
            self.run_block(stmt.finalbody.body.body, scope)

    def _catches(self, handler: cst.ExceptHandler, exception: type, scope: Scope) -> bool:
        """Whether `except T:` catches a builtin exception; T unknown to gpumem catches nothing."""
        if handler.type is None:
            return True
        try:
            kinds = self.eval(handler.type, scope)
        except AnalysisError:
            return False
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        return any(isinstance(getattr(k, "fn", None), type) and issubclass(exception, k.fn) for k in kinds)

    def _define(self, stmt, scope: Scope) -> None:
        if type(stmt) is cst.ClassDef:
            cls = Class(stmt, scope, stmt.name.value, segment=self.segment)
            scope.vars[stmt.name.value] = self.decorate(cls) if stmt.decorators else cls
            return
        function = Function(stmt, scope, stmt.name.value, segment=self.segment)
        scope.vars[stmt.name.value] = self.decorate(function) if stmt.decorators else function

    def _run_if(self, stmt: cst.If, scope: Scope) -> None:
        if self.truth(self.eval(stmt.test, scope), stmt.test):
            self.run_block(stmt.body.body, scope)
        elif type(stmt.orelse) is cst.If:
            self._run_if(stmt.orelse, scope)
        elif stmt.orelse is not None:
            self.run_block(stmt.orelse.body.body, scope)

    def truth(self, value, node) -> bool:
        if isinstance(value, Tensor) and value.values is not None and len(value.values) == 1:
            return bool(value.values[0])  # computed from known numbers, never from the input's
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
            except BreakLoop:
                broke = True
                break
            except ContinueLoop:
                continue
        if not broke and stmt.orelse is not None:
            self.run_block(stmt.orelse.body.body, scope)

    def _run_while(self, stmt: cst.While, scope: Scope) -> None:
        """Unrolled while its condition is known (shapes, sizes, counters), as improved-diffusion's
        `while len(emb_out.shape) < len(h.shape): emb_out = emb_out[..., None]`; a condition on
        tensor values stops it (truth), and so does one that holds past MAX_LOOP iterations."""
        for _ in range(MAX_LOOP + 1):
            self._tick(stmt)
            if not self.truth(self.eval(stmt.test, scope), stmt.test):
                if stmt.orelse is not None:
                    self.run_block(stmt.orelse.body.body, scope)
                return
            try:
                self.run_block(stmt.body.body, scope)
            except BreakLoop:
                return
            except ContinueLoop:
                continue
        raise Unresolved(f"a while loop runs past the {MAX_LOOP} iterations unrolled", stmt)

    def iterate(self, value, node) -> list:
        if isinstance(value, Module):
            if value.container in ("Sequential", "ModuleList"):
                return list(value.children.values())
            if value.container == "ModuleDict":
                return list(value.children)
            raise Unresolved(f"cannot iterate over a {value.kind}", node)
        if isinstance(value, Tensor) and value.values is not None and value.ndim == 1:
            return [Tensor((), value.dtype, values=(v,)) for v in value.values]  # [x.item() for x in dpr]
        if isinstance(value, Tensor):
            return [value.view(value.shape[1:]) for _ in range(value.shape[0])] if value.ndim else []
        if isinstance(value, range) and len(value) > MAX_LOOP:
            raise Unresolved(f"a loop of {len(value)} iterations is more than the {MAX_LOOP} unrolled", node)
        if isinstance(value, Instance):  # its class's __iter__, a Sequence's items, a dict subclass's keys
            method, item, size = (value.cls.method(self, m) for m in ("__iter__", "__getitem__", "__len__"))
            if method is not None:
                value = self.call_function(method, [value], {}, node)
            elif item is not None and size is not None:
                n = self.call_function(size, [value], {}, node)
                value = [self.call_function(item, [value, i], {}, node) for i in range(min(n, MAX_LOOP + 1))]
            elif self.dict_based(value.cls):
                value = value.items
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
        handler = _SMALL_STATEMENTS.get(type(small))
        if handler is None:
            raise Unresolved(f"unsupported statement: {type(small).__name__}", small)
        handler(self, small, scope)

    def _run_expr(self, small: cst.Expr, scope: Scope) -> None:
        if type(small.value) is cst.Call and not self._resolvable(small.value.func, scope):
            return  # print(...), logging, open(...).write(...): nothing a shape depends on
        self.eval(small.value, scope)

    def _run_assign(self, small: cst.Assign, scope: Scope) -> None:
        value = self.eval(small.value, scope)
        for target in small.targets:
            self.assign(target.target, value, scope)

    def _run_annassign(self, small: cst.AnnAssign, scope: Scope) -> None:
        if small.value is not None:
            self.assign(small.target, self.eval(small.value, scope), scope)

    def _run_return(self, small: cst.Return, scope: Scope) -> None:
        raise ReturnValue(None if small.value is None else self.eval(small.value, scope))

    def _run_import(self, small, scope: Scope) -> None:
        scope.vars.update(imported_names(small, scope.root().file.package))

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
        if isinstance(current, Module) and current.container == "ModuleList" and op is cst.Add:
            self._module_method(current, "extend", [value], {}, small)  # `self.layers += [...]`
            return
        if isinstance(current, Tensor):
            # In place: no new memory, the result keeps the target's storage.
            result = self.binop(op, current, value, small, inplace=True)
        else:
            result = self.binop(op, current, value, small)
        if isinstance(current, (list, set, dict)):
            # a list's `*=`, a set's or dict's `|=`, `&=`, `-=`, `^=` change the object in place, as
            # Python's __imul__/__ior__/... do: every name bound to it sees the result
            current.clear()
            (current.extend if isinstance(current, list) else current.update)(result)
            return
        self.assign(small.target, result, scope)

    def assign(self, target, value, scope: Scope) -> None:
        kind = type(target)
        if kind is cst.Name:
            self._hold(scope.vars.get(target.value))  # the old value lives until the name is rebound
            scope.vars[target.value] = value
        elif kind is cst.Tuple or kind is cst.List:
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
        elif kind is cst.Attribute:
            self.setattr(self.eval(target.value, scope), target.attr.value, value, target)
        elif kind is cst.Subscript:
            container = self.eval(target.value, scope)
            if isinstance(container, Tensor):  # x[i] = v, x[:, 0] += v: written in place, into memory x holds
                if isinstance(value, Tensor) and value.requires_grad and self.grad_enabled and not (
                        container.requires_grad):
                    raise Unresolved(f"{code(target)} = ... writes a tensor that needs a gradient into one that does "
                                     "not: the graph autograd then makes (CopySlices) is not modelled", target)
                return
            key = self._index_value(target, scope)
            method = container.cls.method(self, "__setitem__") if isinstance(container, Instance) else None
            if method is not None:
                self.call_function(method, [container, key, value], {}, target)
            elif isinstance(container, Module) and not isinstance(key, slice):
                self.register(container, str(key), value, target)
            elif isinstance(container, (list, dict)) and not (isinstance(key, slice) and isinstance(container, dict)):
                container[key] = list(self.iterate(value, target)) if isinstance(key, slice) else value
            else:
                raise Unresolved(f"cannot assign into {type(container).__name__}", target)
        else:
            raise Unresolved(f"unsupported assignment target {code(target)}", target)

    def _run_raise(self, small: cst.Raise, scope: Scope) -> None:
        """The code raises: Unresolved, saying what and the message where gpumem reads it (torchvision:
        "ValueError: The parameter 'num_classes' expected value 1000 but got 10 instead.")."""
        exc = small.exc
        message = None
        if type(exc) is cst.Call and exc.args and exc.args[0].keyword is None and not exc.args[0].star:
            try:
                message = self.eval(exc.args[0].value, scope)
            except AnalysisError:
                pass
        what = code(exc.func if type(exc) is cst.Call else exc) if exc is not None else "the exception it handles"
        message = f"the code raises {what}" + (f": {message}" if isinstance(message, str) else "")
        try:
            kind = self.eval(exc.func if type(exc) is cst.Call else exc, scope) if exc is not None else None
        except AnalysisError:
            kind = None
        if isinstance(kind, Raised):  # `raise e` of a caught exception
            raise Raised(kind.message, small, kind.exception)
        if isinstance(getattr(kind, "fn", None), type) and issubclass(kind.fn, Exception):
            raise Raised(message, small, kind.fn)
        raise Unresolved(message, small)

    def _run_del(self, small: cst.Del, scope: Scope) -> None:
        """`del kwargs["pretrained"]` removes the item; `del x` leaves the name bound (gpumem holds a
        function's values until it returns)."""
        targets = small.target.elements if type(small.target) is cst.Tuple else [small.target]
        for target in targets:
            target = target.value if type(target) is cst.Element else target
            if type(target) is cst.Subscript:
                container = self.eval(target.value, scope)
                if isinstance(container, (dict, list)):
                    try:
                        del container[self._index_value(target, scope)]
                    except (KeyError, IndexError, TypeError) as exc:
                        raise Unresolved(f"del {code(target)} fails: {exc!r}", small) from None

    def _index_value(self, node: cst.Subscript, scope: Scope):
        """The key of `x[key]`, or a slice object for `x[a:b]` (a list's slice assignment)."""
        part = node.slice[0].slice if len(node.slice) == 1 else None
        if isinstance(part, cst.Slice):
            return slice(*(None if p is None else self.eval(p, scope) for p in (part.lower, part.upper, part.step)))
        if not isinstance(part, cst.Index):
            raise Unresolved(f"unsupported subscript {code(node)}", node)
        return self.eval(part.value, scope)


def _signal(signal: type):
    def run(self, stmt, scope: Scope) -> None:
        raise signal()
    return run


_STATEMENTS = {
    cst.SimpleStatementLine: Statements._run_line,
    cst.If: Statements._run_if,
    cst.For: Statements._run_for,
    cst.With: Statements._run_with,
    cst.Try: Statements._run_try,
    cst.FunctionDef: Statements._define,
    cst.ClassDef: Statements._define,
    cst.While: Statements._run_while,
}
_SMALL_STATEMENTS = {
    cst.Expr: Statements._run_expr,
    cst.Assign: Statements._run_assign,
    cst.AnnAssign: Statements._run_annassign,
    cst.AugAssign: Statements._augassign,
    cst.Return: Statements._run_return,
    cst.Import: Statements._run_import,
    cst.ImportFrom: Statements._run_import,
    cst.Break: _signal(BreakLoop),
    cst.Continue: _signal(ContinueLoop),
    cst.Del: Statements._run_del,
    cst.Raise: Statements._run_raise,
    **dict.fromkeys((cst.Pass, cst.Assert, cst.Global, cst.Nonlocal), lambda self, stmt, scope: None),
}
