"""Models from Hugging Face diffusers, read from its installed source, never imported by gpumem.

diffusers loads its names lazily (`_import_structure` dicts, `_LazyModule`); the imports a type
checker follows sit under `if TYPE_CHECKING or DIFFUSERS_SLOW_IMPORT:`. Its models record their
__init__ arguments into a config through `@register_to_config`, pick blocks by name and return a
`BaseOutput` (a dict whose first item is the sample). The oracle imports the library (only the
tests do); the step is one noise prediction: MSE of the output against noise of its shape."""
import pytest

from flake8_gpumem.analysis import analyse_source
from flake8_gpumem.config import Named, Settings
from flake8_gpumem.interpreter import imports
from flake8_gpumem.interpreter.core import Interpreter
from flake8_gpumem.interpreter.objects import Class, Q, Scope

torch = pytest.importorskip("torch")
import torchvision_oracle  # noqa: E402,F401  (stubs torchvision registrations that diffusers' imports reach)
import torch_oracle  # noqa: E402

BATCH = 2
# the small sizes: two resolutions, one layer per block, 8 groups
UNET = ('UNet2DModel(sample_size=32, block_out_channels=(32, 64), down_block_types=("DownBlock2D", '
        '"AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"), layers_per_block=1, norm_num_groups=8)')
COND_UNET = ('UNet2DConditionModel(sample_size=16, in_channels=4, out_channels=4, block_out_channels=(32, 64), '
             'down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", '
             '"CrossAttnUpBlock2D"), layers_per_block=1, norm_num_groups=8, cross_attention_dim=32, '
             'attention_head_dim=8)')
# (name, per-sample shape, dtype) of forward's tensors; a name: given by keyword. The timestep is a
# per-sample int64 scalar; the text encoder's states are 77 tokens of cross_attention_dim.
IMAGE = [(None, (3, 32, 32), "float32"), (None, (), "int64")]
LATENT = [(None, (4, 16, 16), "float32"), (None, (), "int64"), ("encoder_hidden_states", (77, 32), "float32")]
# DiT on 32 x 32 latents in patches of 2 (256 tokens), conditioned on the timestep and a class label
DIT = ("DiTTransformer2DModel(num_attention_heads=2, attention_head_dim=16, in_channels=4, num_layers=2, "
       "sample_size=32, patch_size=2, num_embeds_ada_norm=10)")
LABELLED = [(None, (4, 32, 32), "float32"), ("timestep", (), "int64"), ("class_labels", (), "int64")]


@pytest.mark.parametrize("path", ["diffusers.UNet2DModel", "diffusers.models.UNet2DConditionModel",
                                  "diffusers.models.unets.unet_2d.UNet2DModel", "diffusers.DiTTransformer2DModel"])
def test_diffusers_names_are_found_where_the_library_defines_them(path):
    pytest.importorskip("diffusers")
    import importlib

    module, _, name = path.rpartition(".")
    resolver = imports.resolver(imports.roots_for(""))
    interp = Interpreter(Scope({}), resolver=resolver)
    found = interp.follow(Q(path, module), None)
    assert isinstance(found, Class)
    truth = getattr(importlib.import_module(module), name)
    assert (found.name, found.scope.root().file.module) == (name, truth.__module__)


def _read_and_measure(tmp_path, build: str, inputs: list, dtype: str = "float32"):
    """gpumem's report of `model = <build>` from a script, the same model built by diffusers, its
    leaf calls and a measured training step (Adam; MSE against noise of the output's shape)."""
    diffusers = pytest.importorskip("diffusers")
    head = build.partition("(")[0]
    script = tmp_path / "train.py"
    script.write_text(f"from diffusers import {head}\n\nmodel = {build}\n")
    names = [n for n, _, _ in inputs]
    shapes = tuple(Named(n, s) if n else s for n, s, _ in inputs)
    settings = Settings(input_shape=shapes, input_dtype=tuple(d for _, _, d in inputs), batch_size=BATCH,
                        device="cpu", loss="mse", dtype=dtype)
    result = analyse_source(script.read_text(), str(script), settings)
    assert [m.name for m in result.models] == ["model"], (result.error, result.skipped)
    torch.manual_seed(0)
    model = eval(build, {head: getattr(diffusers, head)})
    xs = [torch_oracle.make_input((BATCH, *s), d) for _, s, d in inputs]
    truth = torch_oracle.profile(model, [x for n, x in zip(names, xs) if n is None],
                                 {n: x for n, x in zip(names, xs) if n is not None})
    measured = torch_oracle.measure_step(model, [(BATCH, *s) for _, s, _ in inputs], [d for _, _, d in inputs],
                                         dtype=dtype, loss="mse", names=names)
    return result.models[0], truth, measured


@pytest.mark.parametrize("build, inputs, dtype", [
    (UNET, IMAGE, "float32"), (COND_UNET, LATENT, "float32"), (COND_UNET, LATENT, "amp-bf16"),
    (DIT, LABELLED, "float32")])
def test_a_diffusers_model_is_read_exactly_and_its_step_peak_measured(tmp_path, build, inputs, dtype):
    """Blocks chosen by name (`get_down_block`), `Attention` with SDPA (`AttnProcessor2_0`), the
    sinusoidal timestep embedding, cross attention on `encoder_hidden_states`; the output a
    `UNet2DOutput` (`Transformer2DModelOutput`), whose `.sample` the loss takes. DiT: adaptive
    LayerNorm-Zero on the timestep and class label, and `reshape(shape=...)` by keyword."""
    report, truth, measured = _read_and_measure(tmp_path, build, inputs, dtype)
    _exact_and_within_3_percent(report, truth, measured)


def _exact_and_within_3_percent(report, truth, measured):
    """The parameter count and every leaf call's name, type and output shape as diffusers' model
    has them; the step's peak within 3% of MemTracker's."""
    leaves = [(r.name, r.type, r.output_shape) for r in report.layers if r.module]
    assert (report.params, leaves) == (truth.params, [(c.name, c.type, c.output_shape) for c in truth.calls])
    error = (report.memory.peak - measured.peak) / measured.peak
    assert abs(error) <= 0.03, (report.memory.peak, measured.peak, measured.categories)


def _saved_unet(folder):
    """The small UNet saved by diffusers itself (config.json and weights) in `folder`."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    eval(UNET, {"UNet2DModel": diffusers.UNet2DModel}).save_pretrained(folder)
    return diffusers


def _report(tmp_path, text, dtype=None, **settings):
    script = tmp_path / "train.py"
    script.write_text(text)
    return analyse_source(text, str(script), Settings(
        input_shape=tuple(s for _, s, _ in IMAGE), input_dtype=(dtype or "float32", "int64"), batch_size=BATCH,
        device="cpu", loss="mse", **settings))


def test_from_pretrained_reads_a_local_folders_config_and_loads_in_the_dtype_given(tmp_path):
    """`UNet2DModel.from_pretrained(folder, torch_dtype=torch.bfloat16)`: `from_config` of the folder's
    config.json, its weights (and so the step) in bfloat16, against diffusers loading the same folder."""
    folder = tmp_path / "tiny-unet"
    diffusers = _saved_unet(folder)
    result = _report(tmp_path, f"import torch\nfrom diffusers import UNet2DModel\n\n"
                               f"model = UNet2DModel.from_pretrained({str(folder)!r}, torch_dtype=torch.bfloat16)\n",
                     dtype="bfloat16")
    assert [m.name for m in result.models] == ["model"], (result.error, result.skipped)
    model = diffusers.UNet2DModel.from_pretrained(folder, torch_dtype=torch.bfloat16)
    assert next(model.parameters()).dtype == torch.bfloat16
    xs = [torch_oracle.make_input((BATCH, *s), "bfloat16" if d == "float32" else d) for _, s, d in IMAGE]
    truth = torch_oracle.profile(model, xs)
    measured = torch_oracle.measure_step(model, [(BATCH, *s) for _, s, _ in IMAGE], [d for _, _, d in IMAGE],
                                         dtype="bfloat16", loss="mse")
    _exact_and_within_3_percent(result.models[0], truth, measured)


def test_load_config_then_from_config_builds_the_folders_model(tmp_path):
    folder = tmp_path / "tiny-unet"
    diffusers = _saved_unet(folder)
    result = _report(tmp_path, f"from diffusers import UNet2DModel\n\n"
                               f"model = UNet2DModel.from_config(UNet2DModel.load_config({str(folder)!r}))\n")
    assert [m.name for m in result.models] == ["model"], (result.error, result.skipped)
    truth = diffusers.UNet2DModel.from_config(diffusers.UNet2DModel.load_config(folder))
    assert result.models[0].params == sum(p.numel() for p in truth.parameters())


def test_a_model_whose_config_is_nowhere_on_this_machine_is_a_gpm900_and_hf_config_gives_it(tmp_path, monkeypatch):
    """A pipeline's UNet (`subfolder="unet"`) neither in a local folder nor in the Hugging Face cache:
    GPM900 naming the model and how to give its config; the hf_config setting then gives it."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    folder = tmp_path / "given"
    diffusers = _saved_unet(folder)
    text = "from diffusers import UNet2DModel\n\nmodel = UNet2DModel.from_pretrained('org/absent', subfolder='unet')\n"
    nowhere, given = (_report(tmp_path, text, **s) for s in ({}, {"hf_config": str(folder)}))
    messages = [d.message for d in nowhere.diagnostics if d.code == "GPM900"]
    assert (nowhere.models, len(messages)) == ([], 1)
    assert all(word in messages[0] for word in ("org/absent", "hf_config", "--hf-config"))
    truth = diffusers.UNet2DModel.from_pretrained(folder)
    assert [m.params for m in given.models] == [sum(p.numel() for p in truth.parameters())]
