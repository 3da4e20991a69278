"""Settings: what to analyse a model with, from every source that can say it.

Each source (command line, inline comment, per-model table, the file's own
example input, [tool.gpumem] defaults) gives a partial Settings; `merge` takes
the strongest value of each field.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace

DTYPES = ("float32", "float16", "bfloat16", "amp-fp16", "amp-bf16")
INPUT_DTYPES = ("float32", "float16", "bfloat16", "int64", "int32")
OPTIMIZERS = ("sgd", "sgd-momentum", "adam", "adamw", "rmsprop", "adagrad")
DEVICES = ("cuda", "cpu")

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
    input_shape: tuple | None = None
    dtype: str | None = None
    input_dtype: str | None = None
    optimizer: str | None = None
    warn_fraction: float | None = None
    reserve: int | None = None
    device: str | None = None  # whose kernels: cuda (default) or cpu
    args: dict = field(default_factory=dict)


DEFAULTS = Settings(batch_size=1, dtype="float32", optimizer="adam", warn_fraction=0.9, reserve=0, device="cuda")


def merge(*layers: Settings) -> Settings:
    """Strongest first: the first layer that sets a field wins; constructor args combine."""
    values = {}
    for f in fields(Settings):
        if f.name == "args":
            combined = {}
            for layer in reversed(layers):
                combined.update(layer.args)
            values["args"] = combined
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
            return int(float(m.group(1)) * UNITS[(m.group(2) or "").lower()])
    raise ConfigError(f"{key} = {value!r}: expected bytes, a size like \"12GiB\"/\"16GB\"/\"800MiB\", "
                      f"or a GPU name ({', '.join(sorted(GPUS))})")


def parse_shape(value, key: str = "input_shape") -> tuple:
    """(3, 50, 50), [3, 50, 50] or "3,50,50"."""
    if isinstance(value, str):
        parts = [p for p in re.split(r"[\s,x()\[\]]+", value.strip()) if p]
        try:
            value = [int(p) for p in parts]
        except ValueError:
            raise ConfigError(f"{key} = {value!r}: expected sizes like 3,50,50") from None
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        raise ConfigError(f"{key} = {value!r}: expected a list of positive sizes like [3, 50, 50]")
    return tuple(value)


def _positive_int(value, key: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{key} = {value!r}: expected a positive integer")
    return value


def _choice(choices):
    def check(value, key):
        if not isinstance(value, str) or value.lower() not in choices:
            raise ConfigError(f"{key} = {value!r}: expected one of {', '.join(choices)}")
        return value.lower()
    return check


def _fraction(value, key: str) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        f = -1.0
    if isinstance(value, bool) or not 0 < f <= 1:
        raise ConfigError(f"{key} = {value!r}: expected a fraction between 0 and 1")
    return f


def _args(value, key: str) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{key} = {value!r}: expected a table of constructor arguments")
    return dict(value)


PARSERS = {
    "budget": parse_size,
    "batch_size": _positive_int,
    "input_shape": parse_shape,
    "dtype": _choice(DTYPES),
    "input_dtype": _choice(INPUT_DTYPES),
    "optimizer": _choice(OPTIMIZERS),
    "warn_fraction": _fraction,
    "reserve": lambda v, k: parse_size(v, k),
    "device": _choice(DEVICES),
    "args": _args,
}


def settings_from(values: dict, where: str) -> Settings:
    """Settings from raw key/values; every problem names `where`, the key and the value."""
    parsed = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in PARSERS:
            raise ConfigError(f"{where}: unknown key {key!r} (known: {', '.join(PARSERS)})")
        try:
            parsed[name] = PARSERS[name](value, key)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    return replace(Settings(), **parsed)
