"""flake8_gpumem.config: sizes, shapes, choices, precedence, and the inline `# gpumem:` comment.

Expected values are worked by hand here (powers of two and ten), never read back from the module.
"""
from __future__ import annotations

import re
from dataclasses import replace
import textwrap

import pytest
from sources import ADAPTIVE

from flake8_gpumem import config
from flake8_gpumem.config import (DEFAULTS, ConfigError, ForwardInput, Named, Settings, forward_inputs, merge,
                                  parse_shape, parse_size, settings_from)
from flake8_gpumem.source import inline_settings

GIB = 1024 ** 3
MIB = 1024 ** 2


# ---------------------------------------------------------------- parse_size

@pytest.mark.parametrize("value, expected", [
    (0, 0),
    (1024, 1024),
    (17_179_869_184, 16 * 2 ** 30),
    ("16GB", 16 * 10 ** 9),
    ("16gb", 16 * 10 ** 9),
    ("16 GB", 16 * 10 ** 9),
    ("12GiB", 12 * 2 ** 30),
    ("12gib", 12 * 2 ** 30),
    ("800MiB", 800 * 2 ** 20),
    ("800MB", 800 * 10 ** 6),
    ("1.5GiB", 3 * 2 ** 29),
    ("0.5GiB", 512 * 2 ** 20),
    ("64KiB", 65_536),
    ("2TB", 2 * 10 ** 12),
    ("1TiB", 2 ** 40),
    ("4096", 4096),
    ("4096B", 4096),
])
def test_parse_size(value, expected):
    assert parse_size(value) == expected
    assert type(parse_size(value)) is int


def test_parse_size_gpu_names_by_hand():
    assert parse_size("T4") == 16 * 2 ** 30
    assert parse_size("t4") == 16 * 2 ** 30
    assert parse_size("A100-40GB") == 40 * 2 ** 30
    assert parse_size("a100-80gb") == 80 * 2 ** 30
    assert parse_size("rtx-4090") == 24 * 2 ** 30
    assert parse_size("RTX_4090") == 24 * 2 ** 30
    assert parse_size("rtx 3090") == 24 * 2 ** 30
    assert parse_size("V100-32GB") == 32 * 2 ** 30
    assert parse_size(" l4 ") == 24 * 2 ** 30


@pytest.mark.parametrize("name", sorted(config.GPUS))
def test_every_listed_gpu_parses_case_insensitively(name):
    expected = config.GPUS[name]
    assert parse_size(name) == expected
    assert parse_size(name.lower()) == expected
    assert parse_size(name.title()) == expected
    # a card whose name states its memory ("A100-40GB") must have that many GiB
    m = re.search(r"-(\d+)GB$", name)
    if m:
        assert expected == int(m.group(1)) * 2 ** 30, name
    # every card has a whole number of GiB between 8 and 192
    assert expected % 2 ** 30 == 0 and 8 <= expected // 2 ** 30 <= 192, name


@pytest.mark.parametrize("value, shown", [
    ("lots", "lots"),
    ("12 parsecs", "12 parsecs"),
    ("GiB", "GiB"),
    ("-5GiB", "-5GiB"),
    ("A100", "A100"),  # ambiguous: 40 or 80 GB
    (-5, "-5"),
    (True, "True"),
    (None, "None"),
    ([16], "16"),
])
def test_parse_size_rejects_with_key_and_value(value, shown):
    with pytest.raises(ConfigError) as info:
        parse_size(value, "budget")
    message = str(info.value)
    assert "budget" in message and shown in message, message
    with pytest.raises(ConfigError) as info:
        parse_size(value, "reserve")
    assert "reserve" in str(info.value), str(info.value)


def test_parse_size_error_is_one_line():
    with pytest.raises(ConfigError) as info:
        parse_size("lots")
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- parse_shape

@pytest.mark.parametrize("value, expected", [
    ("3,50,50", (3, 50, 50)),
    (" 3, 50, 50 ", (3, 50, 50)),
    ("(3, 224, 224)", (3, 224, 224)),
    ("[1, 28, 28]", (1, 28, 28)),
    ("3x32x32", (3, 32, 32)),
    ("128", (128,)),
    ([3, 50, 50], (3, 50, 50)),
    ((3, 50, 50), (3, 50, 50)),
    ([20], (20,)),
    # several forward inputs: one shape each (forward(self, idx, targets))
    ([[1024], [1024]], ((1024,), (1024,))),
    (((64,), (3, 32, 32)), ((64,), (3, 32, 32))),
    ("1024;1024", ((1024,), (1024,))),
    (["64", "3,32,32"], ((64,), (3, 32, 32))),  # --input-shape given twice
    (["3,50,50"], (3, 50, 50)),  # --input-shape given once
    # a per-sample scalar (a diffusion timestep, a class label): the empty shape, a batch of (batch,)
    ("", ()),
    ([], ()),
    ([[3, 64, 64], []], ((3, 64, 64), ())),
    (["3,64,64", ""], ((3, 64, 64), ())),  # --input-shape 3,64,64 --input-shape ''
    ("3,64,64;", ((3, 64, 64), ())),
    (";3,64,64", ((), (3, 64, 64))),
    # inputs forward takes by keyword, after the positional ones
    ("labels=", (Named("labels", ()),)),
    (["3,224,224", "labels="], ((3, 224, 224), Named("labels", ()))),
    ("pixel_values=3,224,224;labels=", (Named("pixel_values", (3, 224, 224)), Named("labels", ()))),
    ({"image": [3, 32, 32], "target": []}, (Named("image", (3, 32, 32)), Named("target", ()))),
    ([[16], {"labels": [16]}], ((16,), Named("labels", (16,)))),
])
def test_parse_shape(value, expected):
    assert parse_shape(value) == expected


@pytest.mark.parametrize("value, shown", [
    ("a,b", "a,b"),
    ("3,50.5,50", "50.5"),
    ("labels=3;64", "an input given by position after one given by name"),
    ({"x": [3], "y": [0]}, "[0]"),
    ({"1x": [3]}, "1x"),
    ("x=3;x=4", "named twice"),
    ([3, 0, 5], "0"),
    ([3, -1, 5], "-1"),
    ([True, 3], "True"),
    ([3.0, 4], "3.0"),
    (3, "3"),
    (None, "None"),
    ([[64], [0]], "[[64], [0]]"),
    ("64;a", "64;a"),
])
def test_parse_shape_rejects_with_key_and_value(value, shown):
    with pytest.raises(ConfigError) as info:
        parse_shape(value, "input_shape")
    message = str(info.value)
    assert "input_shape" in message and shown in message, message


# ---------------------------------------------------------------- merge

def test_merge_strongest_first():
    command_line = Settings(batch_size=8)
    inline = Settings(batch_size=64, input_shape=(3, 50, 50))
    per_model = Settings(batch_size=32, input_shape=(3, 224, 224), budget=16 * GIB)
    project = Settings(batch_size=16, optimizer="sgd", budget=12 * GIB, dtype="bfloat16")
    s = merge(command_line, inline, per_model, project, DEFAULTS)
    assert s.batch_size == 8  # command line
    assert s.input_shape == (3, 50, 50)  # inline beats the per-model table
    assert s.budget == 16 * GIB  # per-model beats the project defaults
    assert s.optimizer == "sgd" and s.dtype == "bfloat16"  # project beats built-in defaults
    assert s.warn_fraction == 0.9 and s.reserve == 0  # built-in defaults
    assert s.input_dtype is None


def test_merge_defaults_only():
    s = merge(Settings(), DEFAULTS)
    assert (s.batch_size, s.dtype, s.optimizer, s.warn_fraction, s.reserve) == (1, "float32", "adam", 0.9, 0)
    assert s.budget is None and s.input_shape is None and s.args == {}


def test_merge_unset_never_overrides():
    s = merge(Settings(), Settings(budget=5), Settings(budget=7))
    assert s.budget == 5


def test_merge_zero_is_a_value():
    """reserve = 0 on the command line must beat a project reserve (0 is set, None is unset)."""
    s = merge(Settings(reserve=0), Settings(reserve=300 * MIB))
    assert s.reserve == 0


def test_merge_combines_constructor_args():
    s = merge(Settings(args={"num_classes": 100}),
              Settings(args={"num_classes": 10, "width": 64}),
              Settings(args={"depth": 3, "width": 32}))
    assert s.args == {"num_classes": 100, "width": 64, "depth": 3}


def test_merge_does_not_mutate_inputs():
    a, b = Settings(args={"x": 1}), Settings(args={"y": 2})
    merge(a, b)
    assert a.args == {"x": 1} and b.args == {"y": 2}


# ---------------------------------------------------------------- settings_from

def test_settings_from_parses_every_key():
    s = settings_from({"budget": "T4", "batch-size": "64", "input_shape": [3, 50, 50], "dtype": "BFloat16",
                       "input_dtype": "int64", "optimizer": "AdamW", "warn_fraction": 0.8,
                       "reserve": "300MiB", "args": {"num_classes": 10}}, "pyproject.toml")
    assert s.budget == 16 * GIB
    assert s.batch_size == 64
    assert s.input_shape == (3, 50, 50)
    assert s.dtype == "bfloat16" and s.input_dtype == "int64" and s.optimizer == "adamw"
    assert s.warn_fraction == 0.8
    assert s.reserve == 300 * MIB
    assert s.args == {"num_classes": 10}


def test_settings_from_empty_is_all_unset():
    assert settings_from({}, "x") == Settings()


def test_settings_from_unknown_key_names_key_and_place():
    with pytest.raises(ConfigError) as info:
        settings_from({"bugdet": "12GiB"}, "/proj/pyproject.toml [tool.gpumem]")
    message = str(info.value)
    assert "bugdet" in message and "/proj/pyproject.toml [tool.gpumem]" in message, message
    assert "\n" not in message


@pytest.mark.parametrize("key, value, shown", [
    ("batch_size", -3, "-3"),
    ("batch_size", 0, "0"),
    ("batch_size", "-3", "-3"),
    ("batch_size", 2.5, "2.5"),
    ("batch_size", True, "True"),
    ("budget", "lots", "lots"),
    ("reserve", "much", "much"),
    ("input_shape", "a,b", "a,b"),
    ("dtype", "float8", "float8"),
    ("input_dtype", "complex64", "complex64"),
    ("optimizer", "lion", "lion"),
    ("optimizer", 3, "3"),
    ("warn_fraction", 0, "0"),
    ("warn_fraction", 1.5, "1.5"),
    ("warn_fraction", "most", "most"),
    ("warn_fraction", True, "True"),
    ("args", [1, 2], "[1, 2]"),
])
def test_settings_from_bad_value_names_place_key_value(key, value, shown):
    with pytest.raises(ConfigError) as info:
        settings_from({key: value}, "models/net.py:12")
    message = str(info.value)
    assert "models/net.py:12" in message and key in message and shown in message, message
    assert "\n" not in message


@pytest.mark.parametrize("key, value, field, expected", [
    ("batch_size", 1, "batch_size", 1),
    ("batch_size", "128", "batch_size", 128),
    ("warn_fraction", 1, "warn_fraction", 1.0),
    ("warn_fraction", "0.75", "warn_fraction", 0.75),
    ("optimizer", "sgd-momentum", "optimizer", "sgd-momentum"),
    ("dtype", "amp-fp16", "dtype", "amp-fp16"),
    ("budget", 0, "budget", 0),
])
def test_settings_from_accepts_edge_values(key, value, field, expected):
    assert getattr(settings_from({key: value}, "x"), field) == expected


def test_known_choices_match_the_design():
    assert set(config.DTYPES) == {"float32", "float16", "bfloat16", "amp-fp16", "amp-bf16"}
    assert set(config.OPTIMIZERS) == {"sgd", "sgd-momentum", "adam", "adamw", "rmsprop", "adagrad"}


# ---------------------------------------------------------------- inline comment

def test_inline_comment_from_design():
    s = inline_settings("class Net(nn.Module):  # gpumem: input_shape=(3, 50, 50) batch_size=64", "net.py:3")
    assert s.input_shape == (3, 50, 50)
    assert s.batch_size == 64
    assert s.budget is None and s.optimizer is None and s.dtype is None


def test_inline_comment_many_keys_and_separators():
    s = inline_settings('class Net(nn.Module):  # gpumem: input_shape=[3, 32, 32], batch_size=8, '
                        'optimizer=sgd budget=12GiB dtype="bfloat16" reserve=\'1GiB\'', "net.py:3")
    assert s.input_shape == (3, 32, 32)
    assert s.batch_size == 8
    assert s.optimizer == "sgd"
    assert s.budget == 12 * GIB
    assert s.dtype == "bfloat16"
    assert s.reserve == GIB


def test_inline_comment_gpu_name():
    assert inline_settings("class Net(nn.Module):  # gpumem: budget=A100-80GB", "x").budget == 80 * GIB


@pytest.mark.parametrize("line", [
    "class Net(nn.Module):",
    "class Net(nn.Module):  # noqa: E501",
    "class Net(nn.Module):  # a gpumem model",
])
def test_no_inline_comment_is_unset(line):
    assert inline_settings(line, "x") == Settings()


def test_inline_comment_unknown_key_names_place_and_key():
    with pytest.raises(ConfigError) as info:
        inline_settings("class Net(nn.Module):  # gpumem: input_shap=(3, 50, 50)", "models/net.py:7")
    message = str(info.value)
    assert "models/net.py:7" in message and "input_shap" in message, message


def test_inline_comment_bad_value_names_place_key_value():
    with pytest.raises(ConfigError) as info:
        inline_settings("class Net(nn.Module):  # gpumem: batch_size=-2", "models/net.py:7")
    message = str(info.value)
    assert "models/net.py:7" in message and "batch_size" in message and "-2" in message, message


def test_inline_comment_reaches_the_analysis():
    """The class-line comment sets the input: Linear(20, 5) on (20,) with batch 4."""
    from flake8_gpumem.analysis import analyse_source

    source = textwrap.dedent("""
        import torch.nn as nn

        class Net(nn.Module):  # gpumem: input_shape=(20,) batch_size=4
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(20, 5)

            def forward(self, x):
                return self.fc(x)
        """)
    result = analyse_source(source, "net.py")
    assert [m.name for m in result.models] == ["Net"]
    assert result.models[0].input_shape == (4, 20)
    assert result.models[0].params == 20 * 5 + 5


def test_bad_inline_comment_is_a_diagnostic_not_an_exception():
    from flake8_gpumem.analysis import analyse_source

    source = textwrap.dedent("""
        import torch.nn as nn

        class Net(nn.Module):  # gpumem: batch_size=lots input_shape=(20,)
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(20, 5)

            def forward(self, x):
                return self.fc(x)
        """)
    result = analyse_source(source, "net.py")
    messages = [(d.code, d.line, d.message) for d in result.diagnostics]
    # bad configuration is GPM001 (on by default), naming the place, the key and the value
    assert any(code == "GPM001" and line == 4 and "net.py:4" in msg and "batch_size" in msg and "lots" in msg
               for code, line, msg in messages), messages


def test_precedence_through_analyse_source():
    """command line > inline comment > per-model table > project defaults > built-in defaults."""
    from flake8_gpumem.analysis import analyse_source

    result = analyse_source(
        ADAPTIVE, "net.py",
        overrides=Settings(batch_size=8),
        project=Settings(batch_size=16, optimizer="sgd", budget=12 * GIB, input_shape=(3, 10, 10)),
        per_model={"Net": Settings(batch_size=32, input_shape=(3, 32, 32), budget=16 * GIB)},
    )
    (m,) = result.models
    assert m.input_shape == (8, 3, 50, 50)  # batch from the command line, shape from the inline comment
    assert m.budget == 16 * GIB  # per-model table beats the project
    assert m.settings.optimizer == "sgd"  # project beats the built-in adam
    assert m.memory.optimizer == 0
    assert m.settings.dtype == "float32"  # built-in default
    params = (16 * 3 * 9 + 16) + (16 * 10 + 10)
    assert m.params == params and m.memory.weights == params * 4


# ---------------------------------------------------------------- several inputs, the loss

def test_input_dtypes_one_for_all_or_one_per_input():
    from flake8_gpumem.config import input_dtypes

    two = Settings(input_shape=((64,), (64,)))
    assert input_dtypes(two, "float32") == ["float32", "float32"]
    assert input_dtypes(replace(two, input_dtype="int64"), "float32") == ["int64", "int64"]
    mixed = settings_from({"input_dtype": ["int64", "float32"], "input_shape": [[64], [3, 8, 8]]}, "here")
    assert input_dtypes(mixed, "bfloat16") == ["int64", "float32"]
    assert settings_from({"input_dtype": "int64;int64"}, "here").input_dtype == "int64"  # the same for all
    with pytest.raises(ConfigError, match="3 dtypes for 2 inputs"):
        input_dtypes(replace(two, input_dtype=("int64",) * 3), "float32")


@pytest.mark.parametrize("key, value, shown", [
    ("loss", "hinge", "'hinge'"),
    ("input_dtype", ["int64", "complex64"], "'complex64'"),
    ("input_dtype", [], "[]"),
    ("input_dtype", "labels=long", "'long'"),
    ("batch_dim", -1, "-1"),
    ("batch_dim", "first", "'first'"),
    ("forward_args", 0.5, "0.5"),
])
def test_bad_loss_or_dtypes_name_key_and_value(key, value, shown):
    with pytest.raises(ConfigError) as info:
        settings_from({key: value}, "pyproject.toml [tool.gpumem]")
    message = str(info.value)
    assert "pyproject.toml" in message and key in message and shown in message, message


def test_loss_defaults_to_cross_entropy():
    assert DEFAULTS.loss == "cross_entropy"
    assert settings_from({"loss": "MSE"}, "here").loss == "mse"


# ---------------------------------------------------------------- training set-ups

def test_set_up_keys():
    s = settings_from({"checkpoint": "Block, Stage", "accumulate": "4", "strategy": "FSDP", "world_size": 8,
                       "shard_unit": ["Block"], "param-dtype": "BFloat16", "reduce_dtype": "float32"}, "here")
    assert (s.checkpoint, s.accumulate, s.strategy, s.world_size, s.shard_unit, s.param_dtype, s.reduce_dtype) == (
        ("Block", "Stage"), 4, "fsdp", 8, ("Block",), "bfloat16", "float32")
    assert (DEFAULTS.checkpoint, DEFAULTS.accumulate, DEFAULTS.strategy, DEFAULTS.world_size) == ((), 1, "single", 1)


@pytest.mark.parametrize("value, parsed", [("false", False), ("True", True), (False, False), ("4", 4), (2, 2)])
def test_reshard_after_forward_is_a_flag_or_ranks(value, parsed):
    got = settings_from({"reshard-after-forward": value}, "here").reshard_after_forward
    assert (got, type(got)) == (parsed, type(parsed))


@pytest.mark.parametrize("key, value, shown", [
    ("checkpoint", "not a class!", "'not a class!'"),
    ("checkpoint", [3], "[3]"),
    ("accumulate", 0, "0"),
    ("strategy", "zero3", "'zero3'"),
    ("world_size", -2, "-2"),
    ("shard_unit", {"Block": 1}, "{'Block': 1}"),
    ("param_dtype", "amp-bf16", "'amp-bf16'"),
    ("reshard_after_forward", "maybe", "'maybe'"),
    ("reshard_after_forward", 0, "0"),
])
def test_bad_set_up_names_key_and_value(key, value, shown):
    with pytest.raises(ConfigError) as info:
        settings_from({key: value}, "pyproject.toml [tool.gpumem]")
    message = str(info.value)
    assert "pyproject.toml" in message and key in message and shown in message, message


# ---------------------------------------------------------------- inputs: scalars, by keyword, batch position

def test_inputs_by_position_and_by_keyword_with_their_dtypes_and_batch_dims():
    s = settings_from({"input_shape": "12;labels=;mask=12", "input_dtype": ["labels=int64", "mask=int64"],
                       "batch_dim": "1"}, "here")
    assert forward_inputs(s, "bfloat16") == [
        ForwardInput(None, (12,), "bfloat16", 1), ForwardInput("labels", (), "int64", 0),
        ForwardInput("mask", (12,), "int64", 1)]
    # (batch,) for a per-sample scalar; the batch before dimension 1 of a sequence-first input
    assert [x.batched(4) for x in forward_inputs(s, "float32")] == [(12, 4), (4,), (12, 4)]
    per_input = settings_from({"input_shape": [[7, 12], []], "batch_dim": [1, 0], "input_dtype": "float32;int64"},
                              "here")
    assert [x.batched(3) for x in forward_inputs(per_input, "float32")] == [(7, 3, 12), (3,)]
    assert [x.dtype for x in forward_inputs(per_input, "float32")] == ["float32", "int64"]


@pytest.mark.parametrize("values, message", [
    ({"input_shape": [[3], [4]], "batch_dim": [1, 0, 0]}, "3 dimensions for 2 inputs"),
    ({"input_shape": "3;labels=", "input_dtype": "target=int64"}, "no input is given by the name 'target'"),
    ({"input_shape": "3;labels=", "input_dtype": ["int64", "labels=int64"]}, "every value by position or every"),
    ({"input_shape": [7, 12], "batch_dim": 3}, "no dimension 3"),
])
def test_inputs_that_do_not_fit_their_settings_say_which(values, message):
    with pytest.raises(ConfigError, match=message):
        forward_inputs(settings_from(values, "here"), "float32")


def test_inline_comment_gives_scalar_and_named_inputs_and_forward_args():
    s = inline_settings('class Unet(nn.Module):  # gpumem: input_shape=((3, 64, 64), ()) input_dtype="float32;int64"',
                        "unet.py:3")
    assert (s.input_shape, s.input_dtype) == (((3, 64, 64), ()), ("float32", "int64"))
    s = inline_settings('class Distiller(nn.Module):  # gpumem: input_shape={"image": (3, 32, 32), "target": ()} '
                        'input_dtype={"target": "int64"} forward_args={"teacher_forcing_ratio": 0.0} batch_dim=1',
                        "kd.py:9")
    assert s.input_shape == (Named("image", (3, 32, 32)), Named("target", ()))
    assert s.input_dtype == (Named("target", "int64"),)
    assert s.forward_args == {"teacher_forcing_ratio": 0.0} and s.batch_dim == 1
    assert inline_settings("class T(nn.Module):  # gpumem: input_shape=[] input_dtype=int64", "x").input_shape == ()


def test_pyproject_gives_named_inputs_and_forward_args(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.gpumem]\ninput_shape = [[3, 64, 64], []]\ninput_dtype = ["float32", "int64"]\n\n'
        '[tool.gpumem.models."seq2seq.py::Seq2Seq"]\ninput_shape = [[20], [24]]\ninput_dtype = "int64"\n'
        'batch_dim = 1\nforward_args = {teacher_forcing_ratio = 0.0}\n\n'
        '[tool.gpumem.models."kd.py::Distiller"]\ninput_shape = {image = [3, 32, 32], target = []}\n'
        'input_dtype = {target = "int64"}\n')
    project = config.load_project(tmp_path / "pyproject.toml")
    assert project.settings.input_shape == ((3, 64, 64), ())
    seq = project.models["seq2seq.py::Seq2Seq"]
    assert [x.batched(2) for x in forward_inputs(seq, "float32")] == [(20, 2), (24, 2)]
    assert merge(Settings(forward_args={"hidden": None}), seq).forward_args == {"teacher_forcing_ratio": 0.0,
                                                                                "hidden": None}
    kd = forward_inputs(project.models["kd.py::Distiller"], "float32")
    assert [(x.name, x.batched(5), x.dtype) for x in kd] == [("image", (5, 3, 32, 32), "float32"),
                                                             ("target", (5,), "int64")]
