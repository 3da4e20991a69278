"""Models from Hugging Face transformers, read from its installed source, never imported by gpumem.

transformers loads its names lazily (`_LazyModule`): the imports a type checker follows sit under
`if TYPE_CHECKING:`. The oracle imports the library (only the tests do)."""
import importlib

import pytest

from flake8_gpumem.analysis import analyse_source
from flake8_gpumem.config import Settings
from flake8_gpumem.interpreter import imports
from flake8_gpumem.interpreter.core import Interpreter
from flake8_gpumem.interpreter.objects import Class, Q, Scope

torch = pytest.importorskip("torch")
import torchvision_oracle  # noqa: E402,F401  (stubs torchvision registrations that transformers imports)
import torch_oracle  # noqa: E402

LAZY_INIT = '''\
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    try:
        from .backend_check import available
    except ImportError:
        pass
    else:
        from .blocks import *
else:
    import importlib

    def __getattr__(name):
        return getattr(importlib.import_module(".blocks", __name__), name)
'''
BLOCKS = '''\
import torch.nn as nn

__all__ = ["Net"]


class Net(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Linear(width, 2))

    def forward(self, x):
        return self.body(x)
'''


def test_a_package_that_loads_lazily_is_read_through_its_type_checking_imports(tmp_path, monkeypatch):
    """`from lazypkg import Net` where lazypkg's __init__ imports only under TYPE_CHECKING, inside
    a try/else (as transformers guards its optional backends), through a star import."""
    pkg = tmp_path / "lazypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(LAZY_INIT)
    (pkg / "blocks.py").write_text(BLOCKS)
    (pkg / "backend_check.py").write_text("available = True\n")
    script = tmp_path / "train.py"
    script.write_text("from lazypkg import Net\n\nmodel = Net(8)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = analyse_source(script.read_text(), str(script), Settings(input_shape=(6,), batch_size=4, device="cpu"))
    assert [m.name for m in result.models] == ["model"], (result.error, result.skipped)
    report = result.models[0]
    model = importlib.import_module("lazypkg").Net(8)  # the real package, through its __getattr__
    truth = torch_oracle.profile(model, torch.randn(4, 6))
    assert report.params == truth.params
    assert [(r.name, r.type, r.output_shape) for r in report.layers if r.module] == [
        (c.name, c.type, c.output_shape) for c in truth.calls]


@pytest.mark.parametrize("name", ["GPT2LMHeadModel", "GPT2Config", "LlamaForCausalLM", "BertForSequenceClassification"])
def test_transformers_names_are_found_where_the_library_defines_them(name):
    transformers = pytest.importorskip("transformers")  # the oracle: where the library puts the name
    resolver = imports.resolver(imports.roots_for(""))
    interp = Interpreter(Scope({}), resolver=resolver)
    found = interp.follow(Q(f"transformers.{name}", "transformers"), None)
    assert isinstance(found, Class)
    assert (found.name, found.scope.root().file.module) == (name, getattr(transformers, name).__module__)


SMALL = {  # the small size: 2 layers, hidden 64, vocabulary 1,000
    "gpt2": ("GPT2LMHeadModel", "GPT2Config", "n_layer=2, n_embd=64, n_head=2, vocab_size=1000"),
    "llama": ("LlamaForCausalLM", "LlamaConfig", "num_hidden_layers=2, hidden_size=64, intermediate_size=128, "
              "num_attention_heads=4, num_key_value_heads=2, vocab_size=1000"),
    # mixture of experts: `@use_experts_implementation` sets the experts' forward to the grouped
    # matmuls transformers picks by default, whose shapes do not depend on the routing
    "mixtral": ("MixtralForCausalLM", "MixtralConfig", "num_hidden_layers=2, hidden_size=64, intermediate_size=128, "
                "num_attention_heads=4, num_key_value_heads=2, vocab_size=1000, num_local_experts=4"),
    # classifiers: BERT on token ids, ViT on 32 x 32 images in patches of 8
    "bert": ("BertForSequenceClassification", "BertConfig", "num_hidden_layers=2, hidden_size=64, "
             "num_attention_heads=4, intermediate_size=128, vocab_size=1000"),
    "vit": ("ViTForImageClassification", "ViTConfig", "num_hidden_layers=2, hidden_size=64, num_attention_heads=4, "
            "intermediate_size=128, image_size=32, patch_size=8, num_labels=10"),
}
BATCH, SEQ = 4, 32
BUILT = "{model}({config}({args}))"  # how the script builds the model
INPUTS = {"vit": ((3, 32, 32), "float32")}  # the others: SEQ int64 token ids


def _read_and_measure(tmp_path, key, extra="", build=BUILT):
    """gpumem's report of `model = Model(Config(...))` (or what `build` spells) from a script, and
    the same model built by transformers, its leaf calls and a measured training step (int64 token
    ids, cross entropy of the logits as for the language-model fixtures)."""
    transformers = pytest.importorskip("transformers")
    model_name, config_name, args = SMALL[key]
    built = build.format(model=model_name, config=config_name, args=args + extra)
    head = built.partition("(")[0].partition(".")[0]  # the model class, or the auto class
    script = tmp_path / "train.py"
    script.write_text(f"from transformers import {config_name}, {head}\n\nmodel = {built}\n")
    shape, dtype = INPUTS.get(key, ((SEQ,), "int64"))
    settings = Settings(input_shape=shape, input_dtype=dtype, batch_size=BATCH, device="cpu")
    result = analyse_source(script.read_text(), str(script), settings)
    assert [m.name for m in result.models] == ["model"], (result.error, result.skipped)
    torch.manual_seed(0)
    model = eval(built, {name: getattr(transformers, name) for name in (config_name, head)})
    truth = torch_oracle.profile(model, torch_oracle.make_input((BATCH, *shape), dtype))
    measured = torch_oracle.measure_step(model, (BATCH, *shape), dtype)
    return result.models[0], truth, measured


@pytest.mark.parametrize("key, extra, build", [
    ("gpt2", "", BUILT), ("llama", "", BUILT), ("llama", ', attn_implementation="eager"', BUILT),
    ("bert", "", BUILT), ("vit", "", BUILT), ("mixtral", "", BUILT),
    ("llama", "", "AutoModelForCausalLM.from_config({config}({args}))")])
def test_a_transformers_model_is_read_exactly_and_its_step_peak_measured(tmp_path, key, extra, build):
    """SDPA by default, the attention written out where the config asks for "eager" (with
    masking_utils' float mask); `AutoModelForCausalLM.from_config(config)` finds the class through
    transformers' lazy mapping of config class to model class, loaded by `importlib.import_module`."""
    report, truth, measured = _read_and_measure(tmp_path, key, extra, build)
    assert report.params == truth.params
    assert [(r.name, r.type, r.output_shape) for r in report.layers if r.module] == [
        (c.name, c.type, c.output_shape) for c in truth.calls]
    error = (report.memory.peak - measured.peak) / measured.peak
    assert abs(error) <= 0.03, (report.memory.peak, measured.peak, measured.categories)


def _saved_llama(folder):
    """The small LLaMA saved by transformers itself (config.json and weights) in `folder`."""
    transformers = pytest.importorskip("transformers")
    _, _, args = SMALL["llama"]
    torch.manual_seed(0)
    model = eval(f"LlamaForCausalLM(LlamaConfig({args}))",
                 {"LlamaForCausalLM": transformers.LlamaForCausalLM, "LlamaConfig": transformers.LlamaConfig})
    model.save_pretrained(folder)
    return transformers


def _report(tmp_path, text, **settings):
    script = tmp_path / "train.py"
    script.write_text(text)
    result = analyse_source(text, str(script), Settings(input_shape=(SEQ,), input_dtype="int64", batch_size=BATCH,
                                                        device="cpu", **settings))
    return result


def test_from_pretrained_reads_a_local_folders_config_and_loads_in_the_dtype_given(tmp_path):
    """`LlamaForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)`: the model of the folder's
    config.json, its weights (and so the step) in bfloat16, against transformers loading the same folder."""
    folder = tmp_path / "tiny-llama"
    transformers = _saved_llama(folder)
    result = _report(tmp_path, f"import torch\nfrom transformers import LlamaForCausalLM\n\n"
                               f"model = LlamaForCausalLM.from_pretrained({str(folder)!r}, dtype=torch.bfloat16)\n")
    assert [m.name for m in result.models] == ["model"], (result.error, result.skipped)
    report = result.models[0]
    model = transformers.LlamaForCausalLM.from_pretrained(folder, dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16
    truth = torch_oracle.profile(model, torch.zeros(BATCH, SEQ, dtype=torch.int64))
    measured = torch_oracle.measure_step(model, (BATCH, SEQ), "int64")
    assert report.params == truth.params
    assert [(r.name, r.type, r.output_shape) for r in report.layers if r.module] == [
        (c.name, c.type, c.output_shape) for c in truth.calls]
    error = (report.memory.peak - measured.peak) / measured.peak
    assert abs(error) <= 0.03, (report.memory.peak, measured.peak, measured.categories)


def test_an_auto_class_from_pretrained_finds_the_config_in_the_hugging_face_cache(tmp_path, monkeypatch):
    """`AutoModelForCausalLM.from_pretrained("org/name", torch_dtype=...)`: the config of the revision
    refs/main names, in huggingface_hub's cache layout under HF_HUB_CACHE."""
    snapshot = tmp_path / "hub" / "models--tiny-org--tiny-llama" / "snapshots" / "0123abcd"
    transformers = _saved_llama(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abcd")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    result = _report(tmp_path, "import torch\nfrom transformers import AutoModelForCausalLM\n\n"
                               "model = AutoModelForCausalLM.from_pretrained('tiny-org/tiny-llama', "
                               "torch_dtype=torch.bfloat16)\n")
    assert [m.name for m in result.models] == ["model"], (result.error, result.skipped)
    truth = transformers.AutoModelForCausalLM.from_pretrained(snapshot)
    assert result.models[0].params == sum(p.numel() for p in truth.parameters())
    assert {r.type for r in result.models[0].layers if r.module} == {type(m).__name__ for m in truth.modules()
                                                                      if not list(m.children())}


def test_a_model_whose_config_is_nowhere_on_this_machine_is_a_gpm900_naming_how_to_give_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    text = ("from transformers import AutoModelForCausalLM\n\n"
            "model = AutoModelForCausalLM.from_pretrained('org/absent')\n")
    result = _report(tmp_path, text)
    assert result.models == []
    [message] = [d.message for d in result.diagnostics if d.code == "GPM900"]
    assert "org/absent" in message and "hf_config" in message and "--hf-config" in message
    folder = tmp_path / "given"
    transformers = _saved_llama(folder)
    given = _report(tmp_path, text, hf_config=str(folder / "config.json"))  # the setting gives it
    assert [m.name for m in given.models] == ["model"], (given.error, given.skipped)
    truth = transformers.LlamaForCausalLM.from_pretrained(folder)
    assert given.models[0].params == sum(p.numel() for p in truth.parameters())


CHECKPOINTING = {"": {}, "reentrant": {"use_reentrant": True}, "not reentrant": {"use_reentrant": False}}


@pytest.mark.parametrize("key, kind", [("llama", ""), ("llama", "reentrant"), ("gpt2", ""), ("gpt2", "not reentrant")])
def test_gradient_checkpointing_enable_is_run_as_transformers_runs_it(tmp_path, key, kind):
    """`model.gradient_checkpointing_enable(...)` after the model is built: transformers' own code sets
    each decoder layer (a GradientCheckpointingLayer) to run under torch.utils.checkpoint with the
    keywords given (transformers 5: not reentrant unless `use_reentrant=True`), and turns the cache off."""
    transformers = pytest.importorskip("transformers")
    model_name, config_name, args = SMALL[key]
    given = CHECKPOINTING[kind]
    call = f"gradient_checkpointing_kwargs={given!r}" if kind else ""
    result = _report(tmp_path, f"from transformers import {config_name}, {model_name}\n\n"
                               f"model = {model_name}({config_name}({args}))\n"
                               f"model.gradient_checkpointing_enable({call})\n")
    assert [m.name for m in result.models] == ["model"], (result.error, result.skipped)
    assert not [d for d in result.diagnostics if d.code == "GPM900"], result.diagnostics
    report = result.models[0]
    torch.manual_seed(0)
    classes = {name: getattr(transformers, name) for name in (model_name, config_name)}
    model = eval(f"{model_name}({config_name}({args}))", classes)
    truth = torch_oracle.profile(model, torch.zeros(BATCH, SEQ, dtype=torch.int64))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=given or None)
    measured = torch_oracle.measure_step(model, (BATCH, SEQ), "int64")
    _exact_and_within_3_percent(report, truth, measured, f"{key} {kind or 'default'}")


def _exact_and_within_3_percent(report, truth, measured, what: str) -> None:
    """Parameters and every leaf's name, type and shape as transformers builds them, and the step's
    peak within 3% of MemTracker's (printed with -s)."""
    assert report.params == truth.params
    assert [(r.name, r.type, r.output_shape) for r in report.layers if r.module] == [
        (c.name, c.type, c.output_shape) for c in truth.calls]
    error = (report.memory.peak - measured.peak) / measured.peak
    print(f"{what}: gpumem {report.memory.peak / 2**20:.3f} MiB, MemTracker {measured.peak / 2**20:.3f} MiB, "
          f"{error:+.3%}")
    assert abs(error) <= 0.03, (what, report.memory.peak, measured.peak, measured.categories)


def test_use_cache_turned_off_in_the_config_is_read_also_after_from_pretrained(tmp_path):
    """`model.config.use_cache = False` (no DynamicCache: masking_utils then checks the position ids
    for packed sequences, values gpumem computes), on a model built from its config and on one
    loaded by `from_pretrained` whose layers are then checkpointed."""
    folder = tmp_path / "tiny-llama"
    transformers = _saved_llama(folder)
    _, _, args = SMALL["llama"]
    builds = {"built": f"LlamaForCausalLM(LlamaConfig({args}))",
              "loaded": f"LlamaForCausalLM.from_pretrained({str(folder)!r}, dtype=torch.float32)"}
    for how, build in builds.items():
        then = "model.gradient_checkpointing_enable()\n" if how == "loaded" else ""
        result = _report(tmp_path, f"import torch\nfrom transformers import LlamaConfig, LlamaForCausalLM\n\n"
                                   f"model = {build}\n{then}model.config.use_cache = False\n")
        assert [m.name for m in result.models] == ["model"], (result.error, result.skipped)
        torch.manual_seed(0)
        model = eval(build, {"torch": torch, "LlamaForCausalLM": transformers.LlamaForCausalLM,
                             "LlamaConfig": transformers.LlamaConfig})
        if then:
            model.gradient_checkpointing_enable()
        model.config.use_cache = False
        truth = torch_oracle.profile(model, torch.zeros(BATCH, SEQ, dtype=torch.int64))
        measured = torch_oracle.measure_step(model, (BATCH, SEQ), "int64")
        _exact_and_within_3_percent(result.models[0], truth, measured, how)


PACKED = '''\
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        positions = torch.arange(x.shape[1]).unsqueeze(0).expand(x.shape[0], -1) + SHIFT
        packed = (torch.diff(positions, prepend=positions[:, :1] - 1, dim=-1) != 1).cumsum(-1)
        if (packed[:, -1] == 0).all():
            return self.fc(x)
        return self.fc(x[:, :1])
'''


@pytest.mark.parametrize("shift", ["0", "(torch.arange(x.shape[1]) > 2).long()"])
def test_the_packed_sequence_check_is_computed_from_the_position_values(tmp_path, shift):
    """masking_utils' check, written out: positions unsqueezed and expanded, torch.diff with
    `prepend` along the last dim, a 2-d index; one sequence, or two packed, decide the branch."""
    text = PACKED.replace("SHIFT", shift)
    script = tmp_path / "packed.py"
    script.write_text(text)
    result = analyse_source(text, str(script), Settings(input_shape=(6, 8), batch_size=3, device="cpu"))
    assert [m.name for m in result.models] == ["Net"], (result.error, result.skipped)
    truth = torch_oracle.profile(torch_oracle.instantiate(torch_oracle.load(text), "Net"), torch.randn(3, 6, 8))
    assert [(r.name, r.output_shape) for r in result.models[0].layers if r.module] == [
        (c.name, c.output_shape) for c in truth.calls]
    [fc] = [r for r in result.models[0].layers if r.module]
    assert fc.output_shape == ((3, 6, 4) if shift == "0" else (3, 1, 4))  # the branch taken


TRAINER = '''\
from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

model = LlamaForCausalLM(LlamaConfig({args}))
args = TrainingArguments(output_dir="out", per_device_train_batch_size=4, gradient_accumulation_steps=2,
                         bf16=True, gradient_checkpointing=True, optim="adamw_torch")
trainer = Trainer(model=model, args=args, train_dataset=dataset)
'''


def test_training_arguments_given_to_a_trainer_set_up_the_step(tmp_path):
    """The Trainer's step for those flags, as PyTorch runs it: micro-batches of 4, two accumulated,
    autocast to bfloat16, AdamW (foreach), decoder layers checkpointed (not reentrant, transformers 5's
    default); gpumem reads the flags from the call without running the Trainer."""
    transformers = pytest.importorskip("transformers")
    import setup_oracle

    _, _, args = SMALL["llama"]
    script = tmp_path / "train.py"
    script.write_text(TRAINER.format(args=args))
    result = analyse_source(script.read_text(), str(script), Settings(input_shape=(SEQ,), input_dtype="int64",
                                                                      device="cpu"))
    assert [m.name for m in result.models] == ["model"], (result.error, result.skipped)
    report = result.models[0]
    assert (report.settings.batch_size, report.settings.accumulate, report.settings.dtype,
            report.settings.optimizer) == (4, 2, "amp-bf16", "adamw")
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(eval(f"transformers.LlamaConfig({args})"))
    truth = torch_oracle.profile(model, torch.zeros(BATCH, SEQ, dtype=torch.int64))
    model.gradient_checkpointing_enable()
    measured = setup_oracle.measure_accumulated(model, (4, SEQ), "int64", optimizer="adamw", dtype="amp-bf16", k=2)
    _exact_and_within_3_percent(report, truth, measured, "TrainingArguments")


def test_training_arguments_gpumem_cannot_read_or_model_are_said_and_the_command_line_wins(tmp_path):
    _, _, args = SMALL["llama"]
    text = TRAINER.format(args=args).replace("per_device_train_batch_size=4", "per_device_train_batch_size=size")
    text = text.replace('optim="adamw_torch"', 'optim="adamw_bnb_8bit"')
    result = _report(tmp_path, text, optimizer="sgd", accumulate=3)  # as given on the command line
    notes = [d.message for d in result.diagnostics if d.code == "GPM900"]
    assert any("per_device_train_batch_size" in n and "`size`" in n for n in notes), notes
    assert any("adamw_bnb_8bit" in n for n in notes), notes
    settings = result.models[0].settings
    assert (settings.batch_size, settings.accumulate, settings.optimizer) == (BATCH, 3, "sgd")


def test_gradient_checkpointing_with_a_selective_policy(tmp_path):
    """`gradient_checkpointing_kwargs` with a selective checkpointing `context_fn` (the matrix products
    saved): read as a checkpoint call with that policy, within 3% of MemTracker."""
    from functools import partial

    from torch.utils.checkpoint import create_selective_checkpoint_contexts

    transformers = pytest.importorskip("transformers")
    model_name, config_name, args = SMALL["llama"]
    result = _report(tmp_path, f"from functools import partial\n\nimport torch\n"
                               "from torch.utils.checkpoint import create_selective_checkpoint_contexts\n"
                               f"from transformers import {config_name}, {model_name}\n\n"
                               f"model = {model_name}({config_name}({args}))\n"
                               "model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={\n"
                               "    'use_reentrant': False,\n"
                               "    'context_fn': partial(create_selective_checkpoint_contexts,"
                               " [torch.ops.aten.mm.default])})\n")
    assert [m.name for m in result.models] == ["model"], (result.error, result.skipped, result.diagnostics)
    report = result.models[0]
    torch.manual_seed(0)
    classes = {name: getattr(transformers, name) for name in (model_name, config_name)}
    model = eval(f"{model_name}({config_name}({args}))", classes)
    truth = torch_oracle.profile(model, torch.zeros(BATCH, SEQ, dtype=torch.int64))
    context = partial(create_selective_checkpoint_contexts, [torch.ops.aten.mm.default])
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False, "context_fn": context})
    measured = torch_oracle.measure_step(model, (BATCH, SEQ), "int64")
    _exact_and_within_3_percent(report, truth, measured, "llama, selective")
    plain = _report(tmp_path, f"from transformers import {config_name}, {model_name}\n\n"
                              f"model = {model_name}({config_name}({args}))\nmodel.gradient_checkpointing_enable()\n")
    assert plain.models[0].memory.peak < report.memory.peak  # the policy was read, not dropped
