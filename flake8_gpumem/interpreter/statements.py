"""Statements: blocks, branches, loops (unrolled, bounded) and assignment."""
from __future__ import annotations

import libcst as cst

from ..values import AnalysisError, Tensor, Unresolved
from .expressions import AUGOPS
from .objects import MAX_LOOP, Class, Function, Module, Scope, _Break, _Continue, _Return, code
from .scopes import imported_names


class Statements:
    """Runs statements of a function body (or a class body) in a scope."""

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
        if isinstance(value, Tensor) and value.values is not None and value.ndim == 1:
            return [Tensor((), value.dtype, values=(v,)) for v in value.values]  # [x.item() for x in dpr]
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
            scope.vars.update(imported_names(small, scope.root().file.package))
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
        if isinstance(current, Module) and current.container == "ModuleList" and op is cst.Add:
            self._module_method(current, "extend", [value], {}, small)  # `self.layers += [...]`
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
            if isinstance(container, Tensor):
                return  # x[i] = v, x[:, 0] += v: written in place, into memory x already holds
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
