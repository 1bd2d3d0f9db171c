"""What the RNN, the GRU and the LSTM share: dropout masks, the two loop orders, the state, the output
layer, generation, and the uniform interface (lm_forward, initial_state) on top of the course's forward.

A subclass builds its modules (`word_embeddings`, its layers, `dropout`, `out_layer`, in the order its
constructor should draw from the RNG) and says how one layer computes one time step: `_cell` (the
equations on [x_t, h_{t-1}]). That is all a new model needs; impl="fast" then runs `_cell` layer by
layer. A model may speed the fast path up with its own `_fast_layer` (the whole sequence of one layer,
input projections hoisted out of the time loop, each step a call of the pure function `plain_time_step`),
as the RNN, the GRU and the LSTM do. Everything else, including where dropout goes, lives here once,
so the models and both impls cannot drift apart.

A layer's state is its hidden state h (RNN, GRU) or the pair (h, c) (LSTM: `state_names`); the
model's state stacks the layers': each tensor (num_layers, batch, hidden). A layer's output, what
the layer above and the output layer read, is always h.

Generation is ptblm.models.interface's `continue_tokens`; `generate` is the course's signature for it.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ..config import IMPLEMENTATIONS
from .interface import State, continue_tokens  # State here: h (num_layers, batch, hidden), or the LSTM's (h, c)

if TYPE_CHECKING:
    from ..config import RunConfig

Outputs = list[list[Tensor]]  # outputs[layer][t]: (batch, hidden), the layer's hidden state h after time step t
LayerState = Any  # one layer's state: h (batch, hidden), or the LSTM's (h, c)


class RecurrentLM(nn.Module):
    """A stacked recurrent language model over (seq_len, batch) token ids.

    Subclasses build their modules (`word_embeddings`, or their own `_embed`; per-layer linears; `dropout`;
    `out_layer`) and implement `_cell`; optionally `_fast_layer` with `plain_time_step`.
    """

    word_embeddings: nn.Embedding  # what the default `_embed` reads
    dropout: nn.Dropout  # its p is the one dropout rate both impls read
    out_layer: nn.Linear  # hidden -> vocab
    # The step of one layer an own `_fast_layer` calls, a pure function of tensors (compile: cell compiles it);
    # None: the default `_fast_layer` calls `_cell` (compile: cell compiles that).
    plain_time_step: Callable[..., Any] | None = None
    state_names: tuple[str, ...] = ("hidden",)  # the state's tensors; the LSTM's are ("h", "c")

    def __init__(self, emb_size: int, hidden_size: int, seq_len: int, batch_size: int,
                 vocab_size: int, num_layers: int, dp_keep_prob: float, impl: str = "fast"):
        super().__init__()
        if impl not in IMPLEMENTATIONS:
            raise ValueError(f"{type(self).__name__}: impl = {impl!r} is invalid; valid: 'fast' "
                             f"(layer-major, the default) or 'reference' (nested loop over time and layers)")
        if not 0 < dp_keep_prob <= 1:
            raise ValueError(f"{type(self).__name__}: dp_keep_prob = {dp_keep_prob!r} is invalid; "
                             f"valid: a keep probability in (0, 1]")
        self.emb_size = emb_size
        self.hidden_size = hidden_size
        self.seq_len = seq_len  # the scaffold's training shape; forward follows its inputs' shapes
        self.batch_size = batch_size
        self.vocab_size = vocab_size
        self.num_layers = num_layers
        self.dp_keep_prob = dp_keep_prob  # the scaffold's attribute; self.dropout.p is what both impls read
        self.impl = impl
        if self.plain_time_step is not None and type(self)._fast_layer is RecurrentLM._fast_layer:
            raise TypeError(f"{type(self).__name__}: plain_time_step is called by a model's own _fast_layer, "
                            f"which it lacks; write one (see lstm.py) or leave plain_time_step out")
        self.use_plain_time_step()  # time_step: what _fast_layer calls at each step; compile_time_step swaps it

    @classmethod
    def from_config(cls, config: RunConfig, vocab_size: int) -> RecurrentLM:
        """The model a run trains (the registry's builder): the course's constructor, from a setting."""
        return cls(config.emb_size, config.hidden_size, config.seq_len, config.batch_size, vocab_size,
                   config.num_layers, config.dp_keep_prob, impl=config.impl)

    # --- what a subclass provides -------------------------------------------------------------

    def _embed(self, inputs: Tensor) -> Tensor:
        """(seq, batch) int64 -> (seq, batch, emb): `word_embeddings` (the course's GRU's name)."""
        return self.word_embeddings(inputs)

    def _cell(self, layer: int, x: Tensor, state: LayerState) -> LayerState:
        """One step of one layer, as the equations say: x (batch, in) and the layer's state -> its next state."""
        raise NotImplementedError(f"{type(self).__name__} must define _cell(layer, x, state): one time step")

    def _fast_layer(self, layer: int, inputs: Tensor, state: LayerState) -> tuple[list[Tensor], LayerState]:
        """One layer over the whole sequence: (seq, batch, in) and its state -> seq x h (batch, hidden), final state.

        By default `_cell` at each step (as `time_step`, so that compile: cell compiles it); a model's own
        hoists what does not depend on the state out of the loop.
        """
        outputs = []
        for x in inputs.unbind(0):  # (batch, in)
            state = self.time_step(layer, x, state)
            outputs.append(self._output(state))
        return outputs, state

    # --- the uniform interface (ptblm.models.interface) -----------------------------------------

    def lm_forward(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """(batch, seq) int64 -> logits (batch, seq, vocab), next state: the course's forward, transposed.

        The logits are a view of the course's (seq, batch, vocab) tensor: time-major in memory.
        """
        logits, state = self(tokens.t(), state)  # inputs (seq, batch) -> logits (seq, batch, vocab)
        return logits.transpose(0, 1), state  # (batch, seq, vocab)

    def initial_state(self, batch_size: int) -> State:
        """Zeros, each (num_layers, batch_size, hidden_size), on the parameters' device and dtype."""
        weight = self.out_layer.weight
        return self._pack([weight.new_zeros(self.num_layers, batch_size, self.hidden_size)
                           for _ in self.state_names])

    def init_hidden(self) -> State:
        """The scaffold's: `initial_state` for the batch size the model was built with."""
        return self.initial_state(self.batch_size)

    # --- shared ---------------------------------------------------------------------------------

    def compile_time_step(self, backend="inductor") -> None:
        """`--compile cell`: the fast path's time step under torch.compile. One small graph, called
        seq_len times per layer, compiles in seconds where the unrolled model takes a minute; inside a
        CUDA graph the calls cost no host time. It draws no random numbers: dropout stays outside."""
        if self.time_step == self._uncompiled_time_step():  # == : a bound method is a new object at each access
            self.time_step = torch.compile(self._uncompiled_time_step(), backend=backend, dynamic=False)

    def use_plain_time_step(self) -> None:
        self.time_step = self._uncompiled_time_step()

    def _uncompiled_time_step(self) -> Callable[..., Any]:
        return self._cell if self.plain_time_step is None else self.plain_time_step

    def _pack(self, tensors: list[Tensor] | tuple[Tensor, ...]) -> State:
        """The state's tensors, in `state_names` order -> the state: the tensor itself, or a tuple."""
        return tensors[0] if len(self.state_names) == 1 else tuple(tensors)

    def _unpack(self, state: State) -> tuple[Tensor, ...]:
        """The state -> its tensors, in `state_names` order."""
        if len(self.state_names) == 1:
            return (state,)
        if isinstance(state, Tensor) or len(state) != len(self.state_names):
            raise ValueError(f"{type(self).__name__}: the state is the tuple ({', '.join(self.state_names)}); "
                             f"got {type(state).__name__}" + ("" if isinstance(state, Tensor) else
                                                               f" of {len(state)}"))
        return tuple(state)

    def _layer_states(self, state: State) -> list[LayerState]:
        """The model's state -> one state per layer (views): layers x h (batch, hidden), or x (h, c)."""
        per_layer = zip(*(tensor.unbind(0) for tensor in self._unpack(state)))
        return [self._pack(tensors) for tensors in per_layer]

    def _stacked(self, layer_states: list[LayerState]) -> State:
        """One state per layer -> the model's state, each tensor (num_layers, batch, hidden)."""
        per_name = zip(*(self._unpack(layer_state) for layer_state in layer_states))
        return self._pack([torch.stack(tensors) for tensors in per_name])

    def _output(self, layer_state: LayerState) -> Tensor:
        """What a layer passes up: its hidden state h (batch, hidden)."""
        return self._unpack(layer_state)[0]

    def _dropout_masks(self, seq_len: int, batch: int) -> list[Tensor | None]:
        """[embedding mask (seq, batch, emb), layer 0 output mask (seq, batch, hidden), ...].

        Drawn once per forward, in this order, already scaled by 1/keep, so that both loop orders
        apply the very same dropout. All None (nothing drawn) in eval mode or when keep = 1.
        """
        sizes = [self.emb_size] + [self.hidden_size] * self.num_layers
        keep = 1.0 - self.dropout.p
        if not self.training or keep == 1.0:
            return [None] * len(sizes)
        weight = self.out_layer.weight
        return [weight.new_empty(seq_len, batch, size).bernoulli_(keep).div_(keep) for size in sizes]

    def forward(self, inputs: Tensor, hidden: State) -> tuple[Tensor, State]:
        """The course's: (seq, batch) int64, state -> logits (seq, batch, vocab), final state."""
        logits, final_state, _ = self.forward_with_states(inputs, hidden)
        return logits, final_state

    def forward_with_states(self, inputs: Tensor, hidden: State) -> tuple[Tensor, State, Outputs]:
        """Like forward, plus outputs[layer][t] (batch, hidden), each layer's h_t: the very tensors the
        logits are computed from, so torch.autograd.grad(loss, outputs[layer]) is dL/dh_t."""
        seq_len, batch = inputs.shape
        expected = (self.num_layers, batch, self.hidden_size)
        for name, tensor in zip(self.state_names, self._unpack(hidden)):
            if tensor.shape != expected:
                raise ValueError(f"{type(self).__name__}: {name} has shape {tuple(tensor.shape)}; expected "
                                 f"(num_layers, batch, hidden_size) = {expected} "
                                 f"for inputs of shape (seq_len, batch) = {(seq_len, batch)}")
        embedding_mask, *layer_masks = self._dropout_masks(seq_len, batch)
        # 1. embeddings, dropped: (seq, batch, emb)
        x = self._embed(inputs)
        if embedding_mask is not None:
            x = x * embedding_mask
        # 2. the recurrence; top is the dropped output of the last layer: (seq, batch, hidden)
        run = self._run_fast if self.impl == "fast" else self._run_reference
        outputs, final_states, top = run(x, self._layer_states(hidden), layer_masks)
        # 3. the output layer once over the whole sequence: (seq * batch, hidden) -> (seq, batch, vocab)
        logits = self.out_layer(top.reshape(seq_len * batch, self.hidden_size))
        logits = logits.view(seq_len, batch, self.vocab_size)  # (seq * batch, vocab) -> (seq, batch, vocab)
        return logits, self._stacked(final_states), outputs

    def _run_reference(self, x: Tensor, states: list[LayerState],
                       masks: list[Tensor | None]) -> tuple[Outputs, list[LayerState], Tensor]:
        """The plain nested loop: time outer, layers inner, each layer's `_cell` on the concatenation."""
        states = list(states)  # per layer, updated at every time step
        outputs: Outputs = [[] for _ in range(self.num_layers)]
        tops = []
        for t in range(x.size(0)):
            below = x[t]  # (batch, emb)
            for layer in range(self.num_layers):
                states[layer] = self._cell(layer, below, states[layer])
                h = self._output(states[layer])  # (batch, hidden)
                outputs[layer].append(h)
                below = h if masks[layer] is None else h * masks[layer][t]
            tops.append(below)
        return outputs, states, torch.stack(tops)  # seq x (batch, hidden) -> (seq, batch, hidden)

    def _run_fast(self, x: Tensor, states: list[LayerState],
                  masks: list[Tensor | None]) -> tuple[Outputs, list[LayerState], Tensor]:
        """Layer-major: each layer runs over the whole sequence before the next one starts."""
        outputs: Outputs = []
        final_states = []
        below = x  # (seq, batch, emb)
        for layer, state in enumerate(states):
            layer_outputs, final_state = self._fast_layer(layer, below, state)
            outputs.append(layer_outputs)
            final_states.append(final_state)
            below = torch.stack(layer_outputs)  # (seq, batch, hidden)
            if masks[layer] is not None:
                below = below * masks[layer]
        return outputs, final_states, below

    def generate(self, inputs: Tensor, hidden: State, generated_seq_len: int, temperature: float = 0.0,
                 top_k: int = 0, generator: torch.Generator | None = None) -> Tensor:
        """The course's: (batch,) start tokens -> (generated_seq_len, batch) tokens, each step fed the previous one.

        Row 0 is the token predicted after `inputs`, from the state `hidden`. Greedy at temperature 0;
        otherwise sampled (see interface.next_token). `continue_tokens`, time-major: without dropout,
        whatever the mode, which it restores afterwards.
        """
        tokens = continue_tokens(self, inputs.unsqueeze(1), hidden, generated_seq_len, temperature, top_k,
                                 generator)  # (batch,) -> (batch, 1) in; (batch, generated_seq_len) out
        return tokens.t().contiguous()  # (generated_seq_len, batch)


def clones(module: nn.Module, n: int) -> nn.ModuleList:
    """The scaffold's helper: n deep copies of `module`, each with its own parameters."""
    return nn.ModuleList(copy.deepcopy(module) for _ in range(n))


def stacked_linears(emb_size: int, hidden_size: int, num_layers: int) -> nn.ModuleList:
    """Linear(emb + hidden, hidden) for layer 0, then clones of one Linear(2 hidden, hidden) for the rest.

    Built as the scaffold's RNN builds its stack, so the constructors draw from the RNG as there at any
    depth: two Linears whatever num_layers is (one of them unused at 1 layer).
    """
    first = nn.Linear(emb_size + hidden_size, hidden_size)
    return nn.ModuleList([first, *clones(nn.Linear(2 * hidden_size, hidden_size), num_layers - 1)])


def uniform_linears(linears: nn.ModuleList, bound: float) -> None:
    """U(-bound, bound) on each linear's weight, then its bias: the order the scaffold draws in."""
    for linear in linears:
        nn.init.uniform_(linear.weight, -bound, bound)
        nn.init.uniform_(linear.bias, -bound, bound)
