"""x-transformers read from its installed source, never imported by gpumem: the oracle builds the
same model with the library itself and measures a real training step."""
import pytest

pytest.importorskip("torch")
pytest.importorskip("x_transformers")
import torch  # noqa: E402
import torch_oracle  # noqa: E402

from flake8_gpumem.analysis import analyse_source  # noqa: E402
from flake8_gpumem.config import Settings  # noqa: E402

# a small vocabulary and a long sequence: the attention's activations, not the weights, make the peak
WRAPPER = "TransformerWrapper(num_tokens=256, max_seq_len=128, attn_layers={})"
TOKENS, BATCH = 128, 2


@pytest.mark.parametrize("layers, dtype", [
    ("Decoder(dim=64, depth=2, heads=4)", "float32"),
    ("Decoder(dim=64, depth=2, heads=4)", "amp-bf16"),
    ("Encoder(dim=64, depth=2, heads=4)", "float32"),
    ("Decoder(dim=64, depth=2, heads=4, rotary_pos_emb=True, attn_flash=True, ff_glu=True)", "float32"),
    ("Decoder(dim=64, depth=2, heads=4, attn_kv_heads=2, attn_dropout=0.1, ff_dropout=0.1, use_rmsnorm=True)",
     "float32"),
])
def test_a_transformer_wrapper_is_read_from_the_library(tmp_path, layers, dtype):
    """`&=` on its options, iter()/next() over per-layer kwargs, packaging's version check against
    torch.__version__, torch.finfo(dtype).max masks, a ModuleList holding None for absent norms; in
    the step, einsum's copies of heads split out of a projection, softmax in float32 under AMP, the
    per-layer intermediates kept until the layers return."""
    source = f"from x_transformers import TransformerWrapper, Decoder, Encoder\n\nmodel = {WRAPPER.format(layers)}\n"
    script = tmp_path / "train.py"
    script.write_text(source)
    settings = Settings(input_shape=(TOKENS,), input_dtype="int64", batch_size=BATCH, device="cpu", dtype=dtype)
    result = analyse_source(source, str(script), settings, model="model")
    assert len(result.models) == 1, result.skipped
    report = result.models[0]

    namespace: dict = {}
    exec(compile(source, str(script), "exec"), namespace)
    model = namespace["model"]
    truth = torch_oracle.profile(model, torch.zeros(BATCH, TOKENS, dtype=torch.int64))
    assert report.params == truth.params
    assert [(r.name, r.type, r.output_shape) for r in report.layers if r.module] == [
        (c.name, c.type, c.output_shape) for c in truth.calls]
    measured = torch_oracle.measure_step(model, (BATCH, TOKENS), "int64", report.settings.optimizer, dtype)
    assert report.memory.peak == pytest.approx(measured.peak, rel=0.03)


def test_an_einx_call_is_said_not_known(tmp_path):
    """einx dispatches through a tracing backend gpumem does not read: the model stops there, by name."""
    source = ("from x_transformers import TransformerWrapper, Decoder\n\n"
              f"model = {WRAPPER.format('Decoder(dim=64, depth=1, heads=4, rel_pos_bias=True)')}\n")
    script = tmp_path / "train.py"
    script.write_text(source)
    settings = Settings(input_shape=(TOKENS,), input_dtype="int64", batch_size=BATCH, device="cpu")
    result = analyse_source(source, str(script), settings, model="model")
    assert not result.models
    assert result.skipped == [("model", "line 3: einx.subtract() is not known to gpumem")]
