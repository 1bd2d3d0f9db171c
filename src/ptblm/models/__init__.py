"""The three language models of the course, and `build_model` to make one from a RunConfig.

RNN and GRU take (seq, batch) token ids and a hidden state; the Transformer takes (batch, seq)
token ids and a (batch, seq, seq) mask and returns log-probabilities.
"""
from __future__ import annotations

from torch import nn

from ..config import RunConfig
from .gru import GRU
from .rnn import RNN
from ._recurrent import clones
from .transformer import (Batch, FullTransformer, MultiHeadedAttention, ResidualSkipConnectionWithLayerNorm,
                          TransformerBlock, TransformerStack, attention, causal_mask, make_model, subsequent_mask)

# The scaffold's names (solution.py) are all here, so course code runs against ptblm unchanged.
__all__ = ["RNN", "GRU", "make_model", "FullTransformer", "MultiHeadedAttention", "attention",
           "causal_mask", "build_model", "clones", "subsequent_mask", "Batch", "TransformerBlock",
           "TransformerStack", "ResidualSkipConnectionWithLayerNorm"]


def build_model(config: RunConfig, vocab_size: int) -> nn.Module:
    """The model a run trains, from its setting."""
    if config.model == "TRANSFORMER":
        return make_model(vocab_size, n_blocks=config.num_layers, n_units=config.hidden_size,
                          n_heads=config.n_heads, dropout=1 - config.dp_keep_prob, attention=config.attention)
    recurrent = {"RNN": RNN, "GRU": GRU}[config.model]
    return recurrent(config.emb_size, config.hidden_size, config.seq_len, config.batch_size, vocab_size,
                     config.num_layers, config.dp_keep_prob, impl=config.impl)
