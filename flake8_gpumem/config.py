"""Settings: what to analyse a model with, from every source that can say it.

Each source (command line, inline comment, per-model table, the file's own
example input, [tool.gpumem] defaults) gives a partial Settings; `merge` takes
the strongest value of each field.

[tool.gpumem] and its per-model tables come from the nearest pyproject.toml
above the linted file (`find_pyproject`, `load_project`, `per_model_for`).
OPTIONS says each setting once for both front ends: `gpumem report` flags and
flake8's --gpumem-* options.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import NamedTuple

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python < 3.11 only
    import tomli as tomllib

DTYPES = ("float32", "float16", "bfloat16", "amp-fp16", "amp-bf16")
INPUT_DTYPES = ("float32", "float16", "bfloat16", "int64", "int32")
OPTIMIZERS = ("sgd", "sgd-momentum", "adam", "adamw", "rmsprop", "adagrad")
LOSSES = ("cross_entropy", "mse", "sum")
DEVICES = ("cuda", "cpu")
STRATEGIES = ("single", "ddp", "fsdp")
POLICY_DTYPES = ("float32", "bfloat16", "float16")  # FSDP2's MixedPrecisionPolicy
OFFLOAD = ("pinned", "pageable", "off")  # FSDP2's CPUOffloadPolicy(pin_memory=True), (pin_memory=False), none

# Memory each card makes available, in bytes, as its vendor states it.
GIB = 1024 ** 3
GPUS = {
    "T4": 16 * GIB, "P100": 16 * GIB, "V100-16GB": 16 * GIB, "V100-32GB": 32 * GIB, "V100": 16 * GIB,
    "A10G": 24 * GIB, "A10": 24 * GIB, "L4": 24 * GIB, "L40S": 48 * GIB, "A100-40GB": 40 * GIB,
    "A100-80GB": 80 * GIB, "H100-80GB": 80 * GIB, "H100": 80 * GIB, "H200": 141 * GIB,
    "RTX-2080TI": 11 * GIB, "RTX-3060": 12 * GIB, "RTX-3070": 8 * GIB, "RTX-3080": 10 * GIB,
    "RTX-3090": 24 * GIB, "RTX-4060": 8 * GIB, "RTX-4070": 12 * GIB, "RTX-4080": 16 * GIB,
    "RTX-4090": 24 * GIB, "RTX-5090": 32 * GIB,
}
UNITS = {"": 1, "b": 1, "kb": 10 ** 3, "mb": 10 ** 6, "gb": 10 ** 9, "tb": 10 ** 12,
         "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}


class ConfigError(ValueError):
    """A setting that cannot be used; the message names where, which key and what value."""


@dataclass(frozen=True)
class Settings:
    budget: int | None = None
    batch_size: int | None = None
    input_shape: tuple | None = None  # one shape, or a tuple of entries: a shape per positional input, Named by keyword
    dtype: str | None = None
    input_dtype: str | tuple | None = None  # one for all inputs, or a tuple: one per input, or Named
    batch_dim: int | tuple | None = None  # where the batch goes in each input: one for all, one per input, or Named
    optimizer: str | None = None
    loss: str | None = None  # applied to the first output when forward returns no 0-d tensor
    checkpoint: tuple | None = None  # what-if: class names whose every call runs checkpointed
    checkpoint_every: int | None = None  # ... only the 1st, (n+1)th, ... call of them (torchtitan's ac_freq)
    accumulate: int | None = None  # micro-batches of batch_size per optimizer step
    strategy: str | None = None  # single | ddp | fsdp: the figures are per GPU (the largest rank)
    world_size: int | None = None  # GPUs under ddp/fsdp
    shard_unit: tuple | None = None  # fsdp: class names wrapped with fully_shard (the root always is)
    param_dtype: str | None = None  # fsdp: MixedPrecisionPolicy(param_dtype=): gathered weights and compute
    reduce_dtype: str | None = None  # fsdp: MixedPrecisionPolicy(reduce_dtype=): the gradients' reduce-scatter
    offload: str | None = None  # fsdp: CPUOffloadPolicy, one of OFFLOAD: shards, gradients, optimizer on the host
    reshard_after_forward: bool | int | None = None  # fsdp, every shard unit: None is the file's, else True
    max_gpus: int | None = None  # GPM100's advice: the most GPUs a set-up it proposes may use
    warn_fraction: float | None = None
    reserve: int | None = None
    device: str | None = None  # whose kernels: cuda (default) or cpu
    hf_config: str | None = None  # the config.json (or its folder) of a transformers or diffusers from_pretrained model
    args: dict = field(default_factory=dict)
    forward_args: dict = field(default_factory=dict)  # forward's non-tensor arguments, by name: literal values


DEFAULTS = Settings(batch_size=1, batch_dim=0, dtype="float32", optimizer="adam", warn_fraction=0.9, reserve=0,
                    device="cuda", loss="cross_entropy", checkpoint=(), accumulate=1, strategy="single", world_size=1,
                    shard_unit=(), max_gpus=1024, offload="off", checkpoint_every=1)


class Named(NamedTuple):
    """An input given by keyword (`labels=`), or a per-input setting for the input of that name."""

    name: str
    value: object


class ForwardInput(NamedTuple):
    """One tensor forward takes, as the step builds it: by position (name None) or by keyword."""

    name: str | None
    shape: tuple  # per sample
    dtype: str
    batch_dim: int  # where the batch goes: 0 is batch first, 1 sequence first (nn.LSTM's default)

    def batched(self, batch: int) -> tuple:
        return self.shape[:self.batch_dim] + (batch,) + self.shape[self.batch_dim:]


def _entries(s: Settings) -> list:
    shape = s.input_shape
    return [shape] if not shape or not isinstance(shape[0], tuple) else list(shape)


def input_shapes(s: Settings) -> list[tuple]:
    """The per-sample shape of each forward input, positional ones first, then those given by keyword."""
    return [e.value if isinstance(e, Named) else e for e in _entries(s)]


def input_names(s: Settings) -> list:
    """Each input's keyword, None for one given by position."""
    return [e.name if isinstance(e, Named) else None for e in _entries(s)]


def per_input(given, names: list, default, key: str, what: str) -> list:
    """One value per input from a setting given once for all, once per input in order, or by name
    (the inputs it does not name take `default`)."""
    n = len(names)
    if given is None or not isinstance(given, tuple):
        return [default if given is None else given] * n
    named = {g.name: g.value for g in given if isinstance(g, Named)}
    if not named:
        if len(given) != n:
            raise ConfigError(f"{key} = {_shown(given)}: {len(given)} {what} for {n} inputs; give one for all, one "
                              "per input, or NAME=VALUE for the inputs given by keyword")
        return list(given)
    if len(named) != len(given):
        raise ConfigError(f"{key} = {_shown(given)}: give every value by position or every one by name")
    unknown = sorted(set(named) - set(names))
    if unknown:
        known = ", ".join(x for x in names if x) or "none"
        raise ConfigError(f"{key} = {_shown(given)}: no input is given by the name {unknown[0]!r} "
                          f"(inputs given by keyword: {known}; input_shape may come from elsewhere: the command "
                          "line, the class's comment, pyproject.toml)")
    return [named.get(name, default) if name else default for name in names]


def _shown(value) -> str:
    """A setting as the user wrote it: NAME=VALUE for a named entry."""
    if isinstance(value, tuple) and any(isinstance(v, Named) for v in value):
        return repr([f"{v.name}={v.value}" if isinstance(v, Named) else v for v in value])
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def input_dtypes(s: Settings, model_dtype: str) -> list[str]:
    """The dtype of each forward input: one given once applies to all; floats default to the model's."""
    return per_input(s.input_dtype, input_names(s), model_dtype, "input_dtype", "dtypes")


def forward_inputs(s: Settings, model_dtype: str) -> list[ForwardInput]:
    """What the step passes forward: each input's keyword, per-sample shape, dtype and batch position."""
    names, shapes = input_names(s), input_shapes(s)
    # a per-sample scalar's batch is its one dimension, whatever batch_dim says for the others
    dims = [d if shape else 0 for d, shape in zip(per_input(s.batch_dim, names, 0, "batch_dim", "dimensions"), shapes)]
    for shape, dim in zip(shapes, dims):
        if dim > len(shape):
            raise ConfigError(f"batch_dim = {dim}: an input of per-sample shape {list(shape)} has no dimension "
                              f"{dim} to put the batch before (0 to {len(shape)})")
    return [ForwardInput(*x) for x in zip(names, shapes, input_dtypes(s, model_dtype), dims)]


def merge(*layers: Settings) -> Settings:
    """Strongest first: the first layer that sets a field wins; constructor and forward args combine."""
    values = {}
    for f in fields(Settings):
        if f.name in ("args", "forward_args"):
            combined = {}
            for layer in reversed(layers):
                combined.update(getattr(layer, f.name))
            values[f.name] = combined
        else:
            values[f.name] = next((getattr(s, f.name) for s in layers if getattr(s, f.name) is not None), None)
    return Settings(**values)


def parse_size(value, key: str = "budget") -> int:
    """Bytes from an int, "16GB", "12GiB", "800MiB" or a GPU name like "T4"."""
    if isinstance(value, bool):
        raise ConfigError(f"{key} = {value!r}: expected bytes or a size like \"12GiB\"")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{key} = {value}: must not be negative")
        return value
    if isinstance(value, str):
        gpu = value.strip().upper().replace(" ", "-").replace("_", "-")
        if gpu in GPUS:
            return GPUS[gpu]
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b|b)?\s*", value, re.IGNORECASE)
        if m:
            size = float(m.group(1)) * UNITS[(m.group(2) or "").lower()]
            if size >= 2 ** 63:
                raise ConfigError(f"{key} = {value!r}: more memory than any GPU has")
            return int(size)
    raise ConfigError(f"{key} = {value!r}: expected bytes, a size like \"12GiB\"/\"16GB\"/\"800MiB\", "
                      f"or a GPU name ({', '.join(sorted(GPUS))})")


NAMED = re.compile(r"\s*([A-Za-z_]\w*)\s*=(.*)", re.DOTALL)


def parse_shape(value, key: str = "input_shape") -> tuple:
    """(3, 50, 50), [3, 50, 50] or "3,50,50"; the empty shape of a per-sample scalar, [] or ""; several
    inputs as a list of those, [[3, 64, 64], []], or one string with `;` between them, "3,64,64;". An
    input forward takes by keyword is named: "labels=", {labels = []} (after the positional ones)."""
    try:
        entries = _shape_entries(value)
    except ConfigError as exc:
        if isinstance(value, (list, tuple, dict)) or (isinstance(value, str) and ";" in value):
            raise ConfigError(f"{key} = {value!r}: expected sizes like [3, 50, 50], [] for a per-sample scalar, "
                              "or one list per forward input like [[256], [256]]") from None
        raise ConfigError(f"{key} = {value!r}: {exc}") from None
    names = [e.name for e in entries if isinstance(e, Named)]
    if any(isinstance(a, Named) and not isinstance(b, Named) for a, b in zip(entries, entries[1:])):
        raise ConfigError(f"{key} = {value!r}: an input given by position after one given by name")
    if len(set(names)) != len(names):
        raise ConfigError(f"{key} = {value!r}: an input named twice")
    return entries[0] if len(entries) == 1 and not names else tuple(entries)


def _shape_entries(value) -> list:
    """The inputs a shape setting gives: a shape each, Named for those given by keyword."""
    if isinstance(value, str) and ";" in value:
        return [e for part in value.split(";") for e in _shape_entries(part)]
    if isinstance(value, dict):
        return [Named(_name(k), _sizes(v)) for k, v in value.items()]
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple, str, dict)) for v in value):
        return [e for v in value for e in _shape_entries(v)]
    if isinstance(value, str):
        named = NAMED.fullmatch(value)
        if named:
            return [Named(named.group(1), _sizes(named.group(2)))]
    return [_sizes(value)]


def _name(name) -> str:
    if not (isinstance(name, str) and name.isidentifier()):
        raise ConfigError(f"{name!r} is not the name of an argument of forward")
    return name


def _sizes(value) -> tuple:
    """One per-sample shape: a list of positive sizes, or "3,50,50"; empty for a per-sample scalar."""
    if isinstance(value, str):
        parts = [p for p in re.split(r"[\s,x()\[\]]+", value.strip()) if p]
        try:
            value = [int(p) for p in parts]
        except ValueError:
            raise ConfigError("expected sizes like 3,50,50") from None
    if not isinstance(value, (list, tuple)) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise ConfigError("expected a list of positive sizes like [3, 50, 50], or [] for a per-sample scalar")
    return tuple(value)


def _positive_int(value, key: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{key} = {value!r}: expected a positive integer")
    return value


def _reshard(value, key: str) -> bool | int:
    """fully_shard's reshard_after_forward: true, false, or the number of ranks to reshard to."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    if isinstance(value, bool):
        return value
    try:
        return _positive_int(value, key)
    except ConfigError:
        raise ConfigError(f"{key} = {_short(value)}: expected true, false or a number of ranks to reshard "
                          "to after forward") from None


def _choice(choices):
    def check(value, key):
        if not isinstance(value, str) or value.lower() not in choices:
            raise ConfigError(f"{key} = {value!r}: expected one of {', '.join(choices)}")
        return value.lower()
    return check


def _offload(value, key: str) -> str:
    """true (or "pinned"): CPUOffloadPolicy(); "pageable": with pin_memory=False; false: none."""
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if isinstance(value, bool):
        return "pinned" if value else "off"
    return _choice(OFFLOAD)(value, key)


def _fraction(value, key: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = -1.0
    if isinstance(value, bool) or not 0 < f <= 1:
        raise ConfigError(f"{key} = {value!r}: expected a fraction between 0 and 1")
    return f


def _class_names(value, key: str) -> tuple:
    """A class name, several separated by commas, or a list of them."""
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n.strip().isidentifier() for n in names):
        raise ConfigError(f"{key} = {value!r}: expected a class name or a list of them, like [\"Block\"]")
    return tuple(n.strip() for n in names)


def _args(value, key: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{key} = {value!r}: expected a table of arguments by name")
    return dict(value)


def _per_input(one, what: str):
    """A setting given once for all inputs, once per input (a list, or `;` between them), or for the
    inputs given by keyword by their names ("labels=int64", {labels = "int64"})."""

    def parse(value, key):
        entries = value if isinstance(value, (list, tuple)) else [value]
        if isinstance(value, dict):
            entries = [Named(k, v) for k, v in value.items()]
        entries = [v for e in entries for v in (e.split(";") if isinstance(e, str) else [e])
                   if not isinstance(v, str) or v.strip()]
        if not entries:
            raise ConfigError(f"{key} = {_short(value)}: expected {what} or a list of them")
        parsed = []
        for entry in entries:
            named = NAMED.fullmatch(entry) if isinstance(entry, str) else None
            if named:
                entry = Named(named.group(1), named.group(2).strip())
            if isinstance(entry, Named):
                try:
                    parsed.append(Named(_name(entry.name), one(entry.value, key)))
                except ConfigError as exc:
                    raise ConfigError(f"{exc} (of the input named {entry.name!r})") from None
            else:
                parsed.append(one(entry, key))
        if any(isinstance(p, Named) for p in parsed):
            return tuple(parsed)
        return parsed[0] if len(set(parsed)) == 1 else tuple(parsed)

    return parse


def _dim(value, key: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"{key} = {value!r}: expected a dimension, 0 (batch first) or more")
    return value


def _text(value, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{key} = {_short(value)}: expected a path")
    return value


PARSERS = {
    "budget": parse_size,
    "batch_size": _positive_int,
    "input_shape": parse_shape,
    "dtype": _choice(DTYPES),
    "input_dtype": _per_input(_choice(INPUT_DTYPES), "a dtype"),
    "batch_dim": _per_input(_dim, "a dimension"),
    "optimizer": _choice(OPTIMIZERS),
    "loss": _choice(LOSSES),
    "checkpoint": _class_names,
    "checkpoint_every": _positive_int,
    "accumulate": _positive_int,
    "strategy": _choice(STRATEGIES),
    "world_size": _positive_int,
    "shard_unit": _class_names,
    "param_dtype": _choice(POLICY_DTYPES),
    "reduce_dtype": _choice(POLICY_DTYPES),
    "offload": _offload,
    "reshard_after_forward": _reshard,
    "max_gpus": _positive_int,
    "warn_fraction": _fraction,
    "reserve": lambda v, k: parse_size(v, k),
    "device": _choice(DEVICES),
    "hf_config": _text,
    "args": _args,
    "forward_args": _args,
}


def settings_from(values: dict, where: str) -> Settings:
    """Settings from raw key/values; every problem names `where`, the key and the value."""
    parsed = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in PARSERS:
            raise ConfigError(f"{where}: unknown key {key!r} = {_short(value)} (known: {', '.join(PARSERS)})")
        try:
            parsed[name] = PARSERS[name](value, key)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return replace(Settings(), **parsed)


def _short(value, limit: int = 80) -> str:
    """A value for a one-line message: its repr, newlines escaped, cut to `limit` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


# ---------------------------------------------------------------- the settings as options

GROUPS = ("model and inputs", "training step", "set-up", "budget", "output")  # `gpumem report --help`, in order


@dataclass(frozen=True)
class Option:
    """A setting as a `gpumem report --NAME` flag and a flake8 `--gpumem-NAME` option.

    Both front ends read one table (OPTIONS), so a setting's help and default are written once;
    the default is said from DEFAULTS, after `first`: what the file states that comes before it.
    """

    key: str  # the Settings field and [tool.gpumem] key
    group: str  # one of GROUPS
    help: str
    metavar: str
    choices: tuple = ()
    first: str = ""
    several: str = ""  # what several values mean: the CLI repeats the flag, flake8 joins them with `separator`
    separator: str = ""
    flag: bool = True  # False: a [tool.gpumem] key and flake8 option, no `gpumem report` flag
    bare: str = ""  # what the `gpumem report` flag means given without a value

    @property
    def name(self) -> str:
        return self.key.replace("_", "-")

    def default(self) -> str:
        value = getattr(DEFAULTS, self.key)
        said = "none" if value is None or value == () else str(value)
        return f"{self.first}, else {said}" if self.first and value is not None else self.first or said

    def describe(self, repeated: bool) -> str:
        """The help text; `repeated`: several values repeat the flag, else they share one value."""
        parts = [self.help]
        if self.choices:
            parts.append(f"one of {', '.join(self.choices)}")
        if self.several:
            parts.append(f"{self.several}: repeat the flag" if repeated
                         else f"{self.several}, separated by '{self.separator}'")
        return f"{'; '.join(parts)} (default: {self.default()})"


OPTIONS = {o.key: o for o in (
    Option("input_shape", "model and inputs", "per-sample input shape, e.g. 3,50,50; '' for a per-sample scalar "
           "(a timestep, a label); NAME=SHAPE passes it by keyword, e.g. labels=", "SHAPE",
           first="the file's own example input", several="one per tensor argument of forward, positional ones first",
           separator=";"),
    Option("input_dtype", "model and inputs", "dtype of the input batch (int64 for token ids, labels, timesteps); "
           "NAME=DTYPE for the input of that name", "DTYPE", INPUT_DTYPES,
           first="the model's parameter dtype", several="one for all inputs or one per input", separator=";"),
    Option("batch_size", "model and inputs", "samples per training step", "N",
           first="the batch of the file's own example input"),
    Option("batch_dim", "model and inputs", "where the batch goes in the input's shape: 0 batch first, 1 sequence "
           "first (nn.LSTM without batch_first); NAME=DIM for the input of that name", "DIM",
           several="one for all inputs or one per input", separator=";"),
    Option("hf_config", "model and inputs", "a transformers or diffusers model's config.json, or its folder, for "
           "`from_pretrained(NAME)` where NAME is neither a local folder nor in the Hugging Face cache", "PATH"),
    Option("dtype", "training step", "precision of weights and compute (amp-*: float32 weights, autocast)", "DTYPE",
           DTYPES),
    Option("optimizer", "training step", "whose state is counted", "NAME", OPTIMIZERS,
           first="the file's torch.optim call"),
    Option("loss", "training step", "applied to the first output unless forward returns the loss itself", "NAME",
           LOSSES),
    Option("device", "training step", "whose kernels to model", "NAME", DEVICES),
    Option("checkpoint", "set-up", "what if every call of this module class ran under torch.utils.checkpoint",
           "CLASS", several="several classes", separator=","),
    Option("checkpoint_every", "set-up", "with checkpoint: only the 1st, (N+1)th, (2N+1)th, ... call of those "
           "classes, in the order forward runs them (torchtitan's selective layer checkpointing, ac_freq)", "N"),
    Option("accumulate", "set-up", "micro-batches of the batch size per optimizer step", "K"),
    Option("strategy", "set-up", "figures and budget are per GPU (fsdp: FSDP2 fully_shard)", "NAME", STRATEGIES),
    Option("world_size", "set-up", "GPUs under ddp or fsdp", "N"),
    Option("shard_unit", "set-up", "fsdp: a module class wrapped with fully_shard (the root always is)", "CLASS",
           several="several classes", separator=","),
    Option("param_dtype", "set-up", "fsdp: MixedPrecisionPolicy(param_dtype=...) in place of autocast: parameters "
           "gathered and computed in this dtype; the sharded weights, gradients and optimizer state stay --dtype",
           "DTYPE", POLICY_DTYPES),
    Option("reduce_dtype", "set-up", "fsdp: MixedPrecisionPolicy(reduce_dtype=...): gradients reduce-scattered in "
           "this dtype (none: param_dtype)", "DTYPE", POLICY_DTYPES),
    Option("offload", "set-up", "fsdp: CPUOffloadPolicy: the sharded weights, their gradients and the optimizer "
           "state in host memory (reported beside the GPU's), the optimizer stepping on the CPU; true or pinned: "
           "pin_memory=True, pageable: pin_memory=False; the flag alone: pinned", "MODE", OFFLOAD,
           first="the offload_policy the file gives fully_shard", bare="pinned"),
    Option("reshard_after_forward", "set-up", "fsdp: fully_shard(reshard_after_forward=...) of every shard unit "
           "(the root keeps FSDP2's own): true frees a unit's gathered parameters after its forward, false keeps "
           "them to its backward, N keeps a 1/N shard (N ranks divide the world size)", "true|false|N",
           first="the file's fully_shard calls, else true"),
    Option("max_gpus", "set-up", "GPM100's advice: the most GPUs a set-up it proposes may use (powers of two)", "N"),
    Option("budget", "budget", 'memory of one GPU: bytes, "12GiB", "16GB" or a GPU name (T4, A100-40GB, RTX-4090, '
           '...)', "SIZE"),
    Option("reserve", "budget", "memory set aside for the CUDA context etc., counted against the budget", "SIZE"),
    Option("warn_fraction", "budget", "GPM101 when the footprint is above this fraction of the budget", "FRACTION",
           flag=False),
)}


# ---------------------------------------------------------------- pyproject.toml

PYPROJECT = "pyproject.toml"


@dataclass(frozen=True)
class ProjectConfig:
    """[tool.gpumem] of one pyproject.toml: project defaults and per-model tables.

    `models` is keyed exactly as the tables are written, "models/cnn.py::Net",
    the path relative to the directory of `path`.
    """

    path: Path | None
    settings: Settings = field(default_factory=Settings)
    models: dict = field(default_factory=dict)  # "path/to/file.py::Class" -> Settings


NO_PROJECT = ProjectConfig(None)


def find_pyproject(start) -> Path | None:
    """The nearest pyproject.toml in `start` (a file's directory, or a directory) or any directory above it."""
    here = Path(os.path.abspath(start))
    if not here.is_dir():
        here = here.parent
    for directory in (here, *here.parents):
        candidate = directory / PYPROJECT
        if candidate.is_file():
            return candidate
    return None


# resolved path -> ((mtime_ns, size), ProjectConfig or the message of the ConfigError it raises)
_CACHE: dict = {}


def load_project(path) -> ProjectConfig:
    """[tool.gpumem] of the pyproject.toml at `path`; raises ConfigError (one line naming file, key, value).

    Cached per resolved path and modification stamp: flake8 runs the plugin once per file (and in
    every -j worker), and an unchanged file is parsed once and gives the very same object.
    """
    path = Path(os.path.abspath(path))
    try:
        key = str(path.resolve())
        st = os.stat(key)
    except (OSError, RuntimeError) as exc:
        raise ConfigError(f"{path}: cannot read: {_one_line(exc)}") from None
    stamp = (st.st_mtime_ns, st.st_size)
    cached = _CACHE.get(key)
    if cached is None or cached[0] != stamp:
        try:
            cached = (stamp, _parse_project(path))
        except ConfigError as exc:
            cached = (stamp, str(exc))
        _CACHE[key] = cached
    if isinstance(cached[1], str):
        raise ConfigError(cached[1])
    return cached[1]


def project_for(start) -> ProjectConfig:
    """The project configuration governing `start` (a file or a directory); NO_PROJECT when there is none."""
    found = find_pyproject(start)
    return NO_PROJECT if found is None else load_project(found)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _parse_project(path: Path) -> ProjectConfig:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {_one_line(exc)}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: not UTF-8 ({_one_line(exc)})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {_one_line(exc)}") from None
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigError(f"{path}: tool = {_short(tool)}: expected a table")
    table = tool.get("gpumem")
    if table is None:
        return ProjectConfig(path)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: tool.gpumem = {_short(table)}: expected a table [tool.gpumem]")
    table = dict(table)
    raw_models = table.pop("models", {})
    settings = _anchored(settings_from(table, f"{path} [tool.gpumem]"), path.parent)
    if not isinstance(raw_models, dict):
        raise ConfigError(f"{path} [tool.gpumem]: models = {_short(raw_models)}: expected tables "
                          f'like [tool.gpumem.models."models/cnn.py::Net"]')
    models = {}
    for name, values in raw_models.items():
        where = f'{path} [tool.gpumem.models."{name}"]'
        file_part, sep, cls = name.rpartition("::")
        if not sep or not file_part.strip() or not cls.isidentifier():
            raise ConfigError(f"{path} [tool.gpumem.models]: {name!r} = {_short(values)}: expected a key "
                              f'like "models/cnn.py::Net" (file path relative to {PYPROJECT}, "::", model name)')
        if not isinstance(values, dict):
            raise ConfigError(f"{path} [tool.gpumem.models]: {name!r} = {_short(values)}: expected a table "
                              f'[tool.gpumem.models."{name}"] of settings')
        models[name] = _anchored(settings_from(values, where), path.parent)
    return ProjectConfig(path, settings, models)


def _anchored(s: Settings, folder: Path) -> Settings:
    """A config path written in pyproject.toml is relative to its folder, as the model tables' files are."""
    return s if s.hf_config is None else replace(s, hf_config=str(folder / os.path.expanduser(s.hf_config)))


def _same_file(a: str, b: str) -> bool:
    if os.path.normcase(os.path.normpath(a)) == os.path.normcase(os.path.normpath(b)):
        return True
    try:
        return os.path.normcase(os.path.realpath(a)) == os.path.normcase(os.path.realpath(b))
    except (OSError, ValueError):
        return False


def per_model_for(project: ProjectConfig, filename: str) -> dict:
    """{model name: Settings} for the per-model tables whose path names `filename`.

    A table "PATH::Class" applies when PATH, relative to the directory of the pyproject.toml
    (either separator, "./" allowed; an absolute PATH as it is), is the same file as `filename`
    (relative to the working directory).
    """
    if project.path is None or not project.models or not filename:
        return {}
    root = os.path.dirname(os.path.abspath(project.path))
    target = os.path.abspath(filename)
    found = {}
    for name, settings in project.models.items():
        file_part, _, cls = name.rpartition("::")
        file_part = file_part.strip().replace("\\", "/")
        candidate = file_part if os.path.isabs(file_part) else os.path.join(root, *file_part.split("/"))
        if _same_file(candidate, target):
            # two spellings of the same file: the first table written wins, field by field
            found[cls] = merge(found[cls], settings) if cls in found else settings
    return found
