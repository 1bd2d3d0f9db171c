"""Stacked LSTM language model in the course's style (as its GRU), written from tensor ops.

    i_t = σ(W_i x_t + U_i h_{t-1} + b_i)              input gate    i[l](cat([x_t, h_{t-1}]))
    f_t = σ(W_f x_t + U_f h_{t-1} + b_f)              forget gate   f[l](cat([x_t, h_{t-1}]))
    o_t = σ(W_o x_t + U_o h_{t-1} + b_o)              output gate   o[l](cat([x_t, h_{t-1}]))
    c̃_t = tanh(W_c x_t + U_c h_{t-1} + b_c)           candidate     c[l](cat([x_t, h_{t-1}]))
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ c̃_t
    h_t = o_t ⊙ tanh(c_t)
    logits_t = out_layer(h_t of the last layer)

The state is the pair (h, c), each (num_layers, batch, hidden). One bias per gate (torch's built-in
LSTM has two) and no forget-gate bias offset: the initialisation is the GRU's. Dropout (on the embedding
and between layers, never on the recurrence), the two loop orders and generation are shared with
the RNN and the GRU in `_recurrent.py`.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._recurrent import RecurrentLM, stacked_linears, uniform_linears


def lstm_time_step(x_ifoc: Tensor, h: Tensor, c: Tensor, u_ifoc: Tensor) -> tuple[Tensor, Tensor]:
    """One time step of one layer, the input parts given: W x_t + b of the four maps stacked (batch, 4 hidden),
    h_{t-1} and c_{t-1} (batch, hidden), [U_i; U_f; U_o; U_c] (4 hidden, hidden) -> h_t, c_t."""
    gates = x_ifoc + h @ u_ifoc.T  # (batch, 4 hidden): all four maps in one matmul
    input_gate, forget, output, candidate = gates.chunk(4, dim=-1)  # (batch, hidden) each
    c = torch.sigmoid(forget) * c + torch.sigmoid(input_gate) * torch.tanh(candidate)
    return torch.sigmoid(output) * torch.tanh(c), c


class LSTM(RecurrentLM):
    """An LSTM with the course's constructor; each map's nn.Linear(in + hidden, hidden) per layer holds its W and U."""

    plain_time_step = staticmethod(lstm_time_step)
    state_names = ("h", "c")

    def __init__(self, emb_size: int, hidden_size: int, seq_len: int, batch_size: int,
                 vocab_size: int, num_layers: int, dp_keep_prob: float, impl: str = "fast"):
        super().__init__(emb_size, hidden_size, seq_len, batch_size, vocab_size, num_layers,
                         dp_keep_prob, impl)
        # Constructed in this order: the constructors draw from the RNG too. Each map's stack follows the
        # scaffold RNN's template (stacked_linears), as the GRU's gates do.
        self.word_embeddings = nn.Embedding(vocab_size, emb_size)
        self.i = stacked_linears(emb_size, hidden_size, num_layers)  # input gate
        self.f = stacked_linears(emb_size, hidden_size, num_layers)  # forget gate
        self.o = stacked_linears(emb_size, hidden_size, num_layers)  # output gate
        self.c = stacked_linears(emb_size, hidden_size, num_layers)  # candidate memory
        self.dropout = nn.Dropout(1 - dp_keep_prob)
        self.out_layer = nn.Linear(hidden_size, vocab_size)
        self.init_weights_uniform()

    # The GRU's init, one method per parameter group, drawing from the RNG in this order.
    def init_weights_uniform(self) -> None:
        self.init_embedding_weights_uniform()
        self.init_input_gate_weights_uniform()
        self.init_forget_gate_weights_uniform()
        self.init_output_gate_weights_uniform()
        self.init_memory_weights_uniform()
        self.init_out_layer_weights_uniform()

    def init_embedding_weights_uniform(self, init_range: float = 0.1) -> None:
        nn.init.uniform_(self.word_embeddings.weight, -init_range, init_range)

    def init_input_gate_weights_uniform(self) -> None:
        uniform_linears(self.i, 1 / math.sqrt(self.hidden_size))

    def init_forget_gate_weights_uniform(self) -> None:
        uniform_linears(self.f, 1 / math.sqrt(self.hidden_size))

    def init_output_gate_weights_uniform(self) -> None:
        uniform_linears(self.o, 1 / math.sqrt(self.hidden_size))

    def init_memory_weights_uniform(self) -> None:
        uniform_linears(self.c, 1 / math.sqrt(self.hidden_size))

    def init_out_layer_weights_uniform(self) -> None:
        nn.init.uniform_(self.out_layer.weight, -0.1, 0.1)
        nn.init.zeros_(self.out_layer.bias)

    def generate(self, input: Tensor, hidden: tuple[Tensor, Tensor], generated_seq_len: int,
                 **sampling) -> Tensor:
        """The RNN's generate, from the state (h, c); the argument is `input`, as in the scaffold's GRU."""
        return super().generate(input, hidden, generated_seq_len, **sampling)

    def _cell(self, layer: int, x: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        h, c = state  # (batch, hidden) each
        x_h = torch.cat([x, h], dim=-1)  # (batch, in + hidden)
        input_gate = torch.sigmoid(self.i[layer](x_h))
        forget = torch.sigmoid(self.f[layer](x_h))
        output = torch.sigmoid(self.o[layer](x_h))
        candidate = torch.tanh(self.c[layer](x_h))
        c = forget * c + input_gate * candidate
        return output * torch.tanh(c), c

    def _fast_layer(self, layer: int, inputs: Tensor,
                    state: tuple[Tensor, Tensor]) -> tuple[list[Tensor], tuple[Tensor, Tensor]]:
        h, c = state  # (batch, hidden) each
        maps = (self.i[layer], self.f[layer], self.o[layer], self.c[layer])
        n_in = inputs.size(-1)
        # 1. W x_t + b of all four maps for every time step in one matmul: (seq, batch, 4 hidden)
        w_x = torch.cat([linear.weight[:, :n_in] for linear in maps])  # (4 hidden, in)
        bias = torch.cat([linear.bias for linear in maps])  # (4 hidden,)
        projected = F.linear(inputs, w_x, bias)
        # 2. the h-parts stacked, so the four maps cost one matmul per step
        u_ifoc = torch.cat([linear.weight[:, n_in:] for linear in maps])  # (4 hidden, hidden)
        # 3. the recurrence
        outputs = []
        for x_ifoc in projected.unbind(0):  # (batch, 4 hidden)
            h, c = self.time_step(x_ifoc, h, c, u_ifoc)
            outputs.append(h)
        return outputs, (h, c)
