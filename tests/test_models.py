"""The models compute the course's equations: checked against independent float64 loops written here,
fast against reference, attention against torch's kernel, and generation against a manual loop."""
from __future__ import annotations

import copy
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ptblm.models
from ptblm.config import RunConfig
from ptblm.models import (GRU, LSTM, RNN, FullTransformer, MultiHeadedAttention, attention, build_model,
                          causal_mask, make_model)
from ptblm.models.interface import next_token
from ptblm.models.transformer import LayerNorm

EMB, HIDDEN, SEQ, BATCH, VOCAB = 6, 5, 4, 3, 11  # constructor shapes; forward is fed other ones too


def recurrent(cls, impl="fast", num_layers=2, keep=0.6, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return cls(EMB, HIDDEN, SEQ, BATCH, VOCAB, num_layers, keep, impl=impl).to(dtype)


def random_case(model, seq_len, batch, seed=1):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, VOCAB, (seq_len, batch), generator=generator)
    dtype = model.out_layer.weight.dtype
    hidden = torch.randn(model.num_layers, batch, HIDDEN, generator=generator, dtype=torch.float64).to(dtype)
    return inputs, hidden


def draw_masks(model, seq_len, batch, keep):
    """The documented dropout order: embedding mask, then one mask per layer output, scaled by 1/keep."""
    sizes = [EMB] + [HIDDEN] * model.num_layers
    return [torch.empty(seq_len, batch, size, dtype=torch.float64).bernoulli_(keep) / keep for size in sizes]


# --- independent float64 implementations of the course's equations ---------------------------------

def split(linear, n_in):
    """W (acting on x), U (acting on h), b of an nn.Linear(in + hidden, hidden)."""
    return linear.weight[:, :n_in], linear.weight[:, n_in:], linear.bias


def loop_rnn(model, inputs, hidden, masks):
    x_all = model.embeddings.weight[inputs] * (masks[0] if masks else 1)  # (seq, batch, emb)
    h = list(hidden)
    logits = []
    for t in range(inputs.size(0)):
        x = x_all[t]
        for layer in range(model.num_layers):
            W, U, b = split(model.layers[layer], x.size(-1))
            h[layer] = torch.tanh(x @ W.T + h[layer] @ U.T + b)
            x = h[layer] * (masks[1 + layer][t] if masks else 1)
        logits.append(x @ model.out_layer.weight.T + model.out_layer.bias)
    return torch.stack(logits), torch.stack(h)


def loop_gru(model, inputs, hidden, masks):
    x_all = model.word_embeddings.weight[inputs] * (masks[0] if masks else 1)  # (seq, batch, emb)
    h = list(hidden)
    logits = []
    for t in range(inputs.size(0)):
        x = x_all[t]
        for layer in range(model.num_layers):
            n_in = x.size(-1)
            W_r, U_r, b_r = split(model.r[layer], n_in)
            W_z, U_z, b_z = split(model.z[layer], n_in)
            W_h, U_h, b_h = split(model.h[layer], n_in)
            r = torch.sigmoid(x @ W_r.T + h[layer] @ U_r.T + b_r)
            z = torch.sigmoid(x @ W_z.T + h[layer] @ U_z.T + b_z)
            h_tilde = torch.tanh(x @ W_h.T + (r * h[layer]) @ U_h.T + b_h)
            h[layer] = (1 - z) * h[layer] + z * h_tilde
            x = h[layer] * (masks[1 + layer][t] if masks else 1)
        logits.append(x @ model.out_layer.weight.T + model.out_layer.bias)
    return torch.stack(logits), torch.stack(h)


def value_and_grads(outputs, leaves, seed=2):
    """A random linear functional of (logits, final hidden) and its gradient w.r.t. every leaf."""
    generator = torch.Generator().manual_seed(seed)
    loss = sum((out * torch.randn(out.shape, generator=generator, dtype=out.dtype)).sum() for out in outputs)
    return outputs, torch.autograd.grad(loss, leaves)


@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("cls, loop", [(RNN, loop_rnn), (GRU, loop_gru)])
@pytest.mark.parametrize("training", [False, True])
def test_equals_independent_loop_of_the_equations(cls, loop, impl, training):
    keep = 0.6
    model = recurrent(cls, impl, num_layers=2, keep=keep).train(training)
    inputs, hidden = random_case(model, seq_len=5, batch=2)
    hidden.requires_grad_()
    leaves = [*model.parameters(), hidden]

    torch.manual_seed(7)
    got, got_grads = value_and_grads(model(inputs, hidden), leaves)
    torch.manual_seed(7)
    masks = draw_masks(model, 5, 2, keep) if training else None
    want, want_grads = value_and_grads(loop(model, inputs, hidden, masks), leaves)

    for g, w in zip(got + got_grads, want + want_grads):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    assert got_grads[-1].abs().sum() > 0  # the initial hidden state matters


@pytest.mark.parametrize("cls", [RNN, GRU])
@pytest.mark.parametrize("num_layers, seq_len, batch", [(1, SEQ, BATCH), (1, 7, 2), (3, 1, 5), (3, 9, 1)])
@pytest.mark.parametrize("training", [False, True])
def test_fast_equals_reference(cls, num_layers, seq_len, batch, training):
    fast = recurrent(cls, "fast", num_layers, dtype=torch.float32).train(training)
    reference = recurrent(cls, "reference", num_layers, dtype=torch.float32).train(training)
    inputs, hidden = random_case(fast, seq_len, batch)
    hidden.requires_grad_()
    results = []
    for model in (fast, reference):
        torch.manual_seed(3)  # same dropout masks
        results.append(value_and_grads(model(inputs, hidden), [*model.parameters(), hidden]))
    (fast_out, fast_grads), (ref_out, ref_grads) = results

    assert fast_out[0].shape == (seq_len, batch, VOCAB) and fast_out[1].shape == (num_layers, batch, HIDDEN)
    for f, r in zip(fast_out + fast_grads, ref_out + ref_grads):
        torch.testing.assert_close(f, r, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cls", [RNN, GRU])
def test_init_hidden_and_shape_errors(cls):
    model = recurrent(cls, num_layers=3)
    hidden = model.init_hidden()
    assert hidden.shape == (3, BATCH, HIDDEN) and hidden.dtype == torch.float64 and not hidden.any()
    with pytest.raises(ValueError, match=r"hidden has shape \(3, 3, 5\).*\(3, 2, 5\)"):
        model(torch.zeros(SEQ, 2, dtype=torch.long), hidden)
    with pytest.raises(ValueError, match="impl = 'cudnn' is invalid"):
        cls(EMB, HIDDEN, SEQ, BATCH, VOCAB, 1, 0.5, impl="cudnn")


# --- initialisation --------------------------------------------------------------------------------

def uniform(shape, bound):
    return torch.empty(shape).uniform_(-bound, bound)


def scaffold_stack(emb, hidden, layers):
    """The scaffold RNN's construction: Linear(emb + hidden) appended, then copies of ONE Linear(2 hidden)."""
    stack = nn.ModuleList()
    stack.append(nn.Linear(emb + hidden, hidden))
    stack.extend([copy.deepcopy(module) for module in [nn.Linear(2 * hidden, hidden)] for _ in range(layers - 1)])
    return stack


def scaffold_init_stack(stack, hidden):
    k = 1 / math.sqrt(hidden)
    for linear in stack:
        nn.init.uniform_(linear.weight, -k, k)
        nn.init.uniform_(linear.bias, -k, k)


class ScaffoldRNN(nn.Module):
    """solution.py's RNN.__init__ and init_weights, written out here (attribute names and draw order)."""

    def __init__(self, emb, hidden, vocab, layers):
        super().__init__()
        self.embeddings = nn.Embedding(vocab, emb)
        self.layers = scaffold_stack(emb, hidden, layers)
        self.out_layer = nn.Linear(hidden, vocab)
        nn.init.uniform_(self.embeddings.weight, -0.1, 0.1)
        scaffold_init_stack(self.layers, hidden)
        nn.init.uniform_(self.out_layer.weight, -0.1, 0.1)
        nn.init.zeros_(self.out_layer.bias)


class ScaffoldGRU(nn.Module):
    """The scaffold leaves the GRU's construction open; this follows its RNN's template for every gate."""

    def __init__(self, emb, hidden, vocab, layers):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, emb)
        self.r, self.z, self.h = (scaffold_stack(emb, hidden, layers) for _ in range(3))
        self.out_layer = nn.Linear(hidden, vocab)
        nn.init.uniform_(self.word_embeddings.weight, -0.1, 0.1)
        for gate in (self.r, self.z, self.h):
            scaffold_init_stack(gate, hidden)
        nn.init.uniform_(self.out_layer.weight, -0.1, 0.1)
        nn.init.zeros_(self.out_layer.bias)


@pytest.mark.parametrize("layers", [1, 2, 4])
@pytest.mark.parametrize("cls, scaffold", [(RNN, ScaffoldRNN), (GRU, ScaffoldGRU)])
def test_initial_weights_equal_a_scaffold_style_construction(cls, scaffold, layers):
    emb, hidden, vocab = 7, 9, 13
    torch.manual_seed(1111)
    model = cls(emb, hidden, 35, 4, vocab, layers, 0.35)
    next_draw = torch.rand(3)
    torch.manual_seed(1111)
    want = scaffold(emb, hidden, vocab, layers).state_dict()
    assert torch.equal(torch.rand(3), next_draw)  # as many draws: dropout masks follow the same stream
    got = model.state_dict()
    assert list(got) == list(want)
    for name in want:
        assert torch.equal(got[name], want[name]), name


def test_gru_init_weights_uniform_calls_the_named_methods_in_order():
    model = recurrent(GRU, num_layers=2, dtype=torch.float32)
    torch.manual_seed(1111)
    model.init_weights_uniform()
    whole = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(1111)
    for name in ("init_embedding_weights_uniform", "init_reset_gate_weights_uniform",
                 "init_forget_gate_weights_uniform", "init_memory_weights_uniform",
                 "init_out_layer_weights_uniform"):
        getattr(model, name)()
    assert all(torch.equal(w, p) for w, p in zip(whole, model.parameters()))


@pytest.mark.parametrize("cls", [RNN, GRU])
def test_init_value_ranges(cls):
    hidden = 64
    torch.manual_seed(0)
    model = cls(50, hidden, 35, 4, 400, 2, 0.5)
    k = 1 / math.sqrt(hidden)
    for name, parameter in model.named_parameters():
        largest = parameter.abs().max().item()
        if name == "out_layer.bias":
            assert largest == 0, name
        elif name.endswith("embeddings.weight") or name == "out_layer.weight":
            assert 0.09 < largest <= 0.1, name
        else:
            assert 0.9 * k < largest <= k, name


# --- generation and the states used for the vanishing-gradient analysis ----------------------------

@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("cls", [RNN, GRU])
def test_generate_is_greedy_and_feeds_back_its_predictions(cls, impl):
    model = recurrent(cls, impl, keep=0.5).train()
    start, hidden = random_case(model, seq_len=1, batch=BATCH)
    tokens = model.generate(start[0], hidden, 6)
    assert model.training  # mode restored

    model.eval()
    expected, token = [], start[0]
    for _ in range(6):
        logits, hidden = model(token.unsqueeze(0), hidden)
        token = logits[0].argmax(dim=-1)
        expected.append(token)
    assert tokens.dtype == torch.int64 and torch.equal(tokens, torch.stack(expected))


@pytest.mark.parametrize("cls", [RNN, GRU])
def test_sampling_is_reproducible_and_respects_top_k(cls):
    model = recurrent(cls).eval()
    start, hidden = random_case(model, seq_len=1, batch=4)

    def sample(seed, **options):
        return model.generate(start[0], hidden, 12, generator=torch.Generator().manual_seed(seed), **options)

    assert torch.equal(sample(5, temperature=1.0), sample(5, temperature=1.0))
    assert not torch.equal(sample(5, temperature=1.0), sample(6, temperature=1.0))
    assert torch.equal(sample(5, temperature=2.0, top_k=1), model.generate(start[0], hidden, 12))

    tokens = sample(5, temperature=5.0, top_k=3)
    logits, _ = model(torch.cat([start, tokens[:-1]]), hidden)  # the steps' logits, fed the samples
    top3 = logits.topk(3, dim=-1).indices  # (12, batch, 3)
    assert (top3 == tokens.unsqueeze(-1)).any(-1).all()


def test_sampling_follows_the_tempered_softmax_over_the_top_k():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0]).expand(40_000, 4)  # one distribution, many draws
    generator = torch.Generator().manual_seed(0)
    for top_k, allowed in ((0, 4), (2, 2)):
        tokens = next_token(logits, temperature=2.0, top_k=top_k, generator=generator)
        frequencies = torch.bincount(tokens, minlength=4) / len(tokens)
        expected = torch.zeros(4)
        expected[:allowed] = torch.softmax(logits[0, :allowed] / 2.0, dim=-1)
        torch.testing.assert_close(frequencies, expected, rtol=0, atol=0.01)
    assert torch.equal(next_token(logits[:3], 0.0, 0, None), torch.zeros(3, dtype=torch.long))


@pytest.mark.parametrize("cls", [RNN, GRU])
def test_generation_and_forward_make_no_host_sync(cls, monkeypatch):
    model = recurrent(cls, keep=0.5).train()
    start, hidden = random_case(model, seq_len=1, batch=2)

    def sync(*_args, **_kwargs):
        raise AssertionError("host sync inside the model")

    for name in ("item", "tolist", "cpu", "numpy", "__bool__"):
        monkeypatch.setattr(torch.Tensor, name, sync)
    model(torch.zeros(3, 2, dtype=torch.long), hidden)
    model.generate(start[0], hidden, 4, temperature=1.0, top_k=3, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("cls", [RNN, GRU])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_forward_with_states_returns_the_states_the_loss_depends_on(cls, impl, num_layers):
    model = recurrent(cls, impl, num_layers).eval()
    inputs, hidden = random_case(model, seq_len=6, batch=2)
    targets = torch.randint(0, VOCAB, (2,), generator=torch.Generator().manual_seed(4))
    t, top = 2, num_layers - 1

    logits, final_hidden, states = model.forward_with_states(inputs, hidden)
    assert len(states) == num_layers and all(len(layer) == 6 for layer in states)
    torch.testing.assert_close(final_hidden, torch.stack([layer[-1] for layer in states]))
    torch.testing.assert_close(logits[t], model.out_layer(states[top][t]))
    loss = F.cross_entropy(logits[-1], targets)  # the loss at the last step, as in the analysis
    grad_from_states = torch.autograd.grad(loss, states[top])[t]

    # The same gradient from outside: stop after step t, restart from that hidden state.
    _, hidden_t = model(inputs[:t + 1], hidden)

    def loss_after(h_t):
        return F.cross_entropy(model(inputs[t + 1:], h_t)[0][-1], targets)

    h_t = hidden_t.detach().requires_grad_()
    restarted = loss_after(h_t)
    torch.testing.assert_close(restarted, loss)
    torch.testing.assert_close(grad_from_states, torch.autograd.grad(restarted, h_t)[0][top])

    direction = torch.zeros_like(h_t)
    direction[top] = torch.randn(h_t[top].shape, generator=torch.Generator().manual_seed(5), dtype=h_t.dtype)
    eps = 1e-6
    with torch.no_grad():
        step = eps * direction
        finite_difference = (loss_after(hidden_t + step) - loss_after(hidden_t - step)) / (2 * eps)
    directional = (grad_from_states * direction[top]).sum()
    torch.testing.assert_close(finite_difference, directional, rtol=1e-6, atol=1e-9)
    assert grad_from_states.abs().sum() > 0


# --- attention and the transformer -----------------------------------------------------------------

def test_attention_equals_independent_loop_and_torch_kernel_with_causal_mask():
    generator = torch.Generator().manual_seed(0)
    batch, heads, seq, d_k = 2, 3, 5, 4
    shape = (batch, heads, seq, d_k)
    q, k, v = (torch.randn(shape, generator=generator, dtype=torch.float64) for _ in range(3))
    mask = causal_mask(seq)
    output, probabilities = attention(q, k, v, mask)

    for b in range(batch):
        for h in range(heads):
            for i in range(seq):
                scores = np.array([q[b, h, i] @ k[b, h, j] / math.sqrt(d_k) for j in range(i + 1)])
                p = np.exp(scores - scores.max())
                p /= p.sum()
                np.testing.assert_allclose(probabilities[b, h, i, :i + 1].numpy(), p, rtol=1e-12)
                np.testing.assert_allclose(output[b, h, i].numpy(), p @ v[b, h, :i + 1].numpy(), rtol=1e-12)
    assert probabilities.masked_select(~mask).abs().max() < 1e-30  # masked: ~0 probability
    torch.testing.assert_close(output, F.scaled_dot_product_attention(q, k, v, is_causal=True))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_attention_masks_in_every_dtype_autocast_computes_in(dtype):
    """The masked score must fit the scores' dtype (-1e9 overflows float16: fp16 autocast); float32 keeps -1e9."""
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=generator) for _ in range(3))
    mask = causal_mask(5)
    expected, _ = attention(q.double(), k.double(), v.double(), mask)
    output, probabilities = attention(q.to(dtype), k.to(dtype), v.to(dtype), mask)
    assert output.dtype == dtype and probabilities.masked_select(~mask).abs().max() == 0
    tolerance = {torch.float16: 2e-3, torch.bfloat16: 2e-2, torch.float32: 1e-6}[dtype]
    torch.testing.assert_close(output.double(), expected, rtol=tolerance, atol=tolerance)
    if dtype == torch.float32:  # the fill stays the Annotated Transformer's -1e9: bit for bit as before
        scores = q @ k.transpose(-2, -1) / 2  # sqrt(d_k) = 2
        assert torch.equal(probabilities, scores.masked_fill(~mask, -1e9).softmax(-1))


def test_attention_applies_dropout_to_the_normalised_scores():
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 4, 3, generator=generator) for _ in range(3))
    _, probabilities = attention(q, k, v)
    torch.manual_seed(0)
    output, dropped = attention(q, k, v, dropout=nn.Dropout(0.5))
    torch.manual_seed(0)
    torch.testing.assert_close(dropped, F.dropout(probabilities, 0.5))
    torch.testing.assert_close(output, dropped @ v)


def random_mask(batch, seq, generator):
    """(batch, seq, seq) 0/1, the diagonal always allowed so no row is fully masked."""
    mask = (torch.rand(batch, seq, seq, generator=generator) > 0.4).long()
    return mask | torch.eye(seq, dtype=torch.long)


def test_multi_headed_attention_equals_per_head_computation_and_fused_kernel():
    generator = torch.Generator().manual_seed(0)
    n_heads, n_units, batch, seq = 3, 12, 2, 5
    torch.manual_seed(0)
    scratch = MultiHeadedAttention(n_heads, n_units).double().eval()
    torch.manual_seed(0)
    fused = MultiHeadedAttention(n_heads, n_units, fused=True).double().eval()
    x = torch.randn(batch, seq, n_units, generator=generator, dtype=torch.float64)
    mask = random_mask(batch, seq, generator)

    got = scratch(x, x, x, mask)
    bound = math.sqrt(1 / n_units)
    assert all(p.abs().max() <= bound for p in scratch.parameters())
    d_k = n_units // n_heads
    heads = []
    for h in range(n_heads):
        rows = slice(h * d_k, (h + 1) * d_k)
        # (batch, seq, d_k) each
        q, k, v = (x @ linear.weight[rows].T + linear.bias[rows] for linear in scratch.linears[:3])
        scores = (q @ k.transpose(1, 2) / math.sqrt(d_k)).masked_fill(mask == 0, -math.inf)
        heads.append(torch.softmax(scores, dim=-1) @ v)
    want = scratch.linears[3](torch.cat(heads, dim=-1))
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(fused(x, x, x, mask), got)


@pytest.mark.parametrize("attention_kind", ["scratch", "fused"])
@pytest.mark.parametrize("layer_norm", ["scaffold", "torch"])
def test_transformer_is_causal(attention_kind, layer_norm):
    torch.manual_seed(0)
    model = make_model(VOCAB, n_blocks=2, n_units=16, n_heads=4, attention=attention_kind,
                       layer_norm=layer_norm).eval()
    tokens = torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(1))
    changed = tokens.clone()
    changed[:, 5] = (tokens[:, 5] + 1) % VOCAB
    mask = causal_mask(8).expand(2, -1, -1)
    before, after = model(tokens, mask), model(changed, mask)
    assert before.shape == (2, 8, VOCAB)
    torch.testing.assert_close(torch.logsumexp(before, dim=-1), torch.zeros(2, 8))  # log-probabilities
    torch.testing.assert_close(after[:, :5], before[:, :5], rtol=0, atol=1e-6)
    assert (after[:, 5:] - before[:, 5:]).abs().amax(dim=-1).min() > 1e-4


def test_transformer_fused_equals_scratch_in_eval_mode():
    models = []
    for kind in ("scratch", "fused"):
        torch.manual_seed(0)
        models.append(make_model(VOCAB, n_blocks=2, n_units=16, n_heads=4, attention=kind).eval())
    tokens = torch.randint(0, VOCAB, (3, 7), generator=torch.Generator().manual_seed(1))
    mask = causal_mask(7)
    torch.testing.assert_close(models[1](tokens, mask), models[0](tokens, mask))


def test_make_model_keeps_the_scaffold_quirks():
    torch.manual_seed(0)
    model = make_model(VOCAB, n_blocks=3, n_units=16, n_heads=4, dropout=0.3)
    assert isinstance(model, FullTransformer) and len(model.transformer_stack.layers) == 3
    for block in model.transformer_stack.layers:
        assert block.self_attn.dropout.p == 0.1  # not the model's dropout
        assert block.feed_forward.w_1.out_features == 2048
        assert block.sublayer[0].dropout.p == 0.3
    for name, parameter in model.named_parameters():
        if parameter.dim() > 1:  # Glorot
            fan_out, fan_in = parameter.shape
            assert parameter.abs().max() <= math.sqrt(6 / (fan_in + fan_out)), name

    x = torch.randn(4, 16, dtype=torch.float64)
    unbiased_std = torch.from_numpy(np.std(x.numpy(), axis=-1, ddof=1))[:, None]
    want = (x - x.mean(-1, keepdim=True)) / (unbiased_std + 1e-6)
    torch.testing.assert_close(LayerNorm(16).double()(x), want)
    with pytest.raises(ValueError, match="attention = 'flash' is invalid"):
        make_model(VOCAB, attention="flash")


def test_transformer_generate_is_greedy_and_feeds_back_its_predictions():
    torch.manual_seed(0)
    model = make_model(VOCAB, n_blocks=1, n_units=8, n_heads=2).train()
    start = torch.tensor([1, 4, 7])
    tokens = model.generate(start, 5)
    assert model.training and tokens.shape == (5, 3)

    model.eval()
    sequence = start.unsqueeze(1)
    for _ in range(5):
        token = model(sequence, causal_mask(sequence.size(1)))[:, -1].argmax(dim=-1)
        sequence = torch.cat([sequence, token.unsqueeze(1)], dim=1)
    assert torch.equal(tokens, sequence[:, 1:].t())
    sampled = [model.generate(start, 5, temperature=1.0, generator=torch.Generator().manual_seed(3))
               for _ in range(2)]
    assert torch.equal(*sampled)


# --- what the package promises as a whole ----------------------------------------------------------

RESHAPE = re.compile(r"\.(view|reshape|unsqueeze|squeeze|transpose|permute|t|expand|flatten|unflatten|movedim)\(")


def test_every_reshape_in_the_models_says_its_shapes():
    """The project's rule for model code (nanoGPT's style): a shape comment on the reshape's line or the one
    before or after it (a statement may continue there)."""
    bare = []
    for path in sorted((Path(ptblm.models.__file__).parent).rglob("*.py")):
        lines = path.read_text().splitlines()
        for index, line in enumerate(lines):
            near = lines[max(0, index - 1):index + 2]
            if RESHAPE.search(line.split("#")[0]) and not any("(" in text.partition("#")[2] for text in near):
                bare.append(f"{path.name}:{index + 1}: {line.strip()}")
    assert bare == []


def config(model, **changes):
    return RunConfig.from_dict({"model": model, "optimizer": "ADAM", "initial_lr": 1e-3, "batch_size": 4,
                                "hidden_size": 16, "num_layers": 2, "dp_keep_prob": 0.8, **changes})


def test_build_model_follows_the_config():
    gru = build_model(config("GRU", impl="reference", emb_size=10), vocab_size=VOCAB)
    assert isinstance(gru, GRU) and gru.impl == "reference"
    assert gru.word_embeddings.weight.shape == (VOCAB, 10)
    assert gru.init_hidden().shape == (2, 4, 16) and gru.dropout.p == pytest.approx(0.2)
    assert isinstance(build_model(config("RNN"), VOCAB), RNN)
    transformer = build_model(config("TRANSFORMER", n_heads=4, attention="fused"), VOCAB)
    block = transformer.transformer_stack.layers[0]
    assert len(transformer.transformer_stack.layers) == 2 and block.self_attn.n_heads == 4
    assert block.self_attn.fused and block.sublayer[0].dropout.p == pytest.approx(0.2)


def test_no_built_in_recurrent_modules_or_fused_recurrent_ops():
    models = [RNN(4, 4, 2, 2, 5, 2, 0.5), GRU(4, 4, 2, 2, 5, 2, 0.5, impl="reference"),
              make_model(5, n_blocks=1, n_units=8, n_heads=2)]
    for model in models:
        for module in model.modules():
            assert not isinstance(module, (nn.RNNBase, nn.RNNCellBase)), type(module)
    sources = sorted(Path(ptblm.models.__file__).parent.glob("*.py"))
    assert len(sources) >= 4
    for source in sources:
        text = source.read_text()
        for forbidden in ("nn.GRU", "nn.RNN", "nn.LSTM", "_VF."):
            assert forbidden not in text, f"{source.name} mentions {forbidden}"


# --- the scaffold's names and signatures (solution.py, run_exp.py) ----------------------------------

def test_attention_method_is_the_function_and_forward_calls_it():
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 5, 4, generator=generator) for _ in range(3))
    mask = causal_mask(5).unsqueeze(1)  # (1, 1, 5, 5)
    module = MultiHeadedAttention(3, 12)
    torch.manual_seed(0)
    got = module.attention(q, k, v, mask=mask, dropout=nn.Dropout(0.3))
    torch.manual_seed(0)
    want = attention(q, k, v, mask, nn.Dropout(0.3))
    for a, b in zip(got, want):
        assert torch.equal(a, b)

    calls = []

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return MultiHeadedAttention.attention(module, *args, **kwargs)

    module.attention = spy
    x = torch.randn(2, 5, 12, generator=generator)
    module(x, x, x, causal_mask(5).expand(2, -1, -1))
    assert calls == [(2, 3, 5, 4)]  # (batch, heads, seq, d_k), one call for all heads


def test_scaffold_helpers():
    from ptblm.models import Batch, clones, subsequent_mask

    linear = nn.Linear(3, 2)
    copies = clones(linear, 3)
    assert isinstance(copies, nn.ModuleList) and len(copies) == 3
    assert all(torch.equal(c.weight, linear.weight) and c.weight is not linear.weight for c in copies)
    scaffold_mask = torch.from_numpy(np.triu(np.ones((1, 4, 4)), k=1).astype("uint8")) == 0
    assert torch.equal(subsequent_mask(4), scaffold_mask)
    tokens = torch.tensor([[3, 0, 2], [1, 1, 4]])
    batch = Batch(tokens)
    assert batch.data is tokens and torch.equal(batch.mask, scaffold_mask[:, :3, :3].expand(2, -1, -1))
    assert torch.equal(Batch(tokens, pad=0).mask[0, 2], torch.tensor([True, False, True]))


def test_transformer_built_with_the_scaffold_signatures_equals_make_model():
    from ptblm.models import ResidualSkipConnectionWithLayerNorm, TransformerBlock, TransformerStack
    from ptblm.models.transformer import MLP, PositionalEncoding, WordEmbedding

    n_units, n_blocks, dropout = 16, 3, 0.2
    torch.manual_seed(7)
    c = copy.deepcopy  # solution.py's make_model, line by line
    attn = MultiHeadedAttention(4, n_units)
    ff = MLP(n_units, dropout)
    position = PositionalEncoding(n_units, dropout)
    course = FullTransformer(
        transformer_stack=TransformerStack(TransformerBlock(n_units, c(attn), c(ff), dropout), n_blocks),
        embedding=nn.Sequential(WordEmbedding(n_units, VOCAB), c(position)), n_units=n_units, vocab_size=VOCAB)
    for p in course.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)
    torch.manual_seed(7)
    ours = make_model(VOCAB, n_blocks=n_blocks, n_units=n_units, n_heads=4, dropout=dropout)
    want, got = course.state_dict(), ours.state_dict()
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)
    residual = ResidualSkipConnectionWithLayerNorm(n_units, 0.0)
    x = torch.randn(2, n_units)
    torch.testing.assert_close(residual(x, lambda normed: 2 * normed), x + 2 * LayerNorm(n_units)(x))
    torch_norms = make_model(VOCAB, n_blocks=2, n_units=n_units, n_heads=4, layer_norm="torch")
    assert all(isinstance(m.norm, nn.LayerNorm) for m in torch_norms.modules() if hasattr(m, "norm"))


def test_recurrent_scaffold_names():
    import inspect

    assert list(inspect.signature(RNN.generate).parameters)[1:4] == ["inputs", "hidden", "generated_seq_len"]
    assert list(inspect.signature(GRU.generate).parameters)[1:4] == ["input", "hidden", "generated_seq_len"]
    model = recurrent(RNN, dtype=torch.float32)
    assert model.dp_keep_prob == 0.6
    torch.manual_seed(3)
    model.init_weights()  # solution.py's RNN.init_weights: embedding, each layer's weight then bias, output
    k = 1 / math.sqrt(HIDDEN)
    torch.manual_seed(3)
    want = [uniform((VOCAB, EMB), 0.1)]
    for n_in in (EMB, HIDDEN):
        want += [uniform((HIDDEN, n_in + HIDDEN), k), uniform(HIDDEN, k)]
    want += [uniform((VOCAB, HIDDEN), 0.1), torch.zeros(VOCAB)]
    assert all(torch.equal(p.detach(), w) for p, w in zip(model.parameters(), want))
    start = torch.tensor([1, 2, 3])
    gru = recurrent(GRU, dtype=torch.float32)
    assert torch.equal(gru.generate(input=start, hidden=gru.init_hidden(), generated_seq_len=4),
                       gru.generate(start, gru.init_hidden(), 4))


# --- the LSTM: the course's style (as its GRU), the state the pair (h, c) ------------------------------------

def lstm_case(model, seq_len, batch, seed=1):
    """Random (seq, batch) tokens and a random non-zero state (h, c), each (layers, batch, hidden)."""
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randint(0, VOCAB, (seq_len, batch), generator=generator)
    dtype = model.out_layer.weight.dtype
    h, c = (torch.randn(model.num_layers, batch, HIDDEN, generator=generator, dtype=torch.float64).to(dtype)
            for _ in range(2))
    return inputs, (h, c)


def loop_lstm(model, inputs, state, masks):
    """The issue's equations, written out: i, f, o = σ(W x_t + U h_{t-1} + b), c̃ = tanh(...), c_t = f c_{t-1} + i c̃,
    h_t = o tanh(c_t); dropout on the embedding and on each layer's output, never on h or c in the recurrence."""
    x_all = model.word_embeddings.weight[inputs] * (masks[0] if masks else 1)  # (seq, batch, emb)
    h, c = list(state[0]), list(state[1])
    logits = []
    for t in range(inputs.size(0)):
        x = x_all[t]
        for layer in range(model.num_layers):
            n_in = x.size(-1)
            W_i, U_i, b_i = split(model.i[layer], n_in)
            W_f, U_f, b_f = split(model.f[layer], n_in)
            W_o, U_o, b_o = split(model.o[layer], n_in)
            W_c, U_c, b_c = split(model.c[layer], n_in)
            i = torch.sigmoid(x @ W_i.T + h[layer] @ U_i.T + b_i)
            f = torch.sigmoid(x @ W_f.T + h[layer] @ U_f.T + b_f)
            o = torch.sigmoid(x @ W_o.T + h[layer] @ U_o.T + b_o)
            c_tilde = torch.tanh(x @ W_c.T + h[layer] @ U_c.T + b_c)
            c[layer] = f * c[layer] + i * c_tilde
            h[layer] = o * torch.tanh(c[layer])
            x = h[layer] * (masks[1 + layer][t] if masks else 1)
        logits.append(x @ model.out_layer.weight.T + model.out_layer.bias)
    return torch.stack(logits), torch.stack(h), torch.stack(c)


@pytest.mark.parametrize("impl", ["fast", "reference"])
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_lstm_equals_a_loop_of_its_equations_forward_and_backward_in_float64(impl, training, num_layers):
    keep = 0.6
    model = recurrent(LSTM, impl, num_layers=num_layers, keep=keep).train(training)
    inputs, (h0, c0) = lstm_case(model, seq_len=5, batch=2)
    h0.requires_grad_(), c0.requires_grad_()
    leaves = [*model.parameters(), h0, c0]

    torch.manual_seed(7)
    logits, (h_T, c_T) = model(inputs, (h0, c0))
    got, got_grads = value_and_grads((logits, h_T, c_T), leaves)
    torch.manual_seed(7)
    masks = draw_masks(model, 5, 2, keep) if training else None
    want, want_grads = value_and_grads(loop_lstm(model, inputs, (h0, c0), masks), leaves)

    assert logits.shape == (5, 2, VOCAB) and h_T.shape == c_T.shape == (num_layers, 2, HIDDEN)
    for g, w in zip(got + got_grads, want + want_grads):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    assert got_grads[-2].abs().sum() > 0 and got_grads[-1].abs().sum() > 0  # both h_0 and c_0 matter


@pytest.mark.parametrize("num_layers, seq_len, batch", [(1, SEQ, BATCH), (1, 7, 2), (3, 1, 5), (3, 9, 1)])
@pytest.mark.parametrize("training", [False, True])
def test_lstm_fast_path_equals_the_reference_loop(num_layers, seq_len, batch, training):
    fast = recurrent(LSTM, "fast", num_layers).train(training)
    reference = recurrent(LSTM, "reference", num_layers).train(training)
    inputs, (h0, c0) = lstm_case(fast, seq_len, batch)
    h0.requires_grad_(), c0.requires_grad_()
    results = []
    for model in (fast, reference):
        torch.manual_seed(3)  # same dropout masks
        logits, (h, c) = model(inputs, (h0, c0))
        results.append(value_and_grads((logits, h, c), [*model.parameters(), h0, c0]))
    (fast_out, fast_grads), (ref_out, ref_grads) = results
    for f, r in zip(fast_out + fast_grads, ref_out + ref_grads):
        torch.testing.assert_close(f, r, rtol=1e-10, atol=1e-12)


def test_lstm_state_is_the_pair_h_c_of_zeros_and_wrong_states_are_refused():
    model = recurrent(LSTM, num_layers=3)
    h, c = model.init_hidden()
    assert h.shape == c.shape == (3, BATCH, HIDDEN) and h.dtype == torch.float64 and not h.any() and not c.any()
    assert [t.shape for t in model.initial_state(7)] == [(3, 7, HIDDEN)] * 2
    tokens = torch.zeros(SEQ, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"LSTM: c has shape \(3, 3, 5\); expected .* \(3, 2, 5\)"):
        model(tokens, (torch.zeros(3, 2, HIDDEN, dtype=torch.float64), c))
    with pytest.raises(ValueError, match=r"LSTM: the state is the tuple \(h, c\); got Tensor"):
        model(tokens, h)


def test_lstm_dropout_is_on_the_embedding_and_between_layers_never_on_the_recurrence():
    """With every layer's output dropped completely (masks of zeros there), the logits are the output bias alone,
    yet the final state is the undropped recurrence's: dropout never touches h or c inside a layer."""
    model = recurrent(LSTM, num_layers=2, keep=0.5).train()
    inputs, state = lstm_case(model, seq_len=4, batch=2)
    torch.manual_seed(5)
    logits, (h, c) = model(inputs, state)
    torch.manual_seed(5)
    masks = draw_masks(model, 4, 2, 0.5)
    _, want_h, want_c = loop_lstm(model, inputs, state, masks)
    torch.testing.assert_close(h, want_h)
    torch.testing.assert_close(c, want_c)
    # the top layer's h_T, undropped, is what the last layer computed; its dropped copy fed the output layer
    model.eval()
    eval_logits, _ = model(inputs, state)
    assert not torch.allclose(logits, eval_logits)  # dropout acted in training
    top_mask = masks[-1][-1]  # (batch, hidden): the last step's mask on the top layer's output
    torch.testing.assert_close(logits[-1], model.out_layer(h[-1] * top_mask))


class ScaffoldLSTM(nn.Module):
    """The GRU's construction (ScaffoldGRU) with the LSTM's four maps i, f, o, c."""

    def __init__(self, emb, hidden, vocab, layers):
        super().__init__()
        self.word_embeddings = nn.Embedding(vocab, emb)
        self.i, self.f, self.o, self.c = (scaffold_stack(emb, hidden, layers) for _ in range(4))
        self.out_layer = nn.Linear(hidden, vocab)
        nn.init.uniform_(self.word_embeddings.weight, -0.1, 0.1)
        for gate in (self.i, self.f, self.o, self.c):
            scaffold_init_stack(gate, hidden)
        nn.init.uniform_(self.out_layer.weight, -0.1, 0.1)
        nn.init.zeros_(self.out_layer.bias)


@pytest.mark.parametrize("layers", [1, 2, 4])
def test_lstm_is_built_and_initialised_as_the_gru(layers):
    import inspect

    emb, hidden, vocab = 7, 9, 13
    assert list(inspect.signature(LSTM).parameters)[:7] == [
        "emb_size", "hidden_size", "seq_len", "batch_size", "vocab_size", "num_layers", "dp_keep_prob"]
    torch.manual_seed(1111)
    model = LSTM(emb, hidden, 35, 4, vocab, layers, 0.35)
    next_draw = torch.rand(3)
    torch.manual_seed(1111)
    want = ScaffoldLSTM(emb, hidden, vocab, layers).state_dict()
    assert torch.equal(torch.rand(3), next_draw)
    got = model.state_dict()
    assert list(got) == list(want) and all(torch.equal(got[name], want[name]) for name in want)
    for maps in (model.i, model.f, model.o, model.c):
        assert maps[0].in_features == emb + hidden and maps[0].out_features == hidden
        assert all(linear.in_features == 2 * hidden for linear in maps[1:layers])
    assert model.dropout.p == pytest.approx(0.65) and model.dp_keep_prob == 0.35
    assert not any(isinstance(m, (nn.RNNBase, nn.RNNCellBase)) for m in model.modules())

    torch.manual_seed(3)
    model.init_weights_uniform()
    whole = [p.detach().clone() for p in model.parameters()]
    torch.manual_seed(3)
    for name in ("init_embedding_weights_uniform", "init_input_gate_weights_uniform",
                 "init_forget_gate_weights_uniform", "init_output_gate_weights_uniform",
                 "init_memory_weights_uniform", "init_out_layer_weights_uniform"):
        getattr(model, name)()
    assert all(torch.equal(w, p) for w, p in zip(whole, model.parameters()))


@pytest.mark.parametrize("impl", ["fast", "reference"])
def test_lstm_generate_is_greedy_and_feeds_back_its_predictions_and_state(impl):
    model = recurrent(LSTM, impl, keep=0.5).train()
    start, state = lstm_case(model, seq_len=1, batch=BATCH)
    tokens = model.generate(input=start[0], hidden=state, generated_seq_len=6)
    assert model.training  # mode restored
    model.eval()
    expected, token = [], start[0]
    for _ in range(6):
        logits, state = model(token.unsqueeze(0), state)
        token = logits[0].argmax(dim=-1)
        expected.append(token)
    assert torch.equal(tokens, torch.stack(expected))


def test_lstm_forward_with_states_gives_dl_dh_t():
    """outputs[layer][t] is h_t: its gradient equals the one found by restarting from (h_t, c_t)."""
    model = recurrent(LSTM, "fast", 2).eval()
    inputs, state = lstm_case(model, seq_len=6, batch=2)
    targets = torch.randint(0, VOCAB, (2,), generator=torch.Generator().manual_seed(4))
    t, top = 2, 1
    logits, _, outputs = model.forward_with_states(inputs, state)
    loss = F.cross_entropy(logits[-1], targets)
    grad_from_outputs = torch.autograd.grad(loss, outputs[top])[t]

    _, (h_t, c_t) = model(inputs[:t + 1], state)
    h_t = h_t.detach().requires_grad_()
    restarted = F.cross_entropy(model(inputs[t + 1:], (h_t, c_t.detach()))[0][-1], targets)
    torch.testing.assert_close(restarted, loss)
    torch.testing.assert_close(grad_from_outputs, torch.autograd.grad(restarted, h_t)[0][top])
    assert grad_from_outputs.abs().sum() > 0


def test_build_model_builds_the_lstm_from_its_setting():
    lstm = build_model(config("LSTM", impl="reference", emb_size=10), vocab_size=VOCAB)
    assert isinstance(lstm, LSTM) and lstm.impl == "reference" and lstm.word_embeddings.weight.shape == (VOCAB, 10)
    assert [t.shape for t in lstm.init_hidden()] == [(2, 4, 16)] * 2 and lstm.dropout.p == pytest.approx(0.2)
