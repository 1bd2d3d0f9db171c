"""The one interface every model offers ptblm's own code: the step, the epoch loop, the bench, the report.

    logits, state = model.lm_forward(tokens, state)   tokens (batch, seq) int64 -> logits (batch, seq, vocab)
    state = model.initial_state(batch_size)           zeros for a recurrent model, None for the Transformer

A state is a tensor pytree: None, a tensor, or a tuple of states (the LSTM's (h, c)); whoever carries
it across batches (detach, copy into a CUDA graph's buffers) maps over its tensors with `map_state`
and never looks inside. The course's own signatures ((seq, batch) forward, init_hidden, generate)
stay on the classes beside this interface, for run_exp.py and the graders (see ptblm.models).

Generation is built on the interface alone (`continue_tokens`), so that `ptblm samples` and `ptblm generate`
continue any registered model; the course's `generate` methods are that routine in their own signatures.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, Union

import torch
from torch import Tensor, nn

State = Union["Tensor", tuple["State", ...], None]


class LanguageModel(Protocol):
    def lm_forward(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """(batch, seq) token ids and the state after the previous batch -> logits (batch, seq, vocab), next state."""

    def initial_state(self, batch_size: int) -> State:
        """The state before the first batch of a split, on the parameters' device and dtype."""


def map_state(function: Callable[[Tensor], Any], state: State) -> State:
    """`function` applied to each tensor of `state`, its structure kept (None stays None)."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return tuple(map_state(function, part) for part in state)
    return function(state)


def state_tensors(state: State) -> list[Tensor]:
    """The tensors of `state`, depth first."""
    tensors: list[Tensor] = []
    map_state(tensors.append, state)
    return tensors


@torch.no_grad()
def continue_tokens(model: LanguageModel, prefix: Tensor, state: State, length: int, temperature: float = 0.0,
                    top_k: int = 0, generator: torch.Generator | None = None, banned: Sequence[int] = ()) -> Tensor:
    """prefix (batch, prefix_len) token ids and the state before it -> (batch, length) tokens that continue it,
    each predicted from the prefix and the tokens generated before it (`next_token`: greedy at temperature 0).

    A model with a state is fed the prefix once, then each new token, the state carried. A model without one
    (state None, the Transformer: its attention is causal) is fed the whole sequence so far at every step;
    simple on purpose (no key/value cache). `banned` tokens are never picked: their logits are -inf
    (probability 0, the others renormalised). Runs in eval mode (no dropout); the mode is restored after.
    """
    tokens = prefix.new_empty(prefix.size(0), length)  # (batch, length)
    banned_ids = torch.tensor(list(banned), dtype=torch.long, device=prefix.device)  # (banned,)
    sequence = fed = prefix  # (batch, t): everything so far; what the next lm_forward is fed
    with evaluating(model):
        for step in range(length):
            logits, next_state = model.lm_forward(fed, state)  # (batch, fed, vocab)
            scores = logits[:, -1]  # (batch, vocab): the prediction after the last token fed
            if banned:
                scores = scores.index_fill(-1, banned_ids, -math.inf)
            token = next_token(scores, temperature, top_k, generator)  # (batch,)
            tokens[:, step] = token
            if state is None:
                sequence = fed = torch.cat([sequence, token.unsqueeze(1)], dim=1)  # (batch, t + 1)
            else:
                state, fed = next_state, token.unsqueeze(1)  # (batch,) -> (batch, 1)
    return tokens


def next_token(logits: Tensor, temperature: float, top_k: int, generator: torch.Generator | None) -> Tensor:
    """(batch, vocab) scores -> (batch,) tokens, without a host sync.

    temperature 0: the argmax. temperature > 0: a sample from softmax(logits / temperature), over the
    top_k highest scores only when top_k > 0, drawn with `generator` (on the logits' device). A -inf score
    (a banned token) is never picked; a NaN one (a diverged model) counts as the lowest finite score.

    Numerically safe at every finite temperature: the sample is the Gumbel-max race
    argmax(logits / T + G), G = -log(Exp(1)), computed as argmax(logits + T * G) when T < 1 (the same argmax,
    scaled by T > 0), so nothing is divided by a tiny T (logits / 1e-40 overflowed to inf, softmax gave NaN and
    argmax token 0, <unk> or not). A distribution that underflows to one token is its argmax, as it should be.
    """
    if not temperature >= 0 or not top_k >= 0:
        raise ValueError(f"generate: temperature = {temperature!r} and top_k = {top_k!r}; valid: "
                         f"temperature >= 0 (0 = greedy) and top_k >= 0 (0 = the whole vocabulary)")
    lowest = torch.finfo(logits.dtype).min if logits.is_floating_point() else -math.inf
    scores = torch.nan_to_num(logits, nan=lowest, posinf=-lowest, neginf=-math.inf)  # (batch, vocab)
    if temperature == 0:
        return scores.argmax(dim=-1)
    if top_k > 0:
        kth_best = scores.topk(min(top_k, scores.size(-1)), dim=-1).values[:, -1:]  # (batch, 1)
        scores = scores.masked_fill(scores < kth_best, -math.inf)
    scores = scores.double()  # float32 logits differ by up to 6.8e38: exact in float64
    shifted = scores - scores.max(dim=-1, keepdim=True).values  # (batch, vocab): <= 0, the best 0, banned -inf
    # The exponential race: argmax(p / q), q ~ Exp(1), is a sample from p (what torch.multinomial does for one
    # sample, minus the validity checks that sync on older torch); in logs, argmax(log p + G), G = -log q.
    # q is drawn in float32 as it always was, so a seed gives the samples it gave before.
    race = torch.empty(shifted.shape, dtype=torch.float32, device=shifted.device).exponential_(generator=generator)
    gumbel = -race.double().clamp_min(torch.finfo(torch.float32).tiny).log()  # (batch, vocab), finite: < 88
    keys = shifted + temperature * gumbel if temperature < 1 else shifted / temperature + gumbel
    return keys.masked_fill(shifted == -math.inf, -math.inf).argmax(dim=-1)


@contextmanager
def evaluating(module: nn.Module) -> Iterator[None]:
    """Eval mode (no dropout) inside the block; the previous train/eval mode afterwards."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)
