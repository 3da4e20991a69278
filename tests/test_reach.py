"""Models built the way projects build them: factories, configs, partial, imports across files.

The oracle imports fixtures/reach_pkg for real (only the tests do); gpumem reads the same
files through their imports and must agree on parameters and every leaf call.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
import torch  # noqa: E402
import torch_oracle  # noqa: E402

from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
PKG = FIXTURES / "reach_pkg"
SHAPE = (3, 32, 32)


@pytest.fixture(scope="module")
def reach_pkg():
    sys.path.insert(0, str(FIXTURES))
    try:
        import reach_pkg.models.net as net
        yield net
    finally:
        sys.path.remove(str(FIXTURES))


def analyse(path: Path, model=None, **settings):
    settings = Settings(input_shape=SHAPE, batch_size=4, device="cpu", **settings)
    result = analyse_source(path.read_text(), str(path), settings, model=model)
    assert len(result.models) == 1, (result.error, result.skipped)
    return result.models[0]


def assert_matches(report, model: torch.nn.Module, shape=SHAPE):
    truth = torch_oracle.profile(model, torch.randn(4, *shape))
    assert report.params == truth.params
    assert [(r.name, r.type, r.output_shape) for r in report.layers if r.module] == [
        (c.name, c.type, c.output_shape) for c in truth.calls]


def test_a_script_whose_model_comes_from_a_factory_in_its_package(reach_pkg):
    """train.py: `from reach_pkg.models.net import build; model = build(width=8, depth=3)`."""
    report = analyse(PKG / "train.py")
    assert report.name == "model"
    assert_matches(report, reach_pkg.build(width=8, depth=3))


@pytest.mark.parametrize("expression, build", [
    ("build", lambda net: net.build()),
    ("build(width=24)", lambda net: net.build(width=24)),
    ("Net(NetConfig(depth=3, widths=[2, 1, 3]))", lambda net: net.Net(net.NetConfig(depth=3, widths=[2, 1, 3]))),
])
def test_a_model_named_by_an_expression(reach_pkg, expression, build):
    """Relative (`..blocks`) and absolute (`reach_pkg.config`) imports, a dataclass config with a
    default_factory, functools.partial norm layers, **kwargs forwarding, a classmethod, an
    nn.Sequential subclass, a staticmethod passed to self.apply, init loops over self.modules()."""
    report = analyse(PKG / "models" / "net.py", model=expression)
    assert report.name == expression
    assert_matches(report, build(reach_pkg))


@pytest.mark.parametrize("expression", ["Net()", "Net(blocks=3, spec='id_1')"])
def test_a_model_that_computes_its_structure(reach_pkg, expression):
    """A module-level `if` on os.environ (the code's default, not this machine's), a builder object
    called like a function, a generator, dataclasses.replace/asdict/fields, re and itertools on config
    strings, math.erf, issubclass, dir(), a function a package re-exports over its own submodule,
    a BatchNorm2d subclass reading its buffers and calling F.batch_norm."""
    import reach_pkg.builder as builder

    report = analyse(PKG / "builder.py", model=expression)
    assert_matches(report, eval(expression, vars(builder)))


def test_an_import_gpumem_cannot_follow_is_named(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    script = tmp_path / "pkg" / "net.py"
    script.write_text("import torch.nn as nn\nfrom .missing import Block\n\n\n"
                      "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                      "        self.block = Block(3)\n\n    def forward(self, x):\n        return self.block(x)\n")
    result = analyse_source(script.read_text(), str(script), Settings(input_shape=SHAPE))
    assert not result.models
    assert result.skipped == [("Net", "line 8: cannot follow the import of pkg.missing.Block: module pkg has no "
                                      "name 'missing' that gpumem can find")]


@pytest.mark.parametrize("source, reason", [
    ("from notinstalled.models import resnet\n\nmodel = resnet(3)\n",
     "'model' could not be resolved: notinstalled.models.resnet() is not known to gpumem: no source for module "
     "notinstalled on the search path"),
    ("import torch.nn as nn\nfrom .blocks import Block\n\nmodel = nn.Sequential(Block(3))\n",
     "line 4: 'model' could not be resolved: 'Block' could not be read: relative import .blocks outside a "
     "package (or above its top)"),
])
def test_a_script_whose_import_cannot_be_followed(tmp_path, source, reason):
    script = tmp_path / "net.py"
    script.write_text(source)
    result = analyse_source(source, str(script), Settings(input_shape=SHAPE), model="model")
    assert result.skipped == [("model", reason)]


TRAIN = """\
from torchvision.models import resnet18

model = resnet18(num_classes=10)
"""


def test_a_training_script_that_imports_its_model_from_torchvision(tmp_path):
    """The most common way a model enters a script: gpumem reads torchvision's installed source."""
    import torchvision_oracle

    (tmp_path / "train.py").write_text(TRAIN)
    (tmp_path / "pyproject.toml").write_text('[tool.gpumem]\nbudget = "200MiB"\n\n'
                                             '[tool.gpumem.models."train.py::model"]\n'
                                             'input_shape = [3, 224, 224]\nbatch_size = 8\n')
    truth = sum(p.numel() for p in torchvision_oracle.torchvision.models.resnet18(num_classes=10).parameters())
    assert truth == 11_181_642
    report = subprocess.run([sys.executable, "-m", "flake8_gpumem.cli", "report", "train.py", "--format", "json"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    [model] = json.loads(report.stdout)["models"]
    assert (model["name"], model["params"], model["input_shape"]) == ("model", truth, [8, 3, 224, 224])
    lint = subprocess.run([sys.executable, "-m", "flake8", "--select", "GPM0,GPM1,GPM2,GPM3", "train.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert lint.returncode == 1, lint.stdout + lint.stderr
    assert lint.stdout.startswith("train.py:3:1: GPM100 model needs "), lint.stdout
    assert "over the 200.0 MiB budget" in lint.stdout


FINETUNE = """\
import torch.nn as nn
from torchvision import models


def initialize_model(model_name, num_classes, feature_extract, use_pretrained=True):
    model_ft = None
    input_size = 0
    if model_name == "resnet":
        model_ft = models.resnet18(PRETRAINED)
        model_ft.fc = nn.Linear(model_ft.fc.in_features, num_classes)
        input_size = 224
    elif model_name == "alexnet":
        model_ft = models.alexnet(PRETRAINED)
        model_ft.classifier[6] = nn.Linear(model_ft.classifier[6].in_features, num_classes)
        input_size = 224
    elif model_name == "vgg":
        model_ft = models.vgg11_bn(PRETRAINED)
        model_ft.classifier[6] = nn.Linear(model_ft.classifier[6].in_features, num_classes)
        input_size = 224
    elif model_name == "squeezenet":
        model_ft = models.squeezenet1_0(PRETRAINED)
        model_ft.classifier[1] = nn.Conv2d(512, num_classes, kernel_size=(1, 1), stride=(1, 1))
        model_ft.num_classes = num_classes
        input_size = 224
    elif model_name == "densenet":
        model_ft = models.densenet121(PRETRAINED)
        model_ft.classifier = nn.Linear(model_ft.classifier.in_features, num_classes)
        input_size = 224
    elif model_name == "inception":
        model_ft = models.inception_v3(PRETRAINED)
        model_ft.AuxLogits.fc = nn.Linear(model_ft.AuxLogits.fc.in_features, num_classes)
        model_ft.fc = nn.Linear(model_ft.fc.in_features, num_classes)
        input_size = 299
    else:
        print("Invalid model name, exiting...")
        exit()
    return model_ft, input_size


model_ft, input_size = initialize_model(MODEL, 10, True, use_pretrained=True)
"""


def finetune_source(model: str, pretrained: str) -> str:
    """PyTorch's fine-tuning tutorial's helper (without its requires_grad loop), one factory argument
    spelled as `pretrained`."""
    return FINETUNE.replace("PRETRAINED", pretrained).replace("MODEL", repr(model))


@pytest.mark.parametrize("model, argument", [("resnet", "weights=None"), ("densenet", "weights=None"),
                                             ("resnet", "pretrained=use_pretrained"),
                                             ("squeezenet", "pretrained=use_pretrained")])
def test_a_helper_that_builds_one_of_several_torchvision_models(tmp_path, model, argument):
    """`from torchvision import models` names torchvision's own `from torchvision import models`:
    gpumem followed that import into itself without end ("an expression nests too deeply"). With
    `pretrained=True` the model has the parameters of `weights=None` (PyTorch runs that spelling:
    the other would download the weights)."""
    import torchvision_oracle  # noqa: F401  (imports torchvision beside the CPU torch)

    namespace = {}
    exec(compile(finetune_source(model, "weights=None"), "finetune.py", "exec"), namespace)
    truth = sum(p.numel() for p in namespace["model_ft"].parameters())
    path = tmp_path / "finetune.py"
    path.write_text(finetune_source(model, argument))
    result = analyse_source(path.read_text(), str(path), Settings(input_shape=(3, 224, 224), batch_size=2,
                                                                  device="cpu"), model="model_ft")
    assert [(m.name, m.params) for m in result.models] == [("model_ft", truth)], result.diagnostics


@pytest.mark.parametrize("imports, factory", [("from torchvision import models", "models.resnet18"),
                                               ("import torchvision", "torchvision.models.resnet18")])
def test_a_torchvision_factory_reached_through_its_package_is_a_model(tmp_path, imports, factory):
    """torchvision's names begin with "torch" too: they are not torch's, which are models only as
    containers (nn.Sequential(...), not torch.randn(...))."""
    path = tmp_path / "train.py"
    path.write_text(f"{imports}\n\nmodel = {factory}(num_classes=10)\n")
    result = analyse_source(path.read_text(), str(path), Settings(input_shape=(3, 224, 224), batch_size=2,
                                                                  device="cpu"))
    assert [(m.name, m.params) for m in result.models] == [("model", 11_181_642)], result.diagnostics


@pytest.mark.parametrize("call, name, kwargs", [
    ("models.resnet50(pretrained=True)", "resnet50", {}),
    ("models.resnet50(pretrained=False, num_classes=10)", "resnet50", {"num_classes": 10}),
    ("models.resnet50(True)", "resnet50", {}),  # positional, as before torchvision 0.13
    ("models.squeezenet1_1(pretrained=True)", "squeezenet1_1", {}),
    ("models.resnet50(weights=models.ResNet50_Weights.IMAGENET1K_V1)", "resnet50", {}),
    ("models.resnet18(weights=models.ResNet18_Weights.DEFAULT)", "resnet18", {}),
    ("models.efficientnet_b0(weights='DEFAULT')", "efficientnet_b0", {}),
])
def test_a_torchvision_factory_given_pretrained_is_read_through_its_decorator(tmp_path, call, name, kwargs):
    """torchvision takes `pretrained=` through its `@handle_legacy_interface`, which gpumem reads
    as any function: it makes `weights=` a member of the weights enum, whose categories set
    `num_classes`. The weights are never loaded (`load_state_dict` changes no size): the model has
    the parameters its constructor built, those of `weights=None` with the same classes."""
    import torchvision_oracle

    model = getattr(torchvision_oracle.torchvision.models, name)(weights=None, **kwargs)
    truth = sum(p.numel() for p in model.parameters())
    path = tmp_path / "finetune.py"
    path.write_text(f"from torchvision import models\n\nmodel = {call}\n")
    result = analyse_source(path.read_text(), str(path), Settings(input_shape=(3, 224, 224), batch_size=2,
                                                                  device="cpu"))
    assert [(m.name, m.params) for m in result.models] == [("model", truth)], result.diagnostics


DECORATED = """\
import functools

import torch.nn as nn


def widened(factor):
    def decorate(build):
        @functools.wraps(build)
        def wrapper(*args, width=8, **kwargs):
            return build(*args, width=width * factor, **kwargs)
        return wrapper
    return decorate


@functools.lru_cache(maxsize=None)
def depth():
    return 3


@widened(2)
def mlp(width=8):
    return nn.Sequential(*[nn.Linear(width, width) for _ in range(depth())], nn.Linear(width, 2))


model = mlp(width=WIDTH)
"""


@pytest.mark.parametrize("width", ["4", "mlp.__name__.count('m') * 4"])
def test_a_decorator_that_rewrites_arguments_is_read(width):
    """A decorator is read like any call (here it doubles the width, under the wrapped function's
    name); one of a library gpumem does not read (functools.lru_cache) gives the function back."""
    source = DECORATED.replace("WIDTH", width)
    namespace = {}
    exec(compile(source, "decorated.py", "exec"), namespace)
    truth = sum(p.numel() for p in namespace["model"].parameters())
    assert truth == 3 * (8 * 8 + 8) + 8 * 2 + 2
    result = analyse_source(source, "decorated.py", Settings(input_shape=(8,), batch_size=2, device="cpu"))
    assert [(m.name, m.params) for m in result.models] == [("model", truth)], result.diagnostics


def test_a_loader_that_edits_the_state_dict_it_loads_is_said_not_read(tmp_path):
    """What torch.hub loads is never read: densenet's loader renames the keys of the state dict
    before loading it, so `densenet121(pretrained=True)` is a GPM900, not a count."""
    path = tmp_path / "finetune.py"
    path.write_text("from torchvision import models\n\nmodel = models.densenet121(pretrained=True)\n")
    result = analyse_source(path.read_text(), str(path), Settings(input_shape=(3, 224, 224), batch_size=2))
    assert result.models == [] and [d.code for d in result.diagnostics] == ["GPM900"]


def test_pretrained_weights_for_other_classes_are_refused_as_torchvision_refuses_them(tmp_path):
    """ImageNet's weights have 1,000 classes: torchvision raises before it would load them, and
    gpumem says the same, not a count for a model PyTorch never builds."""
    import torchvision_oracle

    with pytest.raises(ValueError) as refused:
        torchvision_oracle.torchvision.models.resnet50(pretrained=True, num_classes=10)
    assert str(refused.value) == "The parameter 'num_classes' expected value 1000 but got 10 instead."
    path = tmp_path / "finetune.py"
    path.write_text("from torchvision import models\n\nmodel = models.resnet50(pretrained=True, num_classes=10)\n")
    result = analyse_source(path.read_text(), str(path), Settings(input_shape=(3, 224, 224), batch_size=2))
    assert [d.message for d in result.diagnostics] == [
        f"model: 'model' could not be resolved: the code raises ValueError: {refused.value}"]


def test_a_factory_of_a_torch_named_library_without_source_is_said(tmp_path):
    """A library whose name begins with "torch" (torchaudio, not installed here) is not torch: its
    factory is a model gpumem cannot read, said so, not a call to skip without a word."""
    path = tmp_path / "speech.py"
    path.write_text("import torchaudio\n\nmodel = torchaudio.models.wav2vec2_base()\n")
    result = analyse_source(path.read_text(), str(path), Settings(input_shape=(16000,), batch_size=2))
    assert [d.message for d in result.diagnostics] == [
        "model: 'model' could not be resolved: torchaudio.models.wav2vec2_base() is not known to gpumem: no source "
        "for module torchaudio on the search path"]


BLOCKS = """\
import torch.nn as nn


class Block(nn.Module):
    def __init__(self, channels=64):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


class Stage(nn.Module):  # gpumem: input_shape=(64, 8, 8)
    def __init__(self, block=Block):
        super().__init__()
        self.blocks = nn.Sequential(block(), block())

    def forward(self, x):
        return self.blocks(x)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 64, 3, padding=1)
        self.stage = Stage()

    def forward(self, x):
        return self.stage(self.stem(x))
"""


def test_blocks_are_not_models_under_the_project_wide_input_shape():
    """Block (built by Stage) and Stage (built by Net) would meet a 3-channel input they were never meant
    for (a false GPM300); Stage has an input shape of its own, so it is analysed at that shape."""
    result = analyse_source(BLOCKS, "net.py", project=Settings(input_shape=SHAPE, batch_size=4))
    assert [(m.name, m.input_shape) for m in result.models] == [("Stage", (4, 64, 8, 8)), ("Net", (4, 3, 32, 32))]
    assert [d.code for d in result.diagnostics] == []
    named = analyse_source(BLOCKS, "net.py", project=Settings(input_shape=(64, 8, 8), batch_size=4), model="Block")
    assert [m.name for m in named.models] == ["Block"]  # named, it is reported
    # a block is found by the names a statement spells, non-ASCII ones too ...
    project = Settings(input_shape=SHAPE, batch_size=4)
    spelt = analyse_source(BLOCKS.replace("Block", "Блок"), "net.py", project=project)
    assert [m.name for m in spelt.models] == ["Stage", "Net"] and spelt.diagnostics == []
    # ... and a name only in a docstring or a comment builds nothing: Block, built by no one, is a model
    # of its own, and its 64-channel conv meets the project's 3-channel input
    mentioned = BLOCKS.replace("nn.Sequential(block(), block())", "nn.Identity()  # not Block()").replace(
        "block=Block", "").replace("class Net(nn.Module):", 'class Net(nn.Module):\n    """Blocks: see Block."""')
    result = analyse_source(mentioned, "net.py", project=project)
    assert [d.message.split(":")[0] for d in result.diagnostics if d.code == "GPM300"] == ["Block"]


FACTORIES = """\
from dataclasses import dataclass
from typing import ClassVar

import torch.nn as nn


@dataclass
class NetConfig:
    registry: ClassVar[dict] = {}
    width: int = 8
    depth: int = 2


class Block(nn.Module):
    def __init__(self, width=8):
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        return self.conv(x).relu()


class Net(nn.Module):
    def __init__(self, cfg: NetConfig = NetConfig(16, 3), block=Block):
        super().__init__()
        self.stem = nn.Conv2d(3, cfg.width, 3, padding=1)
        self.blocks = nn.Sequential(*[block(cfg.width) for _ in range(cfg.depth)])

    def forward(self, x):
        return self.blocks(self.stem(x))


def _create(cfg, **kwargs):
    return Net(cfg, **kwargs)


def net_small(**kwargs) -> Net:
    return _create(NetConfig(4, 1), block=Block, **kwargs)


model_cfgs = dict(small=NetConfig(4, 1), large=NetConfig(32, 4))
"""


def test_a_class_a_factory_returns_is_a_model_and_its_blocks_are_not():
    """timm's and torchvision's files: factories name every class, the model they return (`-> Net`) and
    the blocks they pass. Under a project-wide shape Net is analysed with its defaults (NetConfig(16, 3):
    ClassVar is not a field), Block is not, and `model_cfgs = dict(...)` is no model."""
    result = analyse_source(FACTORIES, "nets.py", project=Settings(input_shape=SHAPE, batch_size=4, device="cpu"))
    assert [m.name for m in result.models] == ["Net"] and result.diagnostics == []
    namespace = {}
    exec(compile(FACTORIES, "nets.py", "exec"), namespace)
    assert namespace["Net"]().blocks[2].conv.in_channels == 16  # the defaults the analysis must take
    assert_matches(result.models[0], namespace["Net"]())


def test_a_call_given_a_table_is_a_model_only_when_named():
    """`default_cfgs = generate_default_cfgs({...})`, thousands of lines in timm: a call given a display
    of more than 64 items is a table, not evaluated as a candidate (it cost a fifth of the plugin's time
    on timm's model files); named in the model table, it is analysed like any other."""
    entries = ", ".join(f'"net_{i}": {i}' for i in range(65))
    source = FACTORIES + f"\n\ndef from_table(table) -> Net:\n    return Net(NetConfig(len(table) % 7, 1))\n\n\n" \
                         f"tabled = from_table({{{entries}}})\n"
    project = Settings(input_shape=SHAPE, batch_size=4, device="cpu")
    assert [m.name for m in analyse_source(source, "nets.py", project=project).models] == ["Net"]
    named = analyse_source(source, "nets.py", project=project, per_model={"tabled": Settings()})
    assert [m.name for m in named.models] == ["Net", "tabled"]
    commented = source.replace("tabled = from_table(", "tabled = from_table(  # gpumem: batch_size=4\n    ")
    assert [m.name for m in analyse_source(commented, "nets.py", project=project).models] == ["Net", "tabled"]
    namespace = {}
    exec(compile(source, "nets.py", "exec"), namespace)
    assert_matches(named.models[1], namespace["tabled"])


CONFIG_TABLES = """\
import collections
import copy
from collections import OrderedDict, defaultdict

import torch.nn as nn


class Cfg:
    def __init__(self):
        self.tags = []


def _cfg(url="", **kwargs):
    return {"url": url, **kwargs}


def generate_default_cfgs(cfgs):
    out = defaultdict(Cfg)
    for k, v in cfgs.items():
        out[k].tags.append(v)
    return out


def ordered(items):
    table = OrderedDict()
    for i, item in enumerate(items):
        table[item] = i
    return table


def counted(items):
    if not items:
        return None
    return collections.Counter(items)


def build(width):
    net = nn.Sequential(nn.Linear(width, width))
    return net


def clone(net):
    return copy.deepcopy(net)


def rebuilt(width):
    out = {}
    for out in [nn.Linear(width, width)]:
        pass
    return out


default_cfgs = generate_default_cfgs({"a": _cfg(url="a", hf_hub_id="x"), "b": _cfg(url="b")})
ordered_cfgs = ordered(["a", "b"])
counts = counted(["a", "a"])
model = build(8)
copied = clone(nn.Linear(8, 8))
rebound = rebuilt(8)
"""


def test_a_function_that_returns_a_container_builds_no_model():
    """timm's `default_cfgs = generate_default_cfgs({...})` returns the defaultdict it fills: no
    model, told from its returns without running it (it was reported as a model gpumem cannot
    read, once per timm model file). A factory, a copy and a name a loop rebinds are still
    models; Python itself says which names hold one."""
    namespace = {}
    exec(compile(CONFIG_TABLES, "tables.py", "exec"), namespace)
    truth = sorted(k for k, v in namespace.items() if isinstance(v, torch.nn.Module))
    result = analyse_source(CONFIG_TABLES, "tables.py", project=Settings(input_shape=(8,), batch_size=4, device="cpu"))
    assert sorted(m.name for m in result.models) == truth == ["copied", "model", "rebound"]
    assert result.diagnostics == []


STR_ENUM = """\
from enum import Enum

import torch.nn as nn


class Format(str, Enum):
    NCHW = "NCHW"
    NHWC = "NHWC"


class Stage(nn.Module):
    def __init__(self, width, fmt):
        super().__init__()
        self.fmt = Format(fmt)
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.norm = nn.LayerNorm(width) if self.fmt is Format.NHWC else nn.BatchNorm2d(width)

    def forward(self, x):
        x = self.conv(x)
        if self.fmt == Format.NHWC:
            return self.norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return self.norm(x)


class Net(nn.Module):
    def __init__(self, fmt="NHWC"):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.stages = nn.Sequential(Stage(8, fmt), Stage(8, Format.NCHW), Stage(8, "NHWC"))

    def forward(self, x):
        return self.stages(self.stem(x))
"""


def test_a_str_enum_called_with_a_value_gives_its_member():
    """timm picks layouts with `self.fmt = Format(fmt)` and `self.fmt is Format.NHWC` (a str
    enum). gpumem made `Format("NHWC")` a plain object equal to no member and built the other
    branch's layers, silently; now the call gives the member, and string literals are interned as
    Python's compiler interns them, so that `is` holds too."""
    result = analyse_source(STR_ENUM, "enums.py", project=Settings(input_shape=SHAPE, batch_size=4, device="cpu"))
    assert [m.name for m in result.models] == ["Net"], (result.error, result.skipped)
    namespace = {}
    exec(compile(STR_ENUM, "enums.py", "exec"), namespace)
    net = namespace["Net"]()
    assert [type(s.norm).__name__ for s in net.stages] == ["LayerNorm", "BatchNorm2d", "LayerNorm"]
    assert_matches(result.models[0], net)


MAIN_GUARD = """\
import torch.nn as nn

DEPTH = 4
if __name__ == "__main__":
    DEPTH = 99
NAME = __name__


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(*[nn.Linear(8, 8) for _ in range(DEPTH)])
        self.head = nn.Linear(8, 2 if NAME == "pkg.net" else 3)

    def forward(self, x):
        return self.head(self.layers(x))
"""


def test_a_flag_set_under_the_main_guard_keeps_its_module_level_value(tmp_path):
    """A model file is read as a module, whose `__name__` is the name it is imported under, never
    "__main__": what the guarded block sets is what running the file as a script would build."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    path = tmp_path / "pkg" / "net.py"
    path.write_text(MAIN_GUARD)
    result = analyse_source(MAIN_GUARD, str(path), project=Settings(input_shape=(8,), batch_size=4, device="cpu"))
    assert [d.message for d in result.diagnostics] == []
    namespace = {"__name__": "pkg.net"}
    exec(compile(MAIN_GUARD, str(path), "exec"), namespace)
    net = namespace["Net"]()
    assert len(net.layers) == 4 and net.head.out_features == 2
    assert result.models[0].params == 4 * (8 * 8 + 8) + 8 * 2 + 2
    assert_matches(result.models[0], net, shape=(8,))


NEEDS_ARGS = """\
import torch.nn as nn


class Head(nn.Module):
    def __init__(self, width, *, classes, bias=True):
        super().__init__()
        self.fc = nn.Linear(width, classes, bias=bias)

    def forward(self, x):
        return self.fc(x)
"""


def test_a_class_whose_constructor_needs_arguments_is_read_only_when_they_are_given():
    """Without its arguments it cannot be built: reported where GPM900 is shown, skipped unread where it
    is not (the plugin's default), and analysed once the model table gives them."""
    project = Settings(input_shape=(16,), batch_size=4, device="cpu")
    shown = analyse_source(NEEDS_ARGS, "head.py", project=project)
    assert [d.message for d in shown.diagnostics] == ["Head: Head.__init__ is missing the argument 'width'"]
    hidden = analyse_source(NEEDS_ARGS, "head.py", project=project, report_unshaped=False)
    assert hidden.models == [] and hidden.diagnostics == [] and hidden.skipped == []
    given = analyse_source(NEEDS_ARGS, "head.py", project=project, report_unshaped=False,
                           per_model={"Head": Settings(args={"width": 16, "classes": 3})})
    assert [(m.name, m.params) for m in given.models] == [("Head", 16 * 3 + 3)]
    unreadable = NEEDS_ARGS.replace("class Head(nn.Module):", "class Head(nn.Module):  # gpumem: batch_size=four")
    bad = analyse_source(unreadable, "head.py", project=project, report_unshaped=False)
    assert [d.code for d in bad.diagnostics] == ["GPM001", "GPM900"]  # bad configuration is still said


@pytest.mark.parametrize("imports", ["from torchvision import models", "import torchvision.models as models",
                                     "import torchvision\nmodels = torchvision.models"],
                         ids=["from-import", "import-as", "attribute"])
def test_a_torchvision_factory_through_its_models_package(imports):
    """torchvision's __init__ imports its own submodule (`from torchvision import models`), and a
    factory's path starts with "torch" without being torch's: the model is read either way."""
    import torchvision_oracle  # noqa: F401  (torchvision importable beside the CPU torch)
    from torchvision.models import resnet18

    from flake8_gpumem.analysis import analyse_source

    source = f"{imports}\nmodel = models.resnet18(num_classes=7)  # gpumem: input_shape=(3, 64, 64) batch_size=2\n"
    result = analyse_source(source, "train.py")
    assert [(m.name, m.params) for m in result.models] == [
        ("model", sum(p.numel() for p in resnet18(num_classes=7).parameters()))], result.skipped


RAISES = """\
import torch.nn as nn


def head(classes):
    if classes < 1:
        raise ValueError(f"classes must be positive, got {classes}")
    return nn.Linear(8, classes)


model = head(CLASSES)
"""


def test_what_the_code_raises_is_said():
    """A model whose code raises is not built: the GPM900 says what it raises, with its message."""
    result = analyse_source(RAISES.replace("CLASSES", "0"), "head.py", Settings(input_shape=(8,), batch_size=2))
    assert [d.message for d in result.diagnostics] == [
        "model: 'model' could not be resolved: the code raises ValueError: classes must be positive, got 0"]
    built = analyse_source(RAISES.replace("CLASSES", "3"), "head.py", Settings(input_shape=(8,), batch_size=2))
    assert [(m.name, m.params) for m in built.models] == [("model", 8 * 3 + 3)]


CATCHES = """
import torch.nn as nn


def activation(layer):
    try:
        return layer(inplace=True)  # nn.GELU takes no inplace: Python raises TypeError
    except TypeError:
        return layer()


def width(n):
    try:
        if n > 4:
            raise ValueError("too wide")
        return n
    except (KeyError, ValueError) as exc:
        return 4


model = nn.Sequential(nn.Linear(8, width(16)), activation(nn.GELU), activation(nn.ReLU))
"""


def test_what_python_raises_is_caught_by_the_code_around_it():
    """timm's create_act_layer tries `inplace=` and falls back on a TypeError; an exception the code
    raises itself is caught by its handler too. Linear(8, 4) has 8 * 4 + 4 parameters; the GELU is
    built without `inplace`, the ReLU with it."""
    result = analyse_source(CATCHES, "act.py", Settings(input_shape=(8,), batch_size=2))
    assert [(m.name, m.params) for m in result.models] == [("model", 8 * 4 + 4)]
    model = torch_oracle.load(CATCHES)["model"]
    assert [(r.type, tuple(r.output_shape)) for r in result.models[0].layers if r.module] == [
        (type(m).__name__, (2, 4)) for m in model]


def test_a_slice_of_a_list_assigned_is_read():
    """timm's val2tuple pads a list by slice assignment: [4] becomes [4, 4, 4], so the Linear has
    8 * 12 + 12 parameters."""
    source = ("import torch.nn as nn\n\n\ndef val2tuple(x, n):\n    x = list(x)\n"
              "    x[-1:-1] = [x[-1] for _ in range(n - len(x))]\n    return tuple(x)\n\n\n"
              "model = nn.Sequential(nn.Linear(8, sum(val2tuple([4], 3))))\n")
    result = analyse_source(source, "pad.py", Settings(input_shape=(8,), batch_size=2))
    assert [(m.name, m.params) for m in result.models] == [("model", 8 * 12 + 12)]


IDIOMS = """
import functools
import logging
import operator

import torch
import torch.nn as nn

_logger = logging.getLogger(__name__)


class Net(nn.Module):  # gpumem: input_shape=(8,)
    def __init__(self):
        super().__init__()
        width = functools.reduce(operator.mul, [2, 3, 4], 1)
        _logger.warning("width %d", width)
        self.register_buffer("table", torch.zeros(size=(width, 2)))
        self.fc = nn.Linear(8, width)

    def forward(self, x):
        return self.fc(x) + self.table[:, 0]
"""


def test_library_idioms_timm_builds_with():
    """functools.reduce(operator.mul, ...) is 2 * 3 * 4 = 24 (MViTv2), a module's logger logs
    (Qwen3's ViT), torch.zeros(size=...) (BEiT): Linear(8, 24) has 8 * 24 + 24 parameters."""
    result = analyse_source(IDIOMS, "idioms.py", Settings(batch_size=2))
    assert [(m.name, m.params, m.layers[0].output_shape) for m in result.models] == [("Net", 8 * 24 + 24, (2, 24))]


NESTED_PARTIAL = """\
import functools
import torch.nn as nn

norm = functools.partial(functools.partial(nn.BatchNorm2d, eps=1e-3), momentum=0.01)
width = len(norm.func.__name__) + len(norm.keywords)  # "BatchNorm2d", eps and momentum: 13


class Net(nn.Module):  # gpumem: input_shape=(3, 8, 8) batch_size=2
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3)
        self.norm = norm(width, **norm.keywords)

    def forward(self, x):
        return self.norm(self.conv(x))
"""


def test_a_partial_of_a_partial_is_flattened_as_python_flattens_it():
    """Python's partial(partial(f, a), b) is partial(f, a, b): its .func is the class (timm unwraps a
    norm layer's partial once, then reads the class's __name__)."""
    model = torch_oracle.instantiate(torch_oracle.load(NESTED_PARTIAL), "Net")
    result = analyse_source(NESTED_PARTIAL, "net.py")
    assert [(m.name, m.params) for m in result.models] == [("Net", sum(p.numel() for p in model.parameters()))], (
        result.skipped)
