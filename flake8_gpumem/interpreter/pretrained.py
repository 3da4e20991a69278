"""transformers' and diffusers' `from_pretrained`, answered from a config.json on this machine, never
the network.

The sizes of a pretrained model are its config's: `X.from_pretrained(name)` builds `X(config)`
from the `config.json` of a local folder, of the Hugging Face cache (as huggingface_hub lays it
out: `models--{org}--{name}/snapshots/<revision>/`, `refs/main` naming the revision), or of the
file the `hf_config` setting names. Reading the JSON runs no code; the weights are not read (they
change no size). The dtype the weights load in is the step's: `dtype=` (or `torch_dtype=`) as the
file states it (source.py reads it), else `"auto"`, the config's own dtype, which must agree with it.
diffusers' `ModelMixin.from_pretrained(name)` is `cls.from_config(config)` of the same file, its
weights in float32 unless `dtype=` (`torch_dtype=`) says (it makes the model in PyTorch's default
dtype and loads the weights into it, a float16 file too); `load_config(name)` (which
`from_config(name)` calls) gives the file's values.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import libcst as cst

from ..values import TORCH_DTYPES, Unresolved
from .objects import Class, Q

AUTO = "transformers.models.auto."
# qualified name of the method -> what it loads
PRETRAINED = {"transformers.configuration_utils.PreTrainedConfig.from_pretrained": "config",
              AUTO + "configuration_auto.AutoConfig.from_pretrained": "auto config",
              "transformers.modeling_utils.PreTrainedModel.from_pretrained": "model",
              AUTO + "auto_factory._BaseAutoModelClass.from_pretrained": "auto model",
              "diffusers.models.modeling_utils.ModelMixin.from_pretrained": "diffusers model",
              "diffusers.configuration_utils.ConfigMixin.load_config": "diffusers config"}
AUTO_CONFIG = AUTO + "configuration_auto.AutoConfig"
# from_pretrained's keywords on where and how to load, none of them the config's
LOADING = frozenset({"cache_dir", "force_download", "local_files_only", "token", "revision", "subfolder",
                     "trust_remote_code", "device_map", "max_memory", "low_cpu_mem_usage", "use_safetensors",
                     "weights_only", "variant", "proxies", "resume_download", "code_revision", "dtype",
                     "torch_dtype", "return_unused_kwargs", "output_loading_info", "state_dict", "offload_folder",
                     "offload_buffers", "key_mapping", "adapter_kwargs", "adapter_name"})


def hub_cache() -> Path:
    """Where huggingface_hub keeps downloaded repositories: HF_HUB_CACHE, else HF_HOME/hub, else
    the user's cache folder's huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expanduser(os.environ["HF_HUB_CACHE"]))
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(os.path.expanduser(home)) / "hub"


def config_file(name: str, given: str | None, revision: str | None = None, subfolder: str = "") -> Path | None:
    """The config.json for `name`: the `given` file or folder, else the local folder `name`, else the
    revision (main unless stated) of repository `name` in the Hugging Face cache; None if none holds one."""
    if given:
        place = Path(os.path.expanduser(given))
        return place / "config.json" if place.is_dir() else place if place.is_file() else None
    local = Path(name) / subfolder / "config.json"
    if local.is_file():
        return local
    repo = hub_cache() / f"models--{name.replace('/', '--')}"
    ref = repo / "refs" / (revision or "main")
    commit = ref.read_text(encoding="utf-8").strip() if ref.is_file() else revision
    cached = repo / "snapshots" / commit / subfolder / "config.json" if commit else None
    return cached if cached is not None and cached.is_file() else None


def read_config(name, given: str | None, options: dict, node) -> dict:
    """The config.json's values, or Unresolved saying where gpumem looked and how to give it one."""
    if not isinstance(name, str):
        raise Unresolved(f"from_pretrained({name!r}): gpumem needs the model's name or folder as a string", node)
    try:
        path = config_file(name, given, options.get("revision"), options.get("subfolder") or "")
    except (OSError, ValueError, TypeError) as exc:  # an unreadable cache entry, a name no path can be
        raise Unresolved(f"from_pretrained({name!r}): cannot look for its config.json: {exc}", node) from None
    if path is None:
        where = (f"hf_config = {given!r} holds none" if given else
                 f"neither a local folder nor in the Hugging Face cache ({hub_cache()})")
        raise Unresolved(f"from_pretrained({name!r}): the model's config.json is {where}: gpumem never downloads; "
                         "give it with hf_config = \"path/to/config.json\" (or its folder) in the model's "
                         "[tool.gpumem.models] table, or --hf-config PATH", node)
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise Unresolved(f"from_pretrained({name!r}): cannot read {path}: {exc}", node) from None
    if not isinstance(values, dict):
        raise Unresolved(f"from_pretrained({name!r}): {path} holds no JSON object", node)
    return values


class Pretrained:
    """Calls of transformers' from_pretrained methods (classmethods: the class comes first)."""

    hf_config: str | None = None  # the config.json (or folder) the settings give
    dtype_known = True  # False while only looking names up, before the step's dtype is settled

    def from_pretrained(self, kind: str, args: list, kwargs: dict, node):
        if len(args) < 2:
            raise Unresolved("from_pretrained() without the model's name or folder", node)
        cls, name = args[0], args[1]
        options = {k: v for k, v in kwargs.items() if k in LOADING}
        rest = {k: v for k, v in kwargs.items() if k not in LOADING and k != "config"}
        if kind == "diffusers model":
            values = read_config(name, self.hf_config, options, node)
            return self.call(self.getattr(cls, "from_config", node), [values], rest, node)
        if kind == "diffusers config":  # (values, [unused keywords], [commit hash]) as its flags ask
            unused, commit = kwargs.get("return_unused_kwargs"), rest.pop("return_commit_hash", False)
            values = read_config(name, self.hf_config, options, node)
            outputs = (values,) + ((rest,) if unused else ()) + ((None,) if commit else ())
            return outputs if len(outputs) > 1 else values
        if kind in ("config", "auto config"):
            values = {**read_config(name, self.hf_config, options, node), **rest}
            if kind == "config":
                return self.call(cls, [], values, node)
            if "model_type" not in values:
                raise Unresolved(f"AutoConfig.from_pretrained({name!r}): its config.json names no model_type", node)
            for_model = self.getattr(cls, "for_model", node)
            return self.call(for_model, [values.pop("model_type")], values, node)
        config = kwargs.get("config")
        if config is None or isinstance(config, str):
            loader = self.follow(Q(AUTO_CONFIG), node) if kind == "auto model" else self._config_class(cls, node)
            config = self.call(self.getattr(loader, "from_pretrained", node), [config or name],
                               {**{k: v for k, v in options.items() if k in ("revision", "subfolder")}, **rest}, node)
            self._check_dtype(name, config, options, node)
        if kind == "auto model":  # the class its mapping names for the config, as from_pretrained picks it
            pick = self.follow(Q(AUTO + "auto_factory._get_model_class"), node)
            cls = self.call(pick, [config, self.getattr(cls, "_model_mapping", node)], {}, node)
        return self.call(cls, [config, *args[2:]], {}, node)

    def _config_class(self, cls, node):
        """The model class's config class, as PreTrainedModel.__init_subclass__ sets it (not run
        here): a class's own `config_class = X`, else its annotation `config: X`, nearest first."""
        for c in self.mro(cls):
            if not isinstance(c, Class):
                continue
            value = c.body_value("config_class")
            annotated = next((small.annotation.annotation for stmt in c.node.body.body
                              if isinstance(stmt, cst.SimpleStatementLine) for small in stmt.body
                              if isinstance(small, cst.AnnAssign) and small.value is None
                              and isinstance(small.target, cst.Name) and small.target.value == "config"), None)
            found = value if value is not None else annotated
            if found is not None:
                return self.eval(found, c.scope)
        raise Unresolved(f"{cls!r} names no config class (config_class, or a `config:` annotation)", node)

    def _check_dtype(self, name: str, config, options: dict, node) -> None:
        """Without `dtype=` the weights load as `"auto"`: in the config's own dtype, which the step's
        must then be (a cast the file states, or --dtype)."""
        stated = options.get("dtype", options.get("torch_dtype"))
        if stated not in (None, "auto") or not self.dtype_known:
            return
        saved = self.getattr(config, "dtype", node)
        saved = TORCH_DTYPES.get(saved, saved) if isinstance(saved, str) else None
        if saved is not None and saved != self.model_dtype:
            raise Unresolved(f"from_pretrained({name!r}) loads its weights in the config's dtype {saved} "
                             f"(dtype=\"auto\"), not the step's {self.model_dtype}: state dtype=torch.{saved} in "
                             f"the call, or give --dtype", node)
