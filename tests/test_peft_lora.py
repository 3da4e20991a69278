"""PEFT's LoRA against PEFT itself: get_peft_model read from gpumem's stand-in of it, the truth the
real peft package running the same file.

The fixtures of fixtures/finetuning/lora.py are also steps of tests/test_finetuning_vs_torch.py
(float32 with Adam, AMP bf16 with SGD momentum: parameters, trainable parameters, every leaf call,
the peak within 3%). Here: the same models in bfloat16, which modules PEFT picks (its name
matching), and what gpumem says where it does not model PEFT.
"""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
import torch_oracle  # noqa: E402
from finetuning_cases import MODELS, built, measured, report  # noqa: E402

from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402

TOLERANCE = 0.03
LORA = [m for m in MODELS if m.path.name == "lora.py"]
# The LLaMA fixtures are left out in bfloat16: PyTorch's model.to(torch.bfloat16) casts their complex
# rotary buffer to a real one (it warns that the imaginary part is discarded), a model that no longer
# computes rotary embeddings.
HALF = [m for m in LORA if not m.name.startswith("llama")]


def test_the_fixtures_cover_peft_targets():
    assert {"mlp_lora", "cnn_lora", "llama_lora", "llama_ffn", "llama_all"} <= {m.name for m in LORA}


@pytest.mark.parametrize("fx", HALF, ids=[m.id for m in HALF])
def test_the_step_in_bfloat16(fx):
    est = report(fx, "adam", "bfloat16")
    model = built(fx)
    assert est.params == sum(p.numel() for p in model.parameters())
    assert est.trainable_params == sum(p.numel() for p in model.parameters() if p.requires_grad)
    truth = measured(fx, "adam", "bfloat16")
    assert abs(est.memory.peak - truth.peak) <= TOLERANCE * truth.peak, (est.memory.peak, truth.peak)
    assert (est.memory.weights, est.memory.gradients, est.memory.optimizer) == (
        truth.weights, truth.gradients, truth.optimizer_state)


MATCHING = """\
import torch.nn as nn
from peft import LoraConfig, PeftModel, TaskType, get_peft_model


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(32, 32)
        self.xfc = nn.Linear(32, 32)
        self.proj = nn.Linear(32, 32)

    def forward(self, x):
        return self.proj(self.xfc(self.fc(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 32)
        self.blocks = nn.Sequential(Block(), Block())
        self.prehead = nn.Linear(32, 32)
        self.head = nn.Linear(32, 4)

    def forward(self, x):
        return self.head(self.prehead(self.blocks(self.fc(x))))


model = get_peft_model(Net(), LoraConfig(  # gpumem: input_shape=(16,) batch_size=8
    r=4, lora_alpha=8, target_modules=TARGETS, modules_to_save=SAVE, layers_to_transform=LAYERS, bias=BIAS))
model.print_trainable_parameters()
model.base_model.model.blocks[0].proj.requires_grad_(True)  # PEFT's attributes: the model it wraps
"""


def matching(targets, layers=None, bias="none", save=("head",)) -> str:
    return (MATCHING.replace("TARGETS", repr(targets)).replace("LAYERS", repr(layers)).replace("BIAS", repr(bias))
            .replace("SAVE", repr(list(save))))


@pytest.mark.parametrize("source", [
    matching(["fc"]),  # a name matches it and every dotted suffix: fc, blocks.0.fc, not blocks.0.xfc
    matching(r"blocks\.\d\.(fc|proj)", bias="lora_only"),  # a str matches the whole name
    matching(["fc", "proj"], layers=[1], bias="all"),  # only the modules under the numbered layer 1
    matching("all-linear", save=["blocks.1.proj"]),  # every Linear but those of modules_to_save
], ids=["suffix", "regex", "layers", "all-linear"])
def test_which_modules_peft_picks(source):
    """PEFT picks the targets; modules_to_save matches a plain string suffix, so "head" wraps both
    head and prehead. Trainable parameters as the real peft leaves them (and the file after it:
    blocks.0.proj, whatever it holds, trains), and every leaf call."""
    real = torch_oracle.load(source)["model"]
    result = analyse_source(source, "net.py", Settings(optimizer="adam", device="cpu"), model="model")
    ours = result.models[0]
    assert (ours.params, ours.trainable_params) == (sum(p.numel() for p in real.parameters()),
                                                    sum(p.numel() for p in real.parameters() if p.requires_grad))
    truth = torch_oracle.profile(real, torch_oracle.make_input((8, 16)))
    assert [(l.name, l.type, l.output_shape) for l in ours.layers if l.module] == [
        (c.name, c.type, c.output_shape) for c in truth.calls]


@pytest.mark.parametrize("config, said", [
    ("LoraConfig(target_modules=['fc'], use_dora=True)", "LoraConfig(use_dora=True) is not modelled"),
    ("LoraConfig(target_modules=['fc'], task_type=TaskType.SEQ_CLS)", "other than CAUSAL_LM are not modelled"),
    ("LoraConfig(target_modules=['nothing'])", "Target modules nothing not found in the base model"),
    ("LoraConfig(target_modules=['blocks'])", "Target module Sequential is not supported"),
    # "prehead" gets an adapter (modules_to_save excludes a dotted name only), then ends with "head"
    ("LoraConfig(target_modules='all-linear', modules_to_save=['head'])", "modules_to_save cannot be applied"),
])
def test_what_is_not_modelled_is_said(config, said):
    """A setting the stand-in does not model stops the analysis (GPM900) and names it, as do PEFT's
    own errors; nothing is guessed."""
    source = MATCHING.split("model = ")[0] + (
        f"model = get_peft_model(Net(), {config})  # gpumem: input_shape=(16,) batch_size=8\n")
    result = analyse_source(source, "net.py", Settings(optimizer="adam", device="cpu"), model="model")
    assert not result.models
    assert any(said in d.message for d in result.diagnostics if d.code == "GPM900"), result.diagnostics


def test_a_hook_that_makes_the_embeddings_require_grad_is_said():
    """transformers' enable_input_require_grads() (which PeftModel forwards) registers a forward hook
    that changes what backward reaches; not modelled, so not ignored either."""
    source = matching(["fc"]).replace("model.print_trainable_parameters()", "model.enable_input_require_grads()")
    result = analyse_source(source, "net.py", Settings(optimizer="adam", device="cpu"), model="model")
    assert not result.models
    assert any("enable_input_require_grads() (a forward hook" in d.message for d in result.diagnostics
               if d.code == "GPM900"), result.diagnostics


CONVS = """\
import torch.nn as nn
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(8, 16, 5, stride=2, padding=2)
        self.c3 = nn.Conv3d(16, 8, 3, padding=1, groups=8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = F.relu(self.c1(x))
        x = self.c3(x.view(x.shape[0], 16, 4, 4, 4))
        return self.fc(x.mean(dim=(2, 3, 4)))


model = get_peft_model(Net(), LoraConfig(r=8, target_modules=["c1", "c3"], lora_dropout=0.1))
"""


def test_conv1d_and_conv3d_targets():
    """A is a conv with the target's kernel, stride and padding, B a 1x1 one in the target's groups:
    parameters, leaf calls and the step (float32, Adam) as PEFT builds and runs them."""
    settings = Settings(optimizer="adam", device="cpu", input_shape=(8, 128), batch_size=4)
    ours = analyse_source(CONVS, "net.py", settings, model="model").models[0]
    torch.manual_seed(0)
    real = torch_oracle.load(CONVS)["model"]
    assert (ours.params, ours.trainable_params) == (sum(p.numel() for p in real.parameters()),
                                                    sum(p.numel() for p in real.parameters() if p.requires_grad))
    truth = torch_oracle.profile(real, torch_oracle.make_input((4, 8, 128)))
    assert [(l.name, l.type, l.output_shape) for l in ours.layers if l.module] == [
        (c.name, c.type, c.output_shape) for c in truth.calls]
    with torch_oracle.no_cyclic_collection():
        step = torch_oracle.measure_step(real, (4, 8, 128), "float32", "adam")
    assert abs(ours.memory.peak - step.peak) <= TOLERANCE * step.peak, (ours.memory.peak, step.peak)
    assert (ours.memory.gradients, ours.memory.optimizer) == (step.gradients, step.optimizer_state)


HF = """\
from peft import LoraConfig, TaskType, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

base = LlamaForCausalLM(LlamaConfig(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                                    num_key_value_heads=2, vocab_size=1000))
model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, CONFIG))
model.print_trainable_parameters()
"""
HF_CASES = {
    "q_v": ('target_modules=["q_proj", "v_proj"]', "float32"),
    "causal_lm": ('target_modules=["q_proj", "v_proj"], task_type=TaskType.CAUSAL_LM', "bfloat16"),
    # all-linear leaves out the output layer, lm_head (get_output_embeddings)
    "all_linear": ('target_modules="all-linear", task_type="CAUSAL_LM"', "amp-bf16"),
    "save_lm_head": ('target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], modules_to_save=["lm_head"]',
                     "float32"),
}


@pytest.mark.parametrize("key", list(HF_CASES))
def test_lora_on_a_transformers_llama(tmp_path, key):
    """get_peft_model on LlamaForCausalLM read from transformers' source: parameters, trainable
    parameters, every leaf call and the step's peak (Adam, batch 4 of 32 token ids) as the real peft
    package builds and runs it."""
    pytest.importorskip("transformers")
    import torchvision_oracle  # noqa: F401  (stubs torchvision registrations that transformers imports)

    config, dtype = HF_CASES[key]
    source = HF.replace("CONFIG", config)
    script = tmp_path / "train.py"
    script.write_text(source)
    settings = Settings(optimizer="adam", device="cpu", input_shape=(32,), input_dtype="int64", batch_size=4,
                        dtype=dtype)
    result = analyse_source(source, str(script), settings, model="model")
    assert result.models, result.diagnostics
    ours = result.models[0]
    torch.manual_seed(0)
    real = torch_oracle.load(source)["model"]
    assert (ours.params, ours.trainable_params) == (sum(p.numel() for p in real.parameters()),
                                                    sum(p.numel() for p in real.parameters() if p.requires_grad))
    truth = torch_oracle.profile(real, torch.zeros(4, 32, dtype=torch.int64))
    assert [(l.name, l.type, l.output_shape) for l in ours.layers if l.module] == [
        (c.name, c.type, c.output_shape) for c in truth.calls]
    with torch_oracle.no_cyclic_collection():
        step = torch_oracle.measure_step(real, (4, 32), "int64", "adam", dtype=dtype)
    assert abs(ours.memory.peak - step.peak) <= TOLERANCE * step.peak, (ours.memory.peak, step.peak)
    assert (ours.memory.gradients, ours.memory.optimizer) == (step.gradients, step.optimizer_state)
