"""Layers PyTorch builds from other layers, written as the model source they are.

The interpreter reads this like user code, so their children get the same
qualified names (`self_attn`, `linear1`, ...) and the same rules as anywhere
else. Mirrors torch/nn/modules/transformer.py in training mode.
"""

LAYERS = ("MultiheadAttention", "LSTM", "GRU", "RNN", "TransformerEncoderLayer", "TransformerDecoderLayer",
          "TransformerEncoder", "TransformerDecoder", "Transformer")
# torch.distributed's checkpoint wrappers, by their qualified names, and the class here that is each
CHECKPOINT_WRAPPERS = {
    "torch.distributed.algorithms._checkpoint.checkpoint_wrapper.checkpoint_wrapper": "CheckpointWrapper",
    "torch.distributed.algorithms._checkpoint.checkpoint_wrapper.CheckpointWrapper": "CheckpointWrapper"}

SOURCE = '''
import copy
import functools
import math
import torch
import torch.nn.functional as F
from torch import nn


def _in_projection_packed(q, k, v, w, b):
    E = q.size(-1)
    if k is v:
        if q is k:
            proj = F.linear(q, w, b)
            proj = proj.unflatten(-1, (3, E)).unsqueeze(0).transpose(0, -2).squeeze(-2).contiguous()
            return proj[0], proj[1], proj[2]
        w_q, w_kv = w.split([E, E * 2])
        b_q, b_kv = (None, None) if b is None else b.split([E, E * 2])
        q_proj = F.linear(q, w_q, b_q)
        kv_proj = F.linear(k, w_kv, b_kv)
        kv_proj = kv_proj.unflatten(-1, (2, E)).unsqueeze(0).transpose(0, -2).squeeze(-2).contiguous()
        return q_proj, kv_proj[0], kv_proj[1]
    w_q, w_k, w_v = w.chunk(3)
    b_q, b_k, b_v = (None, None, None) if b is None else b.chunk(3)
    return F.linear(q, w_q, b_q), F.linear(k, w_k, b_k), F.linear(v, w_v, b_v)


class MultiheadAttention(nn.Module):
    def __init__(self, embed_dim, num_heads, dropout=0.0, bias=True, add_bias_kv=False, add_zero_attn=False,
                 kdim=None, vdim=None, batch_first=False, device=None, dtype=None):
        super().__init__()
        self.embed_dim = embed_dim
        self.kdim = kdim if kdim is not None else embed_dim
        self.vdim = vdim if vdim is not None else embed_dim
        self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
        self.num_heads = num_heads
        self.dropout = dropout
        self.batch_first = batch_first
        self.head_dim = embed_dim // num_heads
        if self.head_dim * num_heads != embed_dim:
            raise ValueError("embed_dim must be divisible by num_heads")
        if self._qkv_same_embed_dim:
            self.in_proj_weight = nn.Parameter(torch.empty((3 * embed_dim, embed_dim)))
        else:
            self.q_proj_weight = nn.Parameter(torch.empty((embed_dim, embed_dim)))
            self.k_proj_weight = nn.Parameter(torch.empty((embed_dim, self.kdim)))
            self.v_proj_weight = nn.Parameter(torch.empty((embed_dim, self.vdim)))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * embed_dim)) if bias else None
        self.out_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        if add_bias_kv:
            self.bias_k = nn.Parameter(torch.empty((1, 1, embed_dim)))
            self.bias_v = nn.Parameter(torch.empty((1, 1, embed_dim)))
        else:
            self.bias_k = None
            self.bias_v = None
        self.add_zero_attn = add_zero_attn

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if self.batch_first:
            if key is value:
                if query is key:
                    query = key = value = query.transpose(1, 0)
                else:
                    query, key = (x.transpose(1, 0) for x in (query, key))
                    value = key
            else:
                query, key, value = (x.transpose(1, 0) for x in (query, key, value))
        tgt_len, bsz, embed_dim = query.shape
        if embed_dim != self.embed_dim:
            raise ValueError("query's last dimension is not embed_dim")
        heads, head_dim = self.num_heads, self.head_dim
        if self._qkv_same_embed_dim:
            q, k, v = _in_projection_packed(query, key, value, self.in_proj_weight, self.in_proj_bias)
        else:
            b_q, b_k, b_v = (None, None, None) if self.in_proj_bias is None else self.in_proj_bias.chunk(3)
            q = F.linear(query, self.q_proj_weight, b_q)
            k = F.linear(key, self.k_proj_weight, b_k)
            v = F.linear(value, self.v_proj_weight, b_v)
        if self.bias_k is not None:
            k = torch.cat([k, self.bias_k.repeat(1, bsz, 1)])
            v = torch.cat([v, self.bias_v.repeat(1, bsz, 1)])
        q = q.view(tgt_len, bsz * heads, head_dim).transpose(0, 1)
        k = k.view(k.shape[0], bsz * heads, head_dim).transpose(0, 1)
        v = v.view(v.shape[0], bsz * heads, head_dim).transpose(0, 1)
        if self.add_zero_attn:
            k = torch.cat([k, torch.zeros((bsz * heads, 1, head_dim))], dim=1)
            v = torch.cat([v, torch.zeros((bsz * heads, 1, head_dim))], dim=1)
        src_len = k.size(1)
        if need_weights:
            q_scaled = q * math.sqrt(1.0 / float(head_dim))
            weights = torch.bmm(q_scaled, k.transpose(-2, -1))
            weights = F.softmax(weights, dim=-1)
            if self.dropout > 0.0:
                weights = F.dropout(weights, p=self.dropout)
            out = torch.bmm(weights, v)
            out = out.transpose(0, 1).reshape(tgt_len * bsz, embed_dim)
            out = F.linear(out, self.out_proj.weight, self.out_proj.bias)
            out = out.view(tgt_len, bsz, out.size(1))
            weights = weights.view(bsz, heads, tgt_len, src_len)
            if average_attn_weights:
                weights = weights.mean(dim=1)
        else:
            q = q.view(bsz, heads, tgt_len, head_dim)
            k = k.view(bsz, heads, src_len, head_dim)
            v = v.view(bsz, heads, src_len, head_dim)
            out = F.scaled_dot_product_attention(q, k, v, None, self.dropout, is_causal)
            out = out.permute(2, 0, 1, 3).reshape(bsz * tgt_len, embed_dim)
            out = F.linear(out, self.out_proj.weight, self.out_proj.bias)
            out = out.view(tgt_len, bsz, out.size(1))
            weights = None
        if self.batch_first:
            return out.transpose(1, 0), weights
        return out, weights


def _activation(activation):
    if activation == "relu":
        return F.relu
    if activation == "gelu":
        return F.gelu
    return activation


class _RNNBase(nn.Module):
    def _setup(self, mode, input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
               proj_size=0):
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        gates = {"lstm": 4, "gru": 3, "rnn_tanh": 1, "rnn_relu": 1}[mode]
        directions = 2 if bidirectional else 1
        real_hidden = proj_size if proj_size > 0 else hidden_size
        for layer in range(num_layers):
            for d in range(directions):
                width = input_size if layer == 0 else real_hidden * directions
                sfx = f"_l{layer}_reverse" if d == 1 else f"_l{layer}"
                setattr(self, "weight_ih" + sfx, nn.Parameter(torch.empty((gates * hidden_size, width))))
                setattr(self, "weight_hh" + sfx, nn.Parameter(torch.empty((gates * hidden_size, real_hidden))))
                if bias:
                    setattr(self, "bias_ih" + sfx, nn.Parameter(torch.empty(gates * hidden_size)))
                    setattr(self, "bias_hh" + sfx, nn.Parameter(torch.empty(gates * hidden_size)))
                else:
                    setattr(self, "bias_ih" + sfx, None)
                    setattr(self, "bias_hh" + sfx, None)
                if proj_size > 0:
                    setattr(self, "weight_hr" + sfx, nn.Parameter(torch.empty((proj_size, hidden_size))))
                else:
                    setattr(self, "weight_hr" + sfx, None)

    def forward(self, input, hx=None):
        x = input.transpose(0, 1) if self.batch_first else input
        if self.batch_first and self.mode == "lstm" and self.proj_size == 0 and x.dtype in ("float32", "bfloat16"):
            x = x.contiguous()  # the oneDNN path copies a batch-first input once
        steps, batch = x.shape[0], x.shape[1]
        directions = 2 if self.bidirectional else 1
        real_hidden = self.proj_size if self.proj_size > 0 else self.hidden_size
        h0 = torch.zeros((self.num_layers * directions, batch, real_hidden), dtype=x.dtype)
        c0 = (torch.zeros((self.num_layers * directions, batch, self.hidden_size), dtype=x.dtype)
              if self.mode == "lstm" else None)
        hs = []
        cs = []
        layer_input = x
        for layer in range(self.num_layers):
            outs = []
            kept = []
            for d in range(directions):
                sfx = f"_l{layer}_reverse" if d == 1 else f"_l{layer}"
                k = layer * directions + d
                frees_h0 = self.num_layers * directions * batch * real_hidden if d == 0 and layer == 0 else 0
                joined = d + 1 if directions == 2 else 0  # ATen keeps some of each direction until the cat
                res = torch._gpumem_rnn_layer(
                    None if c0 is None else c0[k], getattr(self, "weight_hr" + sfx), h0[k],
                    getattr(self, "weight_hh" + sfx), getattr(self, "bias_hh" + sfx), layer_input,
                    getattr(self, "weight_ih" + sfx), getattr(self, "bias_ih" + sfx), self.mode, frees_h0, joined,
                    x.dtype)
                outs.append(res[0])
                hs.append(res[1])
                if self.mode == "lstm":
                    cs.append(res[2])
                if joined:
                    kept.append(res[-1])
            layer_input = torch.cat(outs, -1) if directions == 2 else outs[0]
            if directions == 2:
                torch._gpumem_release(kept)
                res = kept = None
            if self.dropout > 0 and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout)
        out = layer_input.transpose(0, 1) if self.batch_first else layer_input
        if self.mode == "lstm":
            return out, (torch.stack(hs, 0), torch.stack(cs, 0))
        return out, torch.stack(hs, 0)


class LSTM(_RNNBase):
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__()
        self._setup("lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                    proj_size)


class GRU(_RNNBase):
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
                 bidirectional=False, device=None, dtype=None):
        super().__init__()
        self._setup("gru", input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional)


class RNN(_RNNBase):
    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        super().__init__()
        self._setup("rnn_" + nonlinearity, input_size, hidden_size, num_layers, bias, batch_first, dropout,
                    bidirectional)


class _TransformerLayer(nn.Module):
    def _sa_block(self, x):
        x = self.self_attn(x, x, x, need_weights=False)[0]
        return self.dropout1(x)

    def _feed_forward(self, x, dropout):
        return dropout(self.linear2(self.dropout(self.activation(self.linear1(x)))))


class TransformerEncoderLayer(_TransformerLayer):
    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True, device=None, dtype=None):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, bias=bias, batch_first=batch_first)
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias)
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = _activation(activation)

    def forward(self, src, src_mask=None, src_key_padding_mask=None, is_causal=False):
        x = src
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x))
            x = x + self._ff_block(self.norm2(x))
        else:
            x = self.norm1(x + self._sa_block(x))
            x = self.norm2(x + self._ff_block(x))
        return x

    def _ff_block(self, x):
        return self._feed_forward(x, self.dropout2)


class TransformerDecoderLayer(_TransformerLayer):
    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu",
                 layer_norm_eps=1e-5, batch_first=False, norm_first=False, bias=True, device=None, dtype=None):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=batch_first, bias=bias)
        self.multihead_attn = nn.MultiheadAttention(d_model, nhead, dropout=dropout, batch_first=batch_first,
                                                    bias=bias)
        self.linear1 = nn.Linear(d_model, dim_feedforward, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model, bias=bias)
        self.norm_first = norm_first
        self.norm1 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm2 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.norm3 = nn.LayerNorm(d_model, eps=layer_norm_eps, bias=bias)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = _activation(activation)

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=False, memory_is_causal=False):
        x = tgt
        if self.norm_first:
            x = x + self._sa_block(self.norm1(x))
            x = x + self._mha_block(self.norm2(x), memory)
            x = x + self._ff_block(self.norm3(x))
        else:
            x = self.norm1(x + self._sa_block(x))
            x = self.norm2(x + self._mha_block(x, memory))
            x = self.norm3(x + self._ff_block(x))
        return x

    def _mha_block(self, x, mem):
        x = self.multihead_attn(x, mem, mem, need_weights=False)[0]
        return self.dropout2(x)

    def _ff_block(self, x):
        return self._feed_forward(x, self.dropout3)


class TransformerEncoder(nn.Module):
    def __init__(self, encoder_layer, num_layers, norm=None, enable_nested_tensor=True, mask_check=True):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(encoder_layer) for i in range(num_layers)])
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, src, mask=None, src_key_padding_mask=None, is_causal=None):
        output = src
        for mod in self.layers:
            output = mod(output)
        if self.norm is not None:
            output = self.norm(output)
        return output


class TransformerDecoder(nn.Module):
    def __init__(self, decoder_layer, num_layers, norm=None):
        super().__init__()
        self.layers = nn.ModuleList([copy.deepcopy(decoder_layer) for i in range(num_layers)])
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, tgt, memory, tgt_mask=None, memory_mask=None, tgt_key_padding_mask=None,
                memory_key_padding_mask=None, tgt_is_causal=None, memory_is_causal=False):
        output = tgt
        for mod in self.layers:
            output = mod(output, memory)
        if self.norm is not None:
            output = self.norm(output)
        return output


class Transformer(nn.Module):
    def __init__(self, d_model=512, nhead=8, num_encoder_layers=6, num_decoder_layers=6, dim_feedforward=2048,
                 dropout=0.1, activation="relu", custom_encoder=None, custom_decoder=None, layer_norm_eps=1e-5,
                 batch_first=False, norm_first=False, bias=True, device=None, dtype=None):
        super().__init__()
        layer = (d_model, nhead, dim_feedforward, dropout, activation, layer_norm_eps, batch_first, norm_first, bias)
        norm = dict(eps=layer_norm_eps, bias=bias)
        self.encoder = custom_encoder if custom_encoder is not None else nn.TransformerEncoder(
            nn.TransformerEncoderLayer(*layer), num_encoder_layers, nn.LayerNorm(d_model, **norm))
        self.decoder = custom_decoder if custom_decoder is not None else nn.TransformerDecoder(
            nn.TransformerDecoderLayer(*layer), num_decoder_layers, nn.LayerNorm(d_model, **norm))
        self.d_model = d_model
        self.nhead = nhead
        self.batch_first = batch_first

    def forward(self, src, tgt, src_mask=None, tgt_mask=None, memory_mask=None, src_key_padding_mask=None,
                tgt_key_padding_mask=None, memory_key_padding_mask=None, src_is_causal=None, tgt_is_causal=None,
                memory_is_causal=False):
        memory = self.encoder(src, mask=src_mask, src_key_padding_mask=src_key_padding_mask)
        return self.decoder(tgt, memory, tgt_mask=tgt_mask, memory_mask=memory_mask)

    @staticmethod
    def generate_square_subsequent_mask(sz, device=None, dtype=None):
        return torch.triu(torch.full((sz, sz), float("-inf"), dtype=dtype, device=device), diagonal=1)


class CheckpointWrapper(nn.Module):
    """checkpoint_wrapper(module, checkpoint_impl, checkpoint_fn, **kwargs): the module's forward under
    torch.utils.checkpoint.checkpoint (or checkpoint_fn), with those keywords (context_fn, ...)."""

    def __init__(self, mod, checkpoint_impl=None, checkpoint_fn=None, **checkpoint_fn_kwargs):
        super().__init__()
        self._checkpoint_wrapped_module = mod
        if checkpoint_fn is None:
            impl = torch.distributed.algorithms._checkpoint.checkpoint_wrapper.CheckpointImpl
            reentrant = checkpoint_impl == impl.REENTRANT
            self.checkpoint_fn = functools.partial(torch.utils.checkpoint.checkpoint, use_reentrant=reentrant,
                                                   **checkpoint_fn_kwargs)
        else:
            self.checkpoint_fn = functools.partial(checkpoint_fn, **checkpoint_fn_kwargs)

    def forward(self, *args, **kwargs):
        return self.checkpoint_fn(self._checkpoint_wrapped_module, *args, **kwargs)
'''
