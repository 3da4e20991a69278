"""What a library fills at import time and looks up later, read from its source: timm's model
registry (`@register_model` puts each factory in a table when timm is imported) and its pretrained
configs (`default_cfgs = generate_default_cfgs({"arch.tag": _cfg(...), ...})`, whose values
`build_model_with_cfg` hands the model: `num_classes`, `in_chans`, `img_size`, `global_pool`).

gpumem imports nothing, so it replays neither. The few registry functions timm's own code calls
(`is_model`, `model_entrypoint`, `get_pretrained_cfg`) are answered here instead: from an index of
the decorated factories of timm/models/*.py, built by a text scan once per process, and from the
config entries of the one architecture asked for, each evaluated from its source. Loading weights
changes no size and is skipped; a config only the Hugging Face Hub holds is a GPM900 naming it.
The block types other files add to byobnet's table at import (`register_block(...)`) are found by
the same scan.
"""
from __future__ import annotations

import ast
import re
from functools import lru_cache
from pathlib import Path

import libcst as cst

from ..signature import bind
from ..values import Unresolved
from .objects import Function, Instance, Q, Scope

REGISTRY = "timm.models._registry"
# a factory as timm writes it: the decorator right above its def (other decorators may sit between)
REGISTERED = re.compile(r"^@register_model\s*\n(?:@.*\n)*def\s+(\w+)", re.M)
DEPRECATIONS = re.compile(r"register_model_deprecations\(\s*__name__\s*,\s*\{(.*?)\}\s*\)", re.S)
DEPRECATED = re.compile(r"['\"](\w+)['\"]\s*:\s*(?:['\"]([\w.]+)['\"]|None)")
# a block type another file adds to byobnet's table when imported: `register_block('mobilevit', MobileVitBlock)`
BLOCK = re.compile(r"^register_block\(\s*['\"](\w+)['\"]\s*,\s*(\w+)\s*\)", re.M)


def timm_index(folder: Path) -> dict:
    """name -> (module, current name or None): every name timm/models/*.py registers, a factory
    (current None) or a deprecated name and the 'arch.tag' it now stands for ("" where removed)."""
    return _scan(folder)[0]


@lru_cache(maxsize=4)
def _scan(folder: Path) -> tuple[dict, dict]:
    """What timm/models/*.py register when imported: models (timm_index) and byobnet's block types
    (type -> (module, class name))."""
    index, blocks = {}, {}
    for path in sorted(folder.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if "register_" not in text:
            continue
        module = f"timm.models.{path.stem}"
        index.update((name, (module, None)) for name in REGISTERED.findall(text))
        for block in DEPRECATIONS.findall(text):
            index.update((old, (module, new)) for old, new in DEPRECATED.findall(block))
        blocks.update((kind, (module, cls)) for kind, cls in BLOCK.findall(text))
    return index, blocks


@lru_cache(maxsize=64)
def cfg_table(path: Path) -> tuple[dict, list]:
    """The `default_cfgs` of a timm model file, unevaluated: arch -> [(key, tag as written, value
    source), ...] in order from its dict display, and the sources of the module-level statements
    that make more of it before it is handed to generate_default_cfgs (vision_transformer.py makes
    its QuickGELU entries in a loop over its other entries; qwen3_vit.py's table is a comprehension)."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines(keepends=True)
    starts = [0]
    for line in lines:
        starts.append(starts[-1] + len(line))

    def source(node) -> str:
        return text[starts[node.lineno - 1] + node.col_offset:starts[node.end_lineno - 1] + node.end_col_offset]

    entries, later = {}, []
    for stmt in ast.parse(text).body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else ()
        if any(isinstance(t, ast.Name) and t.id == "default_cfgs" for t in targets):
            value = stmt.value
            if isinstance(value, ast.Call) and value.args:
                value = value.args[0]
            if isinstance(value, ast.Name):
                break  # generate_default_cfgs(default_cfgs): the table is complete
            if not isinstance(value, ast.Dict):  # a comprehension (qwen3_vit.py): evaluated whole
                later.append(f"default_cfgs = {source(value)}")
                continue
            for key, item in zip(value.keys, value.values):
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    arch, _, tag = key.value.partition(".")
                    entries.setdefault(arch, []).append((key.value, tag, source(item)))
        elif entries and not isinstance(stmt, (ast.FunctionDef, ast.ClassDef)) and any(  # what runs at import
                isinstance(node, ast.Name) and node.id == "default_cfgs" for node in ast.walk(stmt)):
            later.append(source(stmt))
    return entries, later


def default_tags(cfgs: list) -> list:
    """The tags of one architecture, its default first, as timm's generate_default_cfgs orders
    them: an untagged entry with weights or the first tag ending in '*', else the first with
    weights, else the first. `cfgs`: (tag as written, has weights), in the table's order."""
    tags, chosen, pretrained = [], False, False
    for tag, weights in cfgs:
        priority = (weights and not tag) or (tag.endswith("*") and not chosen)
        tag = tag.strip("*")
        if priority:
            tags.insert(0, tag)
            chosen = True
        elif weights and not pretrained:
            tags.insert(0, tag)
        else:
            tags.append(tag)
        pretrained = pretrained or bool(weights)
    return tags


class Registries:
    """Calls of timm's registry functions, answered from its source instead of its import-time tables."""

    def replaced(self, func: Function):
        """The method standing for a library function whose answer lives in tables filled at import
        time, or None (almost every call: a dict lookup on the name)."""
        module = REPLACED.get(func.name)
        if module is None or func.scope.file is None or func.scope.file.module != module:
            return None
        return getattr(self, f"_timm_{func.name}")

    def _timm_args(self, func: Function, args: list, kwargs: dict, node) -> dict:
        return bind(self._function_params(func, Scope({}, func.scope)), args, kwargs, func.name, node)

    def _timm_index_folder(self, node) -> Path:
        path = self.resolver.source(REGISTRY)
        if path is None:
            raise Unresolved("no source for timm's model registry on the search path", node)
        return path.parent

    def _timm_index(self, node) -> dict:
        return timm_index(self._timm_index_folder(node))

    def _timm_is_model(self, func: Function, args: list, kwargs: dict, node) -> bool:
        name = self._timm_args(func, args, kwargs, node)["model_name"]
        return name.partition(".")[0] in self._timm_index(node)

    def _timm_model_entrypoint(self, func: Function, args: list, kwargs: dict, node):
        """The factory registered under a name: the decorated function of its file, or for a
        deprecated name timm's shim over the current one."""
        arch = self._timm_args(func, args, kwargs, node)["model_name"].partition(".")[0]
        found = self._timm_index(node).get(arch)
        if found is None:
            raise Unresolved(f"the code raises KeyError: no timm model registered as {arch!r}", node)
        module, current = found
        if current is None:
            return self.follow(Q(f"{module}.{arch}", module), node)
        current_name, _, tag = current.partition(".")
        factory = self.follow(Q(f"{module}.{current_name}", module), node) if current_name else None
        shim = self.lookup("_deprecated_model_shim", func.scope, node)
        return self.call(shim, [arch, factory, tag], {}, node)

    def _timm_get_pretrained_cfg(self, func: Function, args: list, kwargs: dict, node):
        """The PretrainedCfg registered for 'arch' (its default tag) or 'arch.tag', as
        register_model stores it; None for an architecture without configs, where timm allows it."""
        bound = self._timm_args(func, args, kwargs, node)
        name = bound["model_name"]
        arch, _, tag = name.partition(".")
        found = self._timm_index(node).get(arch)
        cfgs = self._timm_cfgs(found[0], arch, node) if found and found[1] is None else {}
        if not cfgs:
            if bound["allow_unregistered"]:
                return None
            raise Unresolved(f"the code raises RuntimeError: Model architecture ({arch}) has no pretrained cfg "
                             "registered.", node)
        tags = default_tags([(written, self._timm_weights(v)) for written, v in cfgs.items()])
        values = {written.strip("*"): v for written, v in cfgs.items()}
        tag = tag if "." in name else tags[0]
        if tag not in values or (not tag and "." in name):
            raise Unresolved(f"the code raises RuntimeError: Invalid pretrained tag ({tag}) for {arch}.", node)
        return self._timm_pretrained_cfg(values[tag], arch, tag, node)

    def _timm_cfgs(self, module: str, arch: str, node) -> dict:
        """tag as written -> the evaluated entry, for one architecture of a model file's table."""
        path = self.resolver.source(module)
        scope = self.resolver.module(module).scope
        entries, later = cfg_table(path)
        if arch not in entries and later:  # the file makes entries in code: run it on the whole table
            return self._timm_built_cfgs(entries, later, scope, arch, node)
        return {tag: self.eval(_expression(text, node), scope) for _, tag, text in entries.get(arch, ())}

    def _timm_built_cfgs(self, entries: dict, later: list, scope: Scope, arch: str, node) -> dict:
        table = Scope({"default_cfgs": {key: self.eval(_expression(text, node), scope)
                                        for rows in entries.values() for key, _, text in rows}}, scope)
        for text in later:
            self.run_stmt(cst.parse_module(text).body[0], table)
        return {key.partition(".")[2]: value for key, value in table.vars["default_cfgs"].items()
                if key.partition(".")[0] == arch}

    @staticmethod
    def _timm_weights(cfg) -> bool:
        """PretrainedCfg.has_weights: a url, a file or a Hub id."""
        values = cfg.attrs if isinstance(cfg, Instance) else cfg if isinstance(cfg, dict) else {}
        return bool(values.get("url") or values.get("file") or values.get("hf_hub_id"))

    def _timm_pretrained_cfg(self, cfg, arch: str, tag: str, node) -> Instance:
        cls = self.follow(Q("timm.models._pretrained.PretrainedCfg", "timm.models._pretrained"), node)
        if isinstance(cfg, dict):
            cfg = self.call(cls, [], dict(cfg), node)
        if not isinstance(cfg, Instance):
            raise Unresolved(f"timm's pretrained config for {arch}.{tag} is not a dict gpumem can read", node)
        attrs = dict(cfg.attrs, architecture=arch, tag=tag or None)
        if attrs.get("hf_hub_id") == "timm/":
            attrs["hf_hub_id"] = "timm/" + ".".join(p for p in (arch, tag) if p)
        return Instance(cfg.cls, attrs)

    def _timm_create_block(self, func: Function, args: list, kwargs: dict, node):
        """byobnet's create_block, its table first given the block types other files register
        into it when timm is imported (MobileViT's), then run as written."""
        table = self.lookup("_block_registry", func.scope, node)
        kind = self._timm_args(func, args, kwargs, node)["block"]
        found = _scan(self._timm_index_folder(node))[1].get(kind) if isinstance(kind, str) else None
        if isinstance(table, dict) and found is not None and kind not in table:
            table[kind] = self.follow(Q(f"{found[0]}.{found[1]}", found[0]), node)
        return self.call_function(func, args, kwargs, node, as_written=True)

    def _timm_load_pretrained(self, func: Function, args: list, kwargs: dict, node) -> None:
        """Loading weights copies values into the parameters the model built (or raises): no size changes."""
        return None

    def _timm_load_model_config_from_hf(self, func: Function, args: list, kwargs: dict, node):
        model_id = self._timm_args(func, args, kwargs, node)["model_id"]
        raise Unresolved(f"timm reads the model's config.json from the Hugging Face Hub repo {model_id}, a file "
                         "gpumem does not read: create the model by its timm name and arguments instead", node)

    def _timm_load_model_config_from_path(self, func: Function, args: list, kwargs: dict, node):
        path = self._timm_args(func, args, kwargs, node)["model_path"]
        raise Unresolved(f"timm reads the model's config from {path}/config.json, a file gpumem does not read: "
                         "create the model by its timm name and arguments instead", node)


def _expression(text: str, node) -> cst.BaseExpression:
    try:
        return cst.parse_expression(text)
    except cst.ParserSyntaxError as exc:
        raise Unresolved(f"libcst cannot parse timm's pretrained config {text[:40]!r}: {exc.message}", node) from None


# function name -> the module whose function of that name gpumem answers itself
REPLACED = {"is_model": REGISTRY, "model_entrypoint": REGISTRY, "get_pretrained_cfg": REGISTRY,
            "load_pretrained": "timm.models._builder", "load_model_config_from_hf": "timm.models._hub",
            "load_model_config_from_path": "timm.models._hub", "create_block": "timm.models.byobnet"}
