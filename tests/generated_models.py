"""Seeded random models that PyTorch runs, for the memory model beyond the fixtures.

Each model is a `forward` over layers drawn from five families, as people write
them: CNNs (conv, batch norm, activations in and out of place, pooling, dropout,
residual blocks, a concatenated branch), MLPs (Linear, LayerNorm, residual
blocks), sequence models (Embedding, LSTM/GRU, TransformerEncoderLayer,
MultiheadAttention), decoders (transposed convolutions, interpolation, group and
instance norm, depthwise convolutions) and 1-d signal models (Conv1d, pooling). Sizes are drawn so that every model runs; the same seed
gives the same models.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

ACTIVATIONS = ["nn.ReLU()", "nn.ReLU(inplace=True)", "nn.GELU()", "nn.SiLU()", "nn.LeakyReLU(0.1)", "nn.Tanh()",
               "nn.Sigmoid()", "nn.ELU()", "nn.Hardswish()"]


@dataclass(frozen=True)
class Generated:
    name: str
    source: str
    input_shape: tuple  # without the batch
    input_dtype: str
    batch: int
    family: str


def generate(seed: int) -> Generated:
    rng = random.Random(seed)
    family = rng.choice([_cnn, _cnn, _mlp, _sequence, _decoder, _conv1d])
    return family(rng, f"Gen{seed}")


def _cnn(rng: random.Random, name: str) -> Generated:
    c, size = rng.choice([1, 3, 4]), rng.choice([16, 24, 32])
    shape = (c, size, size)
    init, body = [], []
    for i in range(rng.randint(2, 5)):
        kind = rng.choice(["conv", "conv", "residual", "branch", "pool"]) if size >= 8 else "conv"
        out = rng.choice([8, 16, 24, 32])
        if kind == "conv":
            k = rng.choice([1, 3, 5])
            stride = rng.choice([1, 1, 2]) if size >= 8 else 1
            init.append(f"self.conv{i} = nn.Conv2d({c}, {out}, {k}, stride={stride}, padding={k // 2}, "
                        f"bias={rng.random() < 0.5})")
            body.append(f"x = self.conv{i}(x)")
            if rng.random() < 0.6:
                _add(init, body, f"bn{i}", f"nn.BatchNorm2d({out})")
            _add(init, body, f"act{i}", f"{rng.choice(ACTIVATIONS)}")
            c, size = out, (size + 2 * (k // 2) - k) // stride + 1
        elif kind == "residual":
            init.append(f"self.res{i} = nn.Sequential(nn.Conv2d({c}, {c}, 3, padding=1, bias=False), "
                        f"nn.BatchNorm2d({c}), {rng.choice(ACTIVATIONS)}, nn.Conv2d({c}, {c}, 3, padding=1))")
            body.append(f"x = x + self.res{i}(x)" if rng.random() < 0.5 else f"x = torch.relu(self.res{i}(x) + x)")
        elif kind == "branch":
            init.append(f"self.left{i} = nn.Conv2d({c}, {out}, 1)")
            init.append(f"self.right{i} = nn.Conv2d({c}, {out}, 3, padding=1)")
            body.append(f"x = torch.cat([self.left{i}(x), F.relu(self.right{i}(x))], dim=1)")
            c = 2 * out
        else:
            pool = rng.choice(["nn.MaxPool2d(2)", "nn.AvgPool2d(2)", "nn.MaxPool2d(3, stride=2, padding=1)"])
            _add(init, body, f"pool{i}", f"{pool}")
            size = (size - 1) // 2 + 1 if "3" in pool else size // 2
        if rng.random() < 0.2:
            _add(init, body, f"drop{i}", f"nn.Dropout{rng.choice(['', '2d'])}({rng.choice([0.1, 0.5])})")
    init.append(f"self.head = nn.Linear({c}, {rng.choice([2, 10])})")
    body += ["x = F.adaptive_avg_pool2d(x, 1).flatten(1)" if rng.random() < 0.5
             else "x = torch.flatten(F.adaptive_max_pool2d(x, 1), 1)", "return self.head(x)"]
    return Generated(name, _module(name, init, body), shape, "float32", rng.choice([2, 4, 8]), "cnn")


def _mlp(rng: random.Random, name: str) -> Generated:
    width = rng.choice([32, 64, 128, 256])
    shape = (width,)
    init, body = [], []
    for i in range(rng.randint(2, 5)):
        out = rng.choice([32, 64, 128, 256])
        if rng.random() < 0.3:
            init.append(f"self.block{i} = nn.Sequential(nn.Linear({width}, {out}), {rng.choice(ACTIVATIONS)}, "
                        f"nn.Linear({out}, {width}))")
            body.append(f"x = x + self.block{i}(x)")
            continue
        _add(init, body, f"fc{i}", f"nn.Linear({width}, {out}, bias={rng.random() < 0.8})")
        if rng.random() < 0.4:
            _add(init, body, f"norm{i}", f"nn.{rng.choice(['LayerNorm', 'BatchNorm1d'])}({out})")
        _add(init, body, f"act{i}", f"{rng.choice(ACTIVATIONS)}")
        if rng.random() < 0.3:
            _add(init, body, f"drop{i}", f"nn.Dropout({rng.choice([0.1, 0.5])})")
        width = out
    init.append(f"self.head = nn.Linear({width}, {rng.choice([1, 10])})")
    body.append("return self.head(x)")
    return Generated(name, _module(name, init, body), shape, "float32", rng.choice([4, 16, 64]), "mlp")


def _sequence(rng: random.Random, name: str) -> Generated:
    steps, dim = rng.choice([8, 16, 32]), rng.choice([16, 32, 64])
    init = [f"self.embed = nn.Embedding(500, {dim})"]
    body = ["x = self.embed(x)"]
    for i in range(rng.randint(1, 3)):
        kind = rng.choice(["encoder", "attention", "recurrent"])
        if kind == "encoder":
            init.append(f"self.enc{i} = nn.TransformerEncoderLayer({dim}, {rng.choice([2, 4])}, "
                        f"dim_feedforward={dim * rng.choice([2, 4])}, dropout={rng.choice([0.0, 0.1])}, "
                        f"batch_first=True, norm_first={rng.random() < 0.5})")
            body.append(f"x = self.enc{i}(x)")
        elif kind == "attention":
            init.append(f"self.attn{i} = nn.MultiheadAttention({dim}, {rng.choice([1, 2, 4])}, batch_first=True)")
            body.append(f"x = x + self.attn{i}(x, x, x, need_weights={rng.random() < 0.5})[0]")
        else:
            bi = rng.random() < 0.5
            hidden = dim // 2 if bi else dim
            init.append(f"self.rnn{i} = nn.{rng.choice(['LSTM', 'GRU'])}({dim}, {hidden}, "
                        f"num_layers={rng.choice([1, 2])}, batch_first=True, bidirectional={bi})")
            body.append(f"x, _ = self.rnn{i}(x)")
    init.append(f"self.head = nn.Linear({dim}, {rng.choice([2, 5])})")
    body.append("return self.head(x.mean(dim=1))" if rng.random() < 0.5 else "return self.head(x[:, -1])")
    return Generated(name, _module(name, init, body), (steps,), "int64", rng.choice([2, 4, 8]), "sequence")


def _decoder(rng: random.Random, name: str) -> Generated:
    """Upsampling: transposed convolutions, interpolation, group/instance norm, depthwise convolutions."""
    c, size = rng.choice([8, 16]), rng.choice([4, 6, 8])
    shape = (c, size, size)
    init, body = [], []
    for i in range(rng.randint(2, 4)):
        out = rng.choice([4, 8, 16])
        kind = rng.choice(["transposed", "interpolate", "depthwise", "plain"])
        if kind == "transposed":
            _add(init, body, f"up{i}", f"nn.ConvTranspose2d({c}, {out}, 4, stride=2, padding=1, bias={rng.random() < 0.5})")
        elif kind == "interpolate":
            mode = rng.choice(["'nearest'", "'bilinear', align_corners=False"])
            init.append(f"self.conv{i} = nn.Conv2d({c}, {out}, 3, padding=1)")
            body.append(f"x = self.conv{i}(F.interpolate(x, scale_factor=2, mode={mode}))")
        elif kind == "depthwise":
            init.append(f"self.dw{i} = nn.Conv2d({c}, {c}, 3, padding={rng.choice([1, 2])}, "
                        f"dilation={rng.choice([1, 2])}, groups={c})")
            init.append(f"self.pw{i} = nn.Conv2d({c}, {out}, 1)")
            body.append(f"x = self.pw{i}(self.dw{i}(x))")
        else:
            _add(init, body, f"conv{i}", f"nn.Conv2d({c}, {out}, 3, padding=1)")
        c = out
        norm = rng.choice(["", f"nn.GroupNorm({rng.choice([1, 2, 4])}, {c})", f"nn.InstanceNorm2d({c})",
                           f"nn.InstanceNorm2d({c}, affine=True)", f"nn.BatchNorm2d({c})"])
        if norm:
            _add(init, body, f"norm{i}", f"{norm}")
        _add(init, body, f"act{i}", f"{rng.choice(ACTIVATIONS + ['nn.PReLU()', 'nn.Softplus()', 'nn.Mish()'])}")
    init.append(f"self.out = nn.Conv2d({c}, {rng.choice([1, 3])}, 1)")
    body.append("return torch.sigmoid(self.out(x))" if rng.random() < 0.5 else "return self.out(x)")
    return Generated(name, _module(name, init, body), shape, "float32", rng.choice([2, 4]), "decoder")


def _conv1d(rng: random.Random, name: str) -> Generated:
    """Signals: Conv1d, BatchNorm1d, pooling with ceil_mode, a mean over time."""
    c, length = rng.choice([1, 2, 8]), rng.choice([64, 100, 128])
    shape = (c, length)
    init, body = [], []
    for i in range(rng.randint(2, 4)):
        out, k = rng.choice([8, 16, 32]), rng.choice([3, 5, 7])
        _add(init, body, f"conv{i}", f"nn.Conv1d({c}, {out}, {k}, stride={rng.choice([1, 2])}, padding={k // 2})")
        if rng.random() < 0.5:
            _add(init, body, f"bn{i}", f"nn.BatchNorm1d({out})")
        _add(init, body, f"act{i}", f"{rng.choice(ACTIVATIONS)}")
        if rng.random() < 0.4:
            pool = rng.choice(["nn.MaxPool1d(2)", "nn.AvgPool1d(3, stride=2, ceil_mode=True)", "nn.MaxPool1d(3, 2, 1)"])
            _add(init, body, f"pool{i}", f"{pool}")
        c = out
    init.append(f"self.head = nn.Linear({c}, {rng.choice([2, 5])})")
    body.append("return self.head(x.mean(dim=-1))" if rng.random() < 0.5 else "return self.head(x.amax(dim=2))")
    return Generated(name, _module(name, init, body), shape, "float32", rng.choice([4, 8, 16]), "conv1d")


def _add(init: list, body: list, attr: str, layer: str) -> None:
    """self.<attr> = <layer> in __init__, x = self.<attr>(x) in forward."""
    init.append(f"self.{attr} = {layer}")
    body.append(f"x = self.{attr}(x)")


def _module(name: str, init: list, body: list) -> str:
    lines = ["import torch", "import torch.nn as nn", "import torch.nn.functional as F", "", "",
             f"class {name}(nn.Module):", "    def __init__(self):", "        super().__init__()"]
    lines += [f"        {line}" for line in init]
    lines += ["", "    def forward(self, x):"] + [f"        {line}" for line in body]
    return "\n".join(lines) + "\n"


OPTIMIZERS = ("adam", "sgd", "sgd-momentum", "adamw", "rmsprop", "adagrad")


@dataclass(frozen=True)
class Outcome:
    model: Generated
    dtype: str
    optimizer: str
    estimate: int
    measured: int
    phase: str

    @property
    def error(self) -> float:
        return (self.estimate - self.measured) / self.measured


def run(seed: int, dtype: str) -> Outcome:
    """The generated model's training-step peak, estimated and measured (an optimizer per seed)."""
    import torch_oracle

    from flake8_gpumem.analysis import analyse_source
    from flake8_gpumem.config import Settings

    g = generate(seed)
    optimizer = OPTIMIZERS[seed % len(OPTIMIZERS)]
    settings = Settings(optimizer=optimizer, dtype=dtype, device="cpu", batch_size=g.batch, input_shape=g.input_shape,
                        input_dtype=g.input_dtype)
    memory = analyse_source(g.source, "generated.py", settings, model=g.name).models[0].memory
    torch_oracle.torch.manual_seed(0)
    model = torch_oracle.instantiate(torch_oracle.load(g.source), g.name)
    measured = torch_oracle.measure_step(model, (g.batch,) + g.input_shape, g.input_dtype, optimizer, dtype)
    return Outcome(g, dtype, optimizer, memory.peak, measured.peak, memory.peak_phase)
