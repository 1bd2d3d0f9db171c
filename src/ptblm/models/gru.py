"""Stacked GRU language model with the course's equations, written from tensor ops.

    r_t = σ(W_r x_t + U_r h_{t-1} + b_r)              reset gate   r[l](cat([x_t, h_{t-1}]))
    z_t = σ(W_z x_t + U_z h_{t-1} + b_z)              update gate  z[l](cat([x_t, h_{t-1}]))
    h̃_t = tanh(W_h x_t + U_h (r_t ⊙ h_{t-1}) + b_h)   candidate    h[l](cat([x_t, r_t ⊙ h_{t-1}]))
    h_t = (1 - z_t) ⊙ h_{t-1} + z_t ⊙ h̃_t
    logits_t = out_layer(h_t of the last layer)

Not torch's built-in GRU: there the reset gate multiplies U_h h_{t-1} (after the matmul), gates
have two biases, and z keeps the old state instead of letting the new one in.
Dropout, the two loop orders, the state and generation are shared with the RNN and the LSTM in
`_recurrent.py`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._recurrent import RecurrentLM, stacked_linears, uniform_linears


def gru_time_step(x_rz: Tensor, x_h: Tensor, h: Tensor, u_rz: Tensor, u_h: Tensor) -> Tensor:
    """One time step of one layer, the input parts given: W_rz x_t + b_rz (batch, 2 hidden), W_h x_t + b_h
    (batch, hidden), h_{t-1} (batch, hidden), [U_r; U_z] (2 hidden, hidden), U_h (hidden, hidden) -> h_t."""
    reset, update = torch.sigmoid(x_rz + h @ u_rz.T).chunk(2, dim=-1)  # (batch, hidden) each
    candidate = torch.tanh(x_h + (reset * h) @ u_h.T)
    return (1 - update) * h + update * candidate


class GRU(RecurrentLM):
    """The course's GRU; each gate's nn.Linear(in + hidden, hidden) per layer holds both its W and U."""

    plain_time_step = staticmethod(gru_time_step)

    def __init__(self, emb_size: int, hidden_size: int, seq_len: int, batch_size: int,
                 vocab_size: int, num_layers: int, dp_keep_prob: float, impl: str = "fast"):
        super().__init__(emb_size, hidden_size, seq_len, batch_size, vocab_size, num_layers,
                         dp_keep_prob, impl)
        # Constructed in this order: the constructors draw from the RNG too. The scaffold leaves the GRU's
        # construction to the student; each gate's stack follows its RNN's template (stacked_linears).
        self.word_embeddings = nn.Embedding(vocab_size, emb_size)
        self.r = stacked_linears(emb_size, hidden_size, num_layers)  # reset gate
        self.z = stacked_linears(emb_size, hidden_size, num_layers)  # update ("forget") gate
        self.h = stacked_linears(emb_size, hidden_size, num_layers)  # candidate memory
        self.dropout = nn.Dropout(1 - dp_keep_prob)
        self.out_layer = nn.Linear(hidden_size, vocab_size)
        self.init_weights_uniform()

    # The scaffold's init, one method per parameter group, drawing from the RNG in this order.
    def init_weights_uniform(self) -> None:
        self.init_embedding_weights_uniform()
        self.init_reset_gate_weights_uniform()
        self.init_forget_gate_weights_uniform()
        self.init_memory_weights_uniform()
        self.init_out_layer_weights_uniform()

    def init_embedding_weights_uniform(self, init_range: float = 0.1) -> None:
        nn.init.uniform_(self.word_embeddings.weight, -init_range, init_range)

    def init_reset_gate_weights_uniform(self) -> None:
        uniform_linears(self.r, 1 / math.sqrt(self.hidden_size))

    def init_forget_gate_weights_uniform(self) -> None:
        uniform_linears(self.z, 1 / math.sqrt(self.hidden_size))

    def init_memory_weights_uniform(self) -> None:
        uniform_linears(self.h, 1 / math.sqrt(self.hidden_size))

    def init_out_layer_weights_uniform(self) -> None:
        nn.init.uniform_(self.out_layer.weight, -0.1, 0.1)
        nn.init.zeros_(self.out_layer.bias)

    def generate(self, input: Tensor, hidden: Tensor, generated_seq_len: int, **sampling) -> Tensor:
        """The RNN's generate; the argument is `input` here, as in the scaffold's GRU."""
        return super().generate(input, hidden, generated_seq_len, **sampling)

    def _cell(self, layer: int, x: Tensor, h: Tensor) -> Tensor:
        x_h = torch.cat([x, h], dim=-1)  # (batch, in + hidden)
        reset = torch.sigmoid(self.r[layer](x_h))
        update = torch.sigmoid(self.z[layer](x_h))
        candidate = torch.tanh(self.h[layer](torch.cat([x, reset * h], dim=-1)))  # cat: (batch, in + hidden)
        return (1 - update) * h + update * candidate

    def _fast_layer(self, layer: int, inputs: Tensor, h: Tensor) -> tuple[list[Tensor], Tensor]:
        r, z, memory = self.r[layer], self.z[layer], self.h[layer]
        n_in, hidden = inputs.size(-1), self.hidden_size
        # 1. W x_t + b of all three gates for every time step in one matmul
        w_x = torch.cat([r.weight[:, :n_in], z.weight[:, :n_in], memory.weight[:, :n_in]])  # (3 hidden, in)
        bias = torch.cat([r.bias, z.bias, memory.bias])  # (3 hidden,)
        projected = F.linear(inputs, w_x, bias)  # (seq, batch, 3 hidden)
        x_rz, x_h = projected.split([2 * hidden, hidden], dim=-1)  # (seq, batch, 2 hidden), (.., hidden)
        # 2. the h-parts: U_r and U_z stacked, so both gates cost one matmul per step
        u_rz = torch.cat([r.weight[:, n_in:], z.weight[:, n_in:]])  # (2 hidden, hidden)
        u_h = memory.weight[:, n_in:]  # (hidden, hidden)
        # 3. the recurrence
        states = []
        for x_rz_t, x_h_t in zip(x_rz.unbind(0), x_h.unbind(0)):  # (batch, 2 hidden), (batch, hidden)
            h = self.time_step(x_rz_t, x_h_t, h, u_rz, u_h)
            states.append(h)
        return states, h
