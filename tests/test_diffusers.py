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
    (UNET, IMAGE, "float32"), (COND_UNET, LATENT, "float32"), (COND_UNET, LATENT, "amp-bf16")])
def test_a_diffusers_unet_is_read_exactly_and_its_step_peak_measured(tmp_path, build, inputs, dtype):
    """Blocks chosen by name (`get_down_block`), `Attention` with SDPA (`AttnProcessor2_0`), the
    sinusoidal timestep embedding, cross attention on `encoder_hidden_states`; the output a
    `UNet2DOutput`, whose `.sample` the loss takes."""
    report, truth, measured = _read_and_measure(tmp_path, build, inputs, dtype)
    _exact_and_within_3_percent(report, truth, measured)


def _exact_and_within_3_percent(report, truth, measured):
    """The parameter count and every leaf call's name, type and output shape as diffusers' model
    has them; the step's peak within 3% of MemTracker's."""
    leaves = [(r.name, r.type, r.output_shape) for r in report.layers if r.module]
    assert (report.params, leaves) == (truth.params, [(c.name, c.type, c.output_shape) for c in truth.calls])
    error = (report.memory.peak - measured.peak) / measured.peak
    assert abs(error) <= 0.03, (report.memory.peak, measured.peak, measured.categories)
