"""Stacked vanilla (Elman) RNN language model, written from tensor ops.

    h_t = tanh(W x_t + U h_{t-1} + b) = tanh(layers[l](cat([x_t, h_{t-1}])))
    logits_t = out_layer(h_t of the last layer)

Dropout, the two loop orders, the state and generation are shared with the GRU and the LSTM in
`_recurrent.py`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._recurrent import RecurrentLM, stacked_linears, uniform_linears


def rnn_time_step(x: Tensor, h: Tensor, u: Tensor) -> Tensor:
    """One time step of one layer, the input part given: W x_t + b (batch, hidden), h_{t-1} (batch, hidden),
    U (hidden, hidden) -> h_t."""
    return torch.tanh(x + h @ u.T)


class RNN(RecurrentLM):
    """The course's RNN; one nn.Linear(in + hidden, hidden) per layer holds both W and U."""

    plain_time_step = staticmethod(rnn_time_step)

    def __init__(self, emb_size: int, hidden_size: int, seq_len: int, batch_size: int,
                 vocab_size: int, num_layers: int, dp_keep_prob: float, impl: str = "fast"):
        super().__init__(emb_size, hidden_size, seq_len, batch_size, vocab_size, num_layers,
                         dp_keep_prob, impl)
        # Constructed in this order: the constructors draw from the RNG too.
        self.embeddings = nn.Embedding(vocab_size, emb_size)
        self.layers = stacked_linears(emb_size, hidden_size, num_layers)
        self.dropout = nn.Dropout(1 - dp_keep_prob)
        self.out_layer = nn.Linear(hidden_size, vocab_size)
        self.init_weights()

    def init_weights(self) -> None:
        """Embeddings and output weights U(-0.1, 0.1), output bias 0, layers U(-k, k), k = 1/sqrt(hidden)."""
        nn.init.uniform_(self.embeddings.weight, -0.1, 0.1)
        uniform_linears(self.layers, 1 / math.sqrt(self.hidden_size))
        nn.init.uniform_(self.out_layer.weight, -0.1, 0.1)
        nn.init.zeros_(self.out_layer.bias)

    init_weights_uniform = init_weights  # the GRU's name for the same thing

    def _embed(self, inputs: Tensor) -> Tensor:
        return self.embeddings(inputs)

    def _cell(self, layer: int, x: Tensor, h: Tensor) -> Tensor:
        return torch.tanh(self.layers[layer](torch.cat([x, h], dim=-1)))  # cat: (batch, in + hidden)

    def _fast_layer(self, layer: int, inputs: Tensor, h: Tensor) -> tuple[list[Tensor], Tensor]:
        linear = self.layers[layer]
        n_in = inputs.size(-1)
        w_x, w_h = linear.weight[:, :n_in], linear.weight[:, n_in:]  # (hidden, in), (hidden, hidden)
        # 1. W x_t + b for every time step in one matmul: (seq, batch, hidden)
        projected = F.linear(inputs, w_x, linear.bias)
        # 2. the recurrence: only U h_{t-1} is left inside the loop
        states = []
        for x_part in projected.unbind(0):  # (batch, hidden)
            h = self.time_step(x_part, h, w_h)
            states.append(h)
        return states, h
