"""Each architecture's `builtin` baseline: the same sizes and interface, PyTorch's own (cuDNN) layers.

nn.GRU's and nn.LSTM's gate equations differ in details from the course's (two biases per gate, the
GRU's reset gate after the matmul); their cost does not, which is what the bench compares.
"""
from __future__ import annotations

from torch import Tensor, nn

from ...config import RunConfig
from ..interface import State
from ..transformer import FullTransformer, make_model


class BuiltinRecurrentLM(nn.Module):
    """Embedding -> dropout -> nn.RNN / nn.GRU / nn.LSTM (dropout between layers) -> dropout -> Linear.

    The course's interface too: forward((seq, batch) ids, state) and init_hidden(); the state is
    (layers, batch, hidden), or the pair (h, c) of such for nn.LSTM.
    """

    def __init__(self, layer: type[nn.RNNBase], config: RunConfig, vocab_size: int):
        super().__init__()
        dropout = 1 - config.dp_keep_prob
        self.embedding = nn.Embedding(vocab_size, config.emb_size)
        self.dropout = nn.Dropout(dropout)
        self.recurrent = layer(config.emb_size, config.hidden_size, config.num_layers,
                               dropout=dropout if config.num_layers > 1 else 0.0)
        self.out_layer = nn.Linear(config.hidden_size, vocab_size)
        self.batch_size = config.batch_size
        self.state_tensors = 2 if isinstance(self.recurrent, nn.LSTM) else 1  # (h, c) or h

    def initial_state(self, batch_size: int) -> State:
        zeros = [self.out_layer.weight.new_zeros(self.recurrent.num_layers, batch_size, self.recurrent.hidden_size)
                 for _ in range(self.state_tensors)]  # each (layers, batch, hidden)
        return zeros[0] if self.state_tensors == 1 else tuple(zeros)

    def init_hidden(self) -> State:
        return self.initial_state(self.batch_size)

    def forward(self, inputs: Tensor, state: State) -> tuple[Tensor, State]:
        embedded = self.dropout(self.embedding(inputs))  # (seq, batch, emb)
        outputs, state = self.recurrent(embedded, state)  # (seq, batch, hidden)
        return self.out_layer(self.dropout(outputs)), state  # (seq, batch, vocab)

    def lm_forward(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        logits, state = self(tokens.t(), state)  # inputs (seq, batch) -> logits (seq, batch, vocab)
        return logits.transpose(0, 1), state  # (batch, seq, vocab)


def rnn(config: RunConfig, vocab_size: int) -> BuiltinRecurrentLM:
    return BuiltinRecurrentLM(nn.RNN, config, vocab_size)  # tanh, as the course's RNN


def gru(config: RunConfig, vocab_size: int) -> BuiltinRecurrentLM:
    return BuiltinRecurrentLM(nn.GRU, config, vocab_size)


def lstm(config: RunConfig, vocab_size: int) -> BuiltinRecurrentLM:
    return BuiltinRecurrentLM(nn.LSTM, config, vocab_size)


def transformer(config: RunConfig, vocab_size: int) -> FullTransformer:
    """The course's Transformer with torch's fused scaled_dot_product_attention and nn.LayerNorm."""
    return make_model(vocab_size, n_blocks=config.num_layers, n_units=config.hidden_size, n_heads=config.n_heads,
                      dropout=1 - config.dp_keep_prob, attention="fused", layer_norm="torch")
