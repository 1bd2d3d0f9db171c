"""Decoder-only Transformer language model with from-scratch masked multi-head attention.

The IFT6135 (2020) scaffold's design, itself the Annotated Transformer's: word embedding scaled by
sqrt(n_units) plus sinusoidal positions, `n_blocks` pre-norm blocks

    x = x + dropout(self_attn(norm(x)))
    x = x + dropout(mlp(norm(x)))

a final norm, a linear output layer and log_softmax. Masks are (batch, seq, seq), 1 = may attend;
`causal_mask` gives the lower-triangular one a language model needs.

Scaffold quirks kept on purpose, so results compare with the course's:
- the attention dropout stays 0.1 whatever `dropout` is: make_model does not pass it on;
- the MLP width is fixed at 2048, whatever n_units is;
- the scaffold's LayerNorm divides by (unbiased std + eps), eps = 1e-6, not sqrt(var + eps)
  (layer_norm="torch" uses nn.LayerNorm instead);
- Glorot (xavier_uniform_) on every parameter with dim > 1 after construction overrides the
  attention linears' U(-k, k) weights; their biases keep U(-k, k).
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import ATTENTIONS, RunConfig
from ._recurrent import clones, uniform_linears
from .interface import continue_tokens

LAYER_NORMS = ("scaffold", "torch")
MLP_WIDTH = 2048  # scaffold quirk: fixed, whatever n_units is
ATTENTION_DROPOUT = 0.1  # scaffold quirk: make_model does not pass its dropout on
MASKED_SCORE = -1e9  # the Annotated Transformer's score for a masked position


def attention(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None,
              dropout: nn.Module | None = None) -> tuple[Tensor, Tensor]:
    """Scaled dot-product attention on (batch, heads, seq, d_k) tensors -> (output, normalised scores).

    `mask` broadcasts against the scores (batch, heads, seq_q, seq_k); 0 = may not attend.
    """
    d_k = query.size(-1)
    # 1. scores = Q K^T / sqrt(d_k): (batch, heads, seq_q, seq_k)
    scores = query @ key.transpose(-2, -1) / math.sqrt(d_k)
    # 2. masked positions get -1e9 (float16's lowest, -65504, under fp16 autocast), hence ~0 probability
    if mask is not None:
        scores = scores.masked_fill(mask == 0, max(MASKED_SCORE, torch.finfo(scores.dtype).min))
    # 3. normalise over the keys
    normalised = scores.softmax(dim=-1)
    # 4. dropout on the normalised scores
    if dropout is not None:
        normalised = dropout(normalised)
    # 5. output = scores @ V: (batch, heads, seq_q, d_k)
    return normalised @ value, normalised


def causal_mask(seq_len: int, device: torch.device | str | None = None) -> Tensor:
    """(1, seq, seq) bool, True on and below the diagonal: position i may attend to positions <= i."""
    lower = torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()  # (seq, seq)
    return lower.unsqueeze(0)  # (1, seq, seq): the same for every sequence of a batch


def subsequent_mask(size: int) -> Tensor:
    """The scaffold's name for `causal_mask`: (1, size, size) bool, True where attending is allowed."""
    return causal_mask(size)


class Batch:
    """The scaffold's (run_exp.py's) batch holder: `data` (batch, seq) and `mask` (batch, seq, seq).

    A position may attend to earlier positions whose token is not `pad`; run_exp.py's pad = -1 masks
    no token, so the mask is the causal one (what ptblm's training step uses).
    """

    def __init__(self, x: Tensor, pad: int = -1):
        self.data = x
        self.mask = self.make_mask(self.data, pad)

    @staticmethod
    def make_mask(data: Tensor, pad: int) -> Tensor:
        """(batch, seq) token ids -> (batch, seq, seq) bool: query i may attend to key j <= i that is not `pad`."""
        keys = (data != pad).unsqueeze(-2)  # (batch, seq) -> (batch, 1, seq): the same keys for every query
        return keys & causal_mask(data.size(-1), device=data.device)  # & (1, seq, seq) -> (batch, seq, seq)


class MultiHeadedAttention(nn.Module):
    """n_heads attention heads of size n_units / n_heads over learned query/key/value projections.

    fused=True computes the same thing with torch's scaled_dot_product_attention instead of `attention`.
    """

    def __init__(self, n_heads: int, n_units: int, dropout: float = 0.1, fused: bool = False):
        super().__init__()
        if n_units % n_heads:
            raise ValueError(f"MultiHeadedAttention: n_units = {n_units} is not a multiple of "
                             f"n_heads = {n_heads}; each head needs n_units / n_heads units")
        self.d_k = n_units // n_heads
        self.n_heads = n_heads
        self.n_units = n_units
        self.fused = fused
        # query, key, value, output
        self.linears = nn.ModuleList(nn.Linear(n_units, n_units) for _ in range(4))
        self.dropout = nn.Dropout(dropout)
        bound = math.sqrt(1 / n_units)  # the scaffold's init
        uniform_linears(self.linears, bound)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None) -> Tensor:
        """(batch, seq, n_units) x3, mask (batch, seq, seq) -> (batch, seq, n_units)."""
        batch = query.size(0)
        head_mask = None if mask is None else mask.unsqueeze(1)  # (batch, 1, seq, seq): same for every head
        # 1. project, then split n_units into heads: (batch, seq, n_units) -> (batch, heads, seq, d_k)
        query, key, value = (linear(x).view(batch, -1, self.n_heads, self.d_k).transpose(1, 2)
                             for linear, x in zip(self.linears, (query, key, value)))
        # 2. attend within each head: (batch, heads, seq, d_k)
        if self.fused:
            attn_mask = None if head_mask is None else head_mask.bool()
            dropout_p = self.dropout.p if self.training else 0.0
            heads = F.scaled_dot_product_attention(query, key, value, attn_mask=attn_mask,
                                                   dropout_p=dropout_p)
        else:
            heads, _ = self.attention(query, key, value, head_mask, self.dropout)
        # 3. concatenate the heads and mix them: (batch, heads, seq, d_k) -> (batch, seq, n_units)
        concatenated = heads.transpose(1, 2).reshape(batch, -1, self.n_units)
        return self.linears[-1](concatenated)

    def attention(self, query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None,
                  dropout: nn.Module | None = None) -> tuple[Tensor, Tensor]:
        """The scaffold's method, graded there: the module-level `attention`, which it delegates to."""
        return attention(query, key, value, mask, dropout)


class WordEmbedding(nn.Module):
    """Token embeddings scaled by sqrt(n_units), so they are not swamped by the positional encoding."""

    def __init__(self, n_units: int, vocab: int):
        super().__init__()
        self.lut = nn.Embedding(vocab, n_units)
        self.n_units = n_units

    def forward(self, x: Tensor) -> Tensor:
        return self.lut(x) * math.sqrt(self.n_units)  # (batch, seq) -> (batch, seq, n_units)


class PositionalEncoding(nn.Module):
    """Adds the fixed sinusoids sin/cos(position / 10000^(2i / n_units)), then dropout."""

    def __init__(self, n_units: int, dropout: float, max_len: int = 5000):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)  # (max_len, 1)
        frequency = torch.exp(torch.arange(0, n_units, 2, dtype=torch.float32)
                              * -(math.log(10000.0) / n_units))  # (n_units / 2,)
        table = torch.zeros(max_len, n_units)
        table[:, 0::2] = torch.sin(position * frequency)
        table[:, 1::2] = torch.cos(position * frequency)
        self.register_buffer("pe", table.unsqueeze(0))  # (1, max_len, n_units)

    def forward(self, x: Tensor) -> Tensor:
        if x.size(1) > self.pe.size(1):
            raise ValueError(f"PositionalEncoding: sequence of length {x.size(1)} is longer than "
                             f"max_len = {self.pe.size(1)}")
        return self.dropout(x + self.pe[:, :x.size(1)])  # (batch, seq, n_units)


class LayerNorm(nn.Module):
    """The scaffold's layer norm: a_2 * (x - mean) / (std + eps) + b_2, unbiased std (a quirk kept)."""

    def __init__(self, features: int, eps: float = 1e-6):
        super().__init__()
        self.a_2 = nn.Parameter(torch.ones(features))
        self.b_2 = nn.Parameter(torch.zeros(features))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        mean = x.mean(-1, keepdim=True)
        std = x.std(-1, keepdim=True)
        return self.a_2 * (x - mean) / (std + self.eps) + self.b_2


class MLP(nn.Module):
    """Position-wise feed-forward: Linear(n_units, 2048) -> ReLU -> dropout -> Linear(2048, n_units)."""

    def __init__(self, n_units: int, dropout: float = 0.1):
        super().__init__()
        self.w_1 = nn.Linear(n_units, MLP_WIDTH)
        self.w_2 = nn.Linear(MLP_WIDTH, n_units)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_2(self.dropout(F.relu(self.w_1(x))))


class ResidualSkipConnectionWithLayerNorm(nn.Module):
    """x + dropout(sublayer(norm(x))): pre-norm residual connection. `norm` defaults to the scaffold's
    LayerNorm(size); make_model passes nn.LayerNorm for layer_norm="torch"."""

    def __init__(self, size: int, dropout: float, norm: nn.Module | None = None):
        super().__init__()
        self.norm = LayerNorm(size) if norm is None else norm
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, sublayer: Callable[[Tensor], Tensor]) -> Tensor:
        return x + self.dropout(sublayer(self.norm(x)))


class TransformerBlock(nn.Module):
    """Masked self-attention, then the MLP, each inside a pre-norm residual connection.

    The scaffold's signature; `make_norm` (default: the scaffold's LayerNorm) picks the norm's kind.
    """

    def __init__(self, size: int, self_attn: MultiHeadedAttention, feed_forward: MLP, dropout: float,
                 make_norm: Callable[[], nn.Module] | None = None):
        super().__init__()
        self.size = size
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        norm = LayerNorm(size) if make_norm is None else make_norm()
        self.sublayer = clones(ResidualSkipConnectionWithLayerNorm(size, dropout, norm), 2)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        x = self.sublayer[0](x, lambda normed: self.self_attn(normed, normed, normed, mask))
        return self.sublayer[1](x, self.feed_forward)


class TransformerStack(nn.Module):
    """n_blocks copies of one block, then a final norm of the block's kind (the scaffold's signature)."""

    def __init__(self, layer: TransformerBlock, n_blocks: int):
        super().__init__()
        self.layers = clones(layer, n_blocks)
        self.norm = type(layer.sublayer[0].norm)(layer.size)  # a fresh norm of the blocks' kind

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x, mask)
        return self.norm(x)


class FullTransformer(nn.Module):
    """Embedding -> transformer stack -> output layer -> log_softmax over the vocabulary."""

    def __init__(self, transformer_stack: TransformerStack, embedding: nn.Module, n_units: int,
                 vocab_size: int):
        super().__init__()
        self.transformer_stack = transformer_stack
        self.embedding = embedding
        self.output_layer = nn.Linear(n_units, vocab_size)

    def forward(self, input_sequence: Tensor, mask: Tensor) -> Tensor:
        """The scaffold's: (batch, seq) int64, mask (batch, seq, seq) -> log-probabilities (batch, seq, vocab)."""
        return F.log_softmax(self.logits(input_sequence, mask), dim=-1)

    def logits(self, input_sequence: Tensor, mask: Tensor) -> Tensor:
        """(batch, seq) int64, mask (batch, seq, seq) -> unnormalised scores (batch, seq, vocab)."""
        embeddings = self.embedding(input_sequence)  # (batch, seq, n_units)
        return self.output_layer(self.transformer_stack(embeddings, mask))

    # --- the uniform interface (ptblm.models.interface) -----------------------------------------

    def lm_forward(self, tokens: Tensor, state: None = None) -> tuple[Tensor, None]:
        """(batch, seq) int64 -> logits (batch, seq, vocab), no state: each batch is attended to on its own,
        every position to itself and the positions before it."""
        mask = causal_mask(tokens.size(1), device=tokens.device).expand(tokens.size(0), -1, -1)  # (batch, seq, seq)
        return self.logits(tokens, mask), None

    def initial_state(self, batch_size: int) -> None:
        return None

    def generate(self, input: Tensor, generated_seq_len: int, temperature: float = 0.0, top_k: int = 0,
                 generator: torch.Generator | None = None) -> Tensor:
        """The course's: (batch,) start tokens -> (generated_seq_len, batch) tokens, like the RNN's generate.

        `continue_tokens`, time-major: every step re-runs the whole prefix (no key/value cache).
        """
        tokens = continue_tokens(self, input.unsqueeze(1), None, generated_seq_len, temperature, top_k,
                                 generator)  # (batch,) -> (batch, 1) in; (batch, generated_seq_len) out
        return tokens.t().contiguous()  # (generated_seq_len, batch)


def make_model(vocab_size: int, n_blocks: int = 6, n_units: int = 512, n_heads: int = 16, dropout: float = 0.1,
               attention: str = "scratch", layer_norm: str = "scaffold") -> FullTransformer:
    """The scaffold's make_model, plus the choice of attention kernel and layer norm."""
    if attention not in ATTENTIONS:
        raise ValueError(f"make_model: attention = {attention!r} is invalid; valid: 'scratch' "
                         f"(the `attention` function) or 'fused' (scaled_dot_product_attention)")
    if layer_norm not in LAYER_NORMS:
        raise ValueError(f"make_model: layer_norm = {layer_norm!r} is invalid; valid: 'scaffold' "
                         f"((x - mean) / (std + eps)) or 'torch' (nn.LayerNorm)")

    def make_norm() -> nn.Module:
        return LayerNorm(n_units) if layer_norm == "scaffold" else nn.LayerNorm(n_units)

    # Built in the scaffold's order, so the constructors draw from the RNG as they did there.
    self_attn = MultiHeadedAttention(n_heads, n_units, ATTENTION_DROPOUT, fused=attention == "fused")
    mlp = MLP(n_units, dropout)
    position = PositionalEncoding(n_units, dropout)
    block = TransformerBlock(n_units, copy.deepcopy(self_attn), copy.deepcopy(mlp), dropout, make_norm)
    model = FullTransformer(
        transformer_stack=TransformerStack(block, n_blocks),
        embedding=nn.Sequential(WordEmbedding(n_units, vocab_size), copy.deepcopy(position)),
        n_units=n_units,
        vocab_size=vocab_size)
    for parameter in model.parameters():
        if parameter.dim() > 1:
            nn.init.xavier_uniform_(parameter)
    return model


def build(config: RunConfig, vocab_size: int) -> FullTransformer:
    """The model a run trains (the registry's builder): make_model as run_exp.py calls it, from a setting."""
    return make_model(vocab_size, n_blocks=config.num_layers, n_units=config.hidden_size, n_heads=config.n_heads,
                      dropout=1 - config.dp_keep_prob, attention=config.attention)
