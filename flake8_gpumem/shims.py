"""Libraries read from a stand-in source instead of their own, keyed by the module name a model imports.

PEFT's injection is dynamic beyond what the interpreter evaluates (importlib checks, registries of tuner
classes, quantisation dispatchers, hooks), and what of it decides memory is small: which modules it wraps,
the adapters it adds, what it freezes, and the forward it runs. `PEFT` is that part of peft 0.21.2's LoRA,
written as the source it mirrors (peft/mapping_func.py, peft_model.py, tuners/tuners_utils.py,
tuners/lora/layer.py, utils/other.py), with its module and parameter names, in training mode with the
default adapter settings. What it does not model raises, naming the setting, and so stops the analysis.
"""

PEFT = '''
import copy
import enum
import math
import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


class PeftType(str, enum.Enum):
    LORA = "LORA"


class TaskType(str, enum.Enum):
    SEQ_CLS = "SEQ_CLS"
    SEQ_2_SEQ_LM = "SEQ_2_SEQ_LM"
    CAUSAL_LM = "CAUSAL_LM"
    TOKEN_CLS = "TOKEN_CLS"
    QUESTION_ANS = "QUESTION_ANS"
    FEATURE_EXTRACTION = "FEATURE_EXTRACTION"


INCLUDE_LINEAR_LAYERS_SHORTHAND = "all-linear"
# settings that change what is built or run, and their defaults; any other value is not modelled
NOT_MODELLED = {"use_dora": False, "use_qalora": False, "layer_replication": None, "target_parameters": None,
                "trainable_token_indices": None, "alora_invocation_tokens": None, "megatron_config": None,
                "use_bdlora": None, "arrow_config": None, "kasa_config": None, "monteclora_config": None,
                "velora_config": None, "lora_bias": False, "fan_in_fan_out": False}


@dataclass
class LoraConfig:
    r: int = 8
    target_modules: object = None
    exclude_modules: object = None
    lora_alpha: int = 8
    lora_dropout: float = 0.0
    fan_in_fan_out: bool = False
    bias: str = "none"
    use_rslora: bool = False
    modules_to_save: object = None
    init_lora_weights: object = True
    layers_to_transform: object = None
    layers_pattern: object = None
    rank_pattern: dict = field(default_factory=dict)
    alpha_pattern: dict = field(default_factory=dict)
    megatron_config: object = None
    megatron_core: object = "megatron.core"
    trainable_token_indices: object = None
    loftq_config: object = field(default_factory=dict)
    eva_config: object = None
    corda_config: object = None
    lora_ga_config: object = None
    use_dora: bool = False
    velora_config: object = None
    alora_invocation_tokens: object = None
    use_qalora: bool = False
    qalora_group_size: int = 16
    monteclora_config: object = None
    layer_replication: object = None
    runtime_config: object = None
    lora_bias: bool = False
    target_parameters: object = None
    use_bdlora: object = None
    arrow_config: object = None
    kasa_config: object = None
    ensure_weight_tying: bool = False
    base_model_name_or_path: object = None
    revision: object = None
    peft_type: object = None
    task_type: object = None
    inference_mode: bool = False

    def __post_init__(self):
        self.peft_type = PeftType.LORA
        for name, default in NOT_MODELLED.items():
            if getattr(self, name) != default:
                raise NotImplementedError(f"LoraConfig({name}={getattr(self, name)!r}) is not modelled by gpumem")
        if self.task_type not in (None, TaskType.CAUSAL_LM):
            raise NotImplementedError(f"LoraConfig(task_type={self.task_type!r}): PEFT's task wrappers other than "
                                      "CAUSAL_LM are not modelled by gpumem; leave task_type out")
        if self.inference_mode:
            raise NotImplementedError("LoraConfig(inference_mode=True) trains nothing of the adapters")
        if self.bias not in ("none", "all", "lora_only"):
            raise NotImplementedError(f"Requested bias: {self.bias}, is not implemented.")
        if isinstance(self.target_modules, list):
            self.target_modules = set(self.target_modules)
        if isinstance(self.exclude_modules, list):
            self.exclude_modules = set(self.exclude_modules)
        if isinstance(self.target_modules, str) and self.layers_to_transform is not None:
            raise ValueError("`layers_to_transform` cannot be used when `target_modules` is a str.")
        if isinstance(self.target_modules, str) and self.layers_pattern is not None:
            raise ValueError("`layers_pattern` cannot be used when `target_modules` is a str.")
        if self.layers_pattern and self.layers_to_transform is None:
            raise ValueError("When `layers_pattern` is specified, `layers_to_transform` must also be specified. ")


def get_pattern_key(pattern_keys, key_to_match):
    for key in pattern_keys:
        if re.match(rf"(.*\\.)?({key})$", key_to_match):
            return key
    return key_to_match


def check_target_module_exists(config, key):
    """Whether the module named `key` gets an adapter: a str is a full regex match, a list (a set) a
    name or a dotted suffix; never a module of modules_to_save or of exclude_modules."""
    if config.exclude_modules:
        if isinstance(config.exclude_modules, str):
            if re.fullmatch(config.exclude_modules, key):
                return False
        elif key in config.exclude_modules or any(key.endswith(f".{k}") for k in config.exclude_modules):
            return False
    if config.modules_to_save:
        if any(re.match(rf"(^|.*\\.){m}($|\\..*)", key) for m in config.modules_to_save):
            return False
    if isinstance(config.target_modules, str):
        return re.fullmatch(config.target_modules, key) is not None
    if key in config.target_modules:
        return True
    found = any(key.endswith(f".{target_key}") for target_key in config.target_modules)
    indexes = config.layers_to_transform
    using_indexes = indexes is not None and (len(indexes) != 0 if isinstance(indexes, list) else True)
    if using_indexes and found:
        match = None
        patterns = config.layers_pattern
        if patterns is None or len(patterns) == 0:
            match = re.match(r".*?\\.[^.]*\\.(?P<idx>\\d+)\\.", key)
        else:
            for pattern in [patterns] if isinstance(patterns, str) else patterns:
                match = re.match(rf"(?:^|.*?\\.){pattern}\\.(?P<idx>\\d+)\\.", key)
                if match is not None:
                    break
        if match is None:
            return False
        index = int(match.groupdict().get("idx"))
        return index == indexes if isinstance(indexes, int) else index in indexes
    return found


def all_linear_layers(model):
    """target_modules="all-linear": every nn.Linear but a Hugging Face model's output layer (its
    get_output_embeddings, lm_head where it has one); transformers' Conv1D (GPT-2) wants fan_in_fan_out."""
    names = set()
    for name, module in model.named_modules():
        if module.__class__.__name__ == "Conv1D":
            raise NotImplementedError(f"target_modules='all-linear' reaches transformers' Conv1D {name}, which PEFT "
                                      "wraps with fan_in_fan_out=True, not modelled by gpumem")
        if isinstance(module, nn.Linear):
            names.add(name)
    if hasattr(model, "get_output_embeddings"):
        output_emb = model.get_output_embeddings()
        if output_emb is not None:
            names -= {name for name, module in model.named_modules() if module is output_emb}
    return names


class ParameterDict(nn.Module):
    """nn.ParameterDict as LoRA uses it: a parameter per adapter, named `<attribute>.<adapter>`
    (set and read with setattr/getattr)."""


class LoraLayer(nn.Module):
    """peft.tuners.lora.LoraLayer: the frozen base layer, and per adapter its dropout, A and B."""

    def __init__(self, base_layer, adapter_name, config, r, lora_alpha):
        super().__init__()
        self.base_layer = base_layer
        self.r = {}
        self.lora_alpha = {}
        self.scaling = {}
        self.lora_dropout = nn.ModuleDict({})
        self.lora_A = nn.ModuleDict({})
        self.lora_B = nn.ModuleDict({})
        self.lora_embedding_A = ParameterDict()
        self.lora_embedding_B = ParameterDict()
        self.lora_magnitude_vector = nn.ModuleDict()
        self.active_adapter = adapter_name
        if r <= 0:
            raise ValueError(f"`r` should be a positive integer value but the value passed is {r}")
        self.r[adapter_name] = r
        self.lora_alpha[adapter_name] = lora_alpha
        if config.lora_dropout > 0.0:
            self.lora_dropout[adapter_name] = nn.Dropout(p=config.lora_dropout)
        else:
            self.lora_dropout[adapter_name] = nn.Identity()
        self.add_adapter(adapter_name, r)
        self.scaling[adapter_name] = lora_alpha / math.sqrt(r) if config.use_rslora else lora_alpha / r

    def forward(self, x):
        result = self.base_layer(x)
        torch_result_dtype = result.dtype
        lora_A = self.lora_A[self.active_adapter]
        lora_B = self.lora_B[self.active_adapter]
        dropout = self.lora_dropout[self.active_adapter]
        scaling = self.scaling[self.active_adapter]
        if x.dtype != lora_A.weight.dtype:
            x = x.to(dtype=lora_A.weight.dtype)
        result = result + lora_B(lora_A(dropout(x))) * scaling
        return result.to(torch_result_dtype)


class Linear(LoraLayer):
    def add_adapter(self, adapter_name, r):
        self.lora_A[adapter_name] = nn.Linear(self.base_layer.in_features, r, bias=False)
        self.lora_B[adapter_name] = nn.Linear(r, self.base_layer.out_features, bias=False)


class ConvNd(LoraLayer):
    """Conv1d/2d/3d: A has the target's kernel, stride and padding, B is 1x1, in the target's groups."""

    def add_adapter(self, adapter_name, r):
        base = self.base_layer
        conv, ones = CONV_TYPES[[isinstance(base, t) for t, _ in CONV_TYPES].index(True)]
        self.lora_A[adapter_name] = conv(base.in_channels, r, base.kernel_size, base.stride, base.padding, bias=False)
        self.lora_B[adapter_name] = conv(r, base.out_channels, ones, ones, groups=base.groups, bias=False)


CONV_TYPES = [(nn.Conv1d, (1,)), (nn.Conv2d, (1, 1)), (nn.Conv3d, (1, 1, 1))]


class Embedding(LoraLayer):
    def add_adapter(self, adapter_name, r):
        base = self.base_layer
        setattr(self.lora_embedding_A, adapter_name, nn.Parameter(torch.randn((r, base.num_embeddings))))
        setattr(self.lora_embedding_B, adapter_name, nn.Parameter(torch.randn((base.embedding_dim, r))))

    def forward(self, x):
        result = self.base_layer(x)
        torch_result_dtype = result.dtype
        base = self.base_layer
        embedding_A = getattr(self.lora_embedding_A, self.active_adapter).T
        embedding_B = getattr(self.lora_embedding_B, self.active_adapter).T
        after_A = F.embedding(x, embedding_A, padding_idx=base.padding_idx, max_norm=base.max_norm,
                              norm_type=base.norm_type, scale_grad_by_freq=base.scale_grad_by_freq, sparse=base.sparse)
        adapter_output = (after_A @ embedding_B) * self.scaling[self.active_adapter]
        if hasattr(base, "embed_scale"):
            raise NotImplementedError("LoRA on an embedding with an embed_scale is not modelled by gpumem")
        result = result + adapter_output
        return result.to(torch_result_dtype)


def create_new_module(target, adapter_name, config, r, lora_alpha):
    if isinstance(target, nn.Embedding):
        return Embedding(target, adapter_name, config, r, lora_alpha)
    if isinstance(target, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return ConvNd(target, adapter_name, config, r, lora_alpha)
    if isinstance(target, nn.Linear):
        return Linear(target, adapter_name, config, r, lora_alpha)
    raise ValueError(f"Target module {target.__class__.__name__} is not supported by gpumem's model of PEFT's LoRA "
                     "(torch.nn.Linear, Conv1d/2d/3d and Embedding are)")


def get_submodule(model, key):
    module = model
    for part in key.split(".") if key else []:
        module = getattr(module, part)
    return module


class ModulesToSaveWrapper(nn.Module):
    """A module of modules_to_save: the original frozen, a trainable copy that runs in its place."""

    def __init__(self, module_to_save, adapter_name):
        super().__init__()
        if isinstance(module_to_save, (nn.ModuleDict, nn.ModuleList, LoraLayer)):
            raise TypeError(f"modules_to_save cannot be applied to modules of type {module_to_save.__class__.__name__}")
        self.original_module = module_to_save
        self.active_adapter = adapter_name
        self.modules_to_save = nn.ModuleDict({})
        self.modules_to_save[adapter_name] = copy.deepcopy(self.original_module)
        self.original_module.requires_grad_(False)
        self.modules_to_save[adapter_name].requires_grad_(True)

    def forward(self, *args, **kwargs):
        return self.modules_to_save[self.active_adapter](*args, **kwargs)


class LoraModel(nn.Module):
    prefix = "lora_"

    def __init__(self, model, config, adapter_name):
        super().__init__()
        self.model = model
        self.peft_config = {adapter_name: config}
        self.active_adapter = adapter_name
        self.inject_adapter(model, config, adapter_name)

    def inject_adapter(self, model, config, adapter_name):
        if isinstance(config.target_modules, str) and config.target_modules.lower() == INCLUDE_LINEAR_LAYERS_SHORTHAND:
            config.target_modules = all_linear_layers(model)
        if config.target_modules is None:
            raise NotImplementedError("LoraConfig without target_modules takes PEFT's table of module names per "
                                      "Hugging Face model type, not modelled by gpumem; name the modules")
        targeted = []
        for key, target in list(model.named_modules()):
            if key and check_target_module_exists(config, key):
                targeted.append(key)
                parent_key, _, target_name = key.rpartition(".")
                r = config.rank_pattern.get(get_pattern_key(config.rank_pattern.keys(), key), config.r)
                alpha = config.alpha_pattern.get(get_pattern_key(config.alpha_pattern.keys(), key), config.lora_alpha)
                new_module = create_new_module(target, adapter_name, config, r, alpha)
                setattr(get_submodule(model, parent_key), target_name, new_module)
        if not targeted:
            names = config.target_modules
            names = names if isinstance(names, str) else ", ".join(sorted(names))
            raise ValueError(f"Target modules {names} not found in the base model. "
                             "Please check the target modules and try again.")
        self.mark_only_adapters_as_trainable(model, config)
        if config.modules_to_save:
            for key in [key for key, _ in model.named_modules(remove_duplicate=False)]:
                if any(key.endswith(target_key) for target_key in config.modules_to_save):
                    parent_key, _, target_name = key.rpartition(".")
                    target = get_submodule(model, key)
                    if not isinstance(target, ModulesToSaveWrapper):
                        setattr(get_submodule(model, parent_key), target_name,
                                ModulesToSaveWrapper(target, adapter_name))

    def mark_only_adapters_as_trainable(self, model, config):
        for n, p in model.named_parameters():
            if self.prefix not in n:
                p.requires_grad = False
        if config.bias == "all":
            for n, p in model.named_parameters():
                if n == "bias" or n.endswith(".bias"):
                    p.requires_grad = True
        elif config.bias == "lora_only":
            for m in model.modules():
                if isinstance(m, LoraLayer) and m.base_layer.bias is not None:
                    m.base_layer.bias.requires_grad = True

    def forward(self, *args, **kwargs):
        return self.model.forward(*args, **kwargs)


class PeftModel(nn.Module):
    def __init__(self, model, peft_config, adapter_name="default", autocast_adapter_dtype=True,
                 low_cpu_mem_usage=False):
        super().__init__()
        if low_cpu_mem_usage:
            raise NotImplementedError("get_peft_model(low_cpu_mem_usage=True) leaves the adapters on the meta "
                                      "device; not modelled by gpumem")
        self.active_adapter = adapter_name
        self.peft_type = peft_config.peft_type
        self.base_model = LoraModel(model, peft_config, adapter_name)

    def get_base_model(self):
        return self.base_model.model

    def print_trainable_parameters(self):
        pass

    def enable_input_require_grads(self):
        raise NotImplementedError("enable_input_require_grads() (a forward hook that makes the embeddings' "
                                  "output require grad, so backward reaches the first layers' inputs) is not "
                                  "modelled by gpumem")

    def forward(self, *args, **kwargs):
        return self.get_base_model()(*args, **kwargs)


class PeftModelForCausalLM(PeftModel):
    """task_type="CAUSAL_LM": the base model called with its arguments by name (the path of every
    method that is not prompt learning)."""

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, output_attentions=None,
                output_hidden_states=None, return_dict=None, task_ids=None, **kwargs):
        return self.base_model(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                               labels=labels, output_attentions=output_attentions,
                               output_hidden_states=output_hidden_states, return_dict=return_dict, **kwargs)


def get_peft_model(model, peft_config, adapter_name="default", mixed=False, autocast_adapter_dtype=True,
                   revision=None, low_cpu_mem_usage=False):
    if not isinstance(peft_config, LoraConfig):
        raise NotImplementedError(f"{peft_config.__class__.__name__}: gpumem models PEFT's LoraConfig only")
    if mixed:
        raise NotImplementedError("get_peft_model(mixed=True) is not modelled by gpumem")
    wrapper = PeftModelForCausalLM if peft_config.task_type == TaskType.CAUSAL_LM else PeftModel
    return wrapper(model, peft_config, adapter_name, autocast_adapter_dtype, low_cpu_mem_usage)
'''

SOURCES = {"peft": PEFT}
