"""One generation routine (models.interface.continue_tokens) continues any model through the interface alone:
`ptblm samples` and `ptblm generate` use it for every model, and the recurrent models' samples are what they were
before it (values computed on main's code, commit 906608a, where each model generated with its own `generate`)."""
from __future__ import annotations

import zlib

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from conftest import tiny_config
from ptblm.data import UNK, load_corpus
from ptblm.models.interface import continue_tokens, next_token
from ptblm.report.samples import PER_LENGTH, Decoding, continue_prompt, continue_run, make_samples, start_words
from ptblm.report.trained import TrainedModel, load_trained
from ptblm.train import train_run

DECODINGS = {"greedy": Decoding(), "greedy, no <unk>": Decoding(no_unk=True),
             "top 5 at 1.2": Decoding(temperature=1.2, top_k=5, seed=4),
             "at 0.8, no <unk>": Decoding(temperature=0.8, seed=5, no_unk=True)}
# (model, decoding): (CRC-32 of the 20 samples' "id start words" lines, the sum of their mean log p, the 12 words
# `ptblm generate` continued "w1 w2 w3" with), each model trained one epoch with tiny_config on the synthetic corpus
BEFORE_THE_SHARED_ROUTINE = {
    ("RNN", "greedy"): (837061395, -32.74683928489685, " ".join([UNK] * 12)),
    ("RNN", "greedy, no <unk>"): (2188763847, -42.55939030647278, "N N N N N N N N N N N N"),
    ("RNN", "top 5 at 1.2"): (1172314208, -43.60224461555481, "w6 N <unk> <eos> <unk> <unk> <unk> <eos> w6 w6 <unk> N"),
    ("RNN", "at 0.8, no <unk>"): (4162533131, -63.33124780654907, "N w1 w21 N <eos> w2 N <eos> w21 w0 <eos> <eos>"),
    ("GRU", "greedy"): (3169208463, -33.57118761539459, " ".join([UNK] * 12)),
    ("GRU", "greedy, no <unk>"): (121648617, -43.17722702026367, "N N N N N N N N N N N N"),
    ("GRU", "top 5 at 1.2"): (2570320853, -44.08660125732422, "w6 N <unk> <eos> <unk> <unk> <unk> <eos> w6 w6 <unk> N"),
    ("GRU", "at 0.8, no <unk>"): (2846827048, -63.84870886802673, "N w1 w21 N <eos> <eos> N <eos> w21 w0 <eos> <eos>"),
    ("LSTM", "greedy"): (87369231, -35.99076795578003, " ".join([UNK] * 12)),
    ("LSTM", "greedy, no <unk>"): (3884607479, -42.61531639099121, "N N N N N N N N N N N N"),
    ("LSTM", "top 5 at 1.2"): (4128558446, -45.07573127746582,
                               "w6 N <unk> <eos> <unk> <unk> <unk> <eos> w6 w6 <unk> N"),
    ("LSTM", "at 0.8, no <unk>"): (2318852437, -63.432491064071655,
                                   "N w1 w21 N <eos> <eos> N <eos> w21 w0 <eos> <eos>"),
}


@pytest.mark.parametrize("model", ["RNN", "GRU", "LSTM"])
def test_recurrent_samples_and_continuations_are_what_they_were_before_the_shared_routine(model, synthetic_dir,
                                                                                          tmp_path):
    """Words bit for bit (the CRC); the log-probabilities to a tolerance that only absorbs another CPU's float32
    kernels (on the machine they were computed on, they are equal)."""
    train_run(tiny_config(model=model, num_epochs=1), synthetic_dir, tmp_path, echo=False, interactive=False,
              environ={})
    trained = load_trained(tmp_path, model, batch_size=PER_LENGTH)
    starts = start_words(trained.corpus, 2 * PER_LENGTH, seed=0)
    for name, decoding in DECODINGS.items():
        crc, log_prob_sum, continuation = BEFORE_THE_SHARED_ROUTINE[(model, name)]
        samples = make_samples(trained, starts, decoding)
        text = "\n".join(f"{s.id} {s.start} {' '.join(s.words)}" for s in samples)
        assert zlib.crc32(text.encode()) == crc, name
        assert sum(s.mean_log_prob for s in samples) == pytest.approx(log_prob_sum, rel=1e-6, abs=0), name
        assert " ".join(continue_run(tmp_path, "w1 w2 w3", 12, decoding).words) == continuation, name


# --- models that have the interface and nothing else -------------------------------------------------------------

VOCAB = 7


class Bigram(nn.Module):
    """Stateless: each position's logits are a row of a table picked by its token."""

    def __init__(self, vocab: int = VOCAB):
        super().__init__()
        self.table = nn.Embedding(vocab, vocab)
        self.fed: list[tuple[int, ...]] = []  # the shape of every lm_forward's tokens

    def lm_forward(self, tokens, state):
        self.fed.append(tuple(tokens.shape))
        return self.table(tokens), None  # (batch, seq) -> (batch, seq, vocab)

    def initial_state(self, batch_size):
        return None


class RunningSum(Bigram):
    """With a state: each position's logits are the sum of the rows of its token and every token before it."""

    def lm_forward(self, tokens, state):
        self.fed.append(tuple(tokens.shape))
        sums = self.table(tokens).cumsum(dim=1) + state.unsqueeze(1)  # (batch, seq, vocab); state (batch, vocab)
        return sums, sums[:, -1]

    def initial_state(self, batch_size):
        return self.table.weight.new_zeros(batch_size, self.table.num_embeddings)


def argmax_from_scratch(model, prefix, length):
    """Greedy continuation computed the slow way: every step the whole sequence from the initial state."""
    sequence = prefix
    with torch.no_grad():
        for _ in range(length):
            logits, _ = model.lm_forward(sequence, model.initial_state(sequence.size(0)))  # (batch, t, vocab)
            sequence = torch.cat([sequence, logits[:, -1].argmax(dim=-1, keepdim=True)], dim=1)  # (batch, t + 1)
    return sequence[:, prefix.size(1):]


@pytest.mark.parametrize("cls, fed", [(Bigram, [(2, 3), (2, 4), (2, 5), (2, 6)]),
                                      (RunningSum, [(2, 3), (2, 1), (2, 1), (2, 1)])])
def test_a_stateless_model_is_fed_the_whole_sequence_a_stateful_one_its_new_token(cls, fed):
    torch.manual_seed(0)
    model = cls().train()
    prefix = torch.tensor([[1, 2, 3], [4, 5, 6]])  # (batch, prefix)
    tokens = continue_tokens(model, prefix, model.initial_state(2), 4)
    assert model.fed == fed and model.training  # the mode is restored
    assert torch.equal(tokens, argmax_from_scratch(model, prefix, 4))
    banned = continue_tokens(model, prefix, model.initial_state(2), 4, banned=[int(tokens[0, 0]), 0])
    assert banned[0, 0] != tokens[0, 0] and not (banned == 0).any()
    seeded = [continue_tokens(model, prefix, model.initial_state(2), 30, temperature=2.0, top_k=3,
                              generator=torch.Generator().manual_seed(seed)) for seed in (1, 1, 2)]
    assert torch.equal(seeded[0], seeded[1]) and not torch.equal(seeded[0], seeded[2])


@pytest.mark.parametrize("cls", [Bigram, RunningSum])
def test_samples_and_prompts_need_only_the_interface(cls, synthetic_dir, tmp_path):
    """A model without the course's generate, out_layer or (seq, batch) forward: samples and prompts continue it."""
    corpus = load_corpus(synthetic_dir)
    torch.manual_seed(0)
    trained = TrainedModel(tmp_path, tiny_config(), cls(corpus.vocab_size), corpus, epoch=1, valid_ppl=1.0)
    starts = start_words(corpus, 2 * PER_LENGTH, seed=0)
    samples = make_samples(trained, starts, Decoding(no_unk=True))
    assert [s.start for s in samples] == starts and all(UNK not in s.words for s in samples)
    prompt = ["w1", "w2", UNK]
    ids = torch.tensor([[corpus.word_to_id[w] for w in prompt]])  # (1, prompt)
    words = continue_prompt(trained, prompt, 5, Decoding())
    expected = argmax_from_scratch(trained.model, ids, 5)[0].tolist()
    assert words == [corpus.id_to_word[i] for i in expected]


def test_the_transformer_continues_prompts_and_makes_samples(synthetic_dir, tmp_path):
    """What `ptblm generate` and `ptblm samples` refused or could not do before: greedy is the argmax of the
    course's forward (log-probabilities, causal mask) over the whole sequence so far, at every step."""
    from ptblm.cli import main
    from ptblm.models import causal_mask

    run = tmp_path / "run"
    train_run(tiny_config(model="TRANSFORMER", num_epochs=1, max_batches=4), synthetic_dir, run, echo=False, environ={})
    result = continue_run(run, "w1 w2 nonsense", 6, Decoding())
    assert result.prompt == ["w1", "w2", UNK] and result.unknown == ["nonsense"]
    trained = load_trained(run, None, batch_size=1)
    sequence = torch.tensor([[trained.corpus.word_to_id[w] for w in result.prompt]])  # (1, prompt)
    with torch.no_grad():
        for _ in range(6):
            log_probs = trained.model(sequence, causal_mask(sequence.size(1)))  # (1, t, vocab)
            sequence = torch.cat([sequence, log_probs[:, -1].argmax(dim=-1, keepdim=True)], dim=1)  # (1, t + 1)
    assert result.words == [trained.corpus.id_to_word[i] for i in sequence[0, 3:].tolist()]
    sampled = [continue_run(run, "w1", 30, Decoding(temperature=1.5, seed=seed, no_unk=True)).words
               for seed in (1, 1, 2)]
    assert sampled[0] == sampled[1] != sampled[2] and UNK not in sampled[0] + sampled[2]
    assert main(["generate", str(run), "--prompt", "w1 w2", "--length", "4", "--data", str(synthetic_dir)]) == 0

    batch = load_trained(run, None, batch_size=PER_LENGTH)
    samples = make_samples(batch, start_words(batch.corpus, 2 * PER_LENGTH, seed=0), Decoding())
    assert [len(s.words) for s in samples] == [35] * PER_LENGTH + [70] * PER_LENGTH
    first = torch.tensor([[batch.corpus.word_to_id[w] for w in [samples[0].start, *samples[0].words]]])
    with torch.no_grad():
        log_probs = batch.model(first[:, :-1], causal_mask(35))  # (1, 35, vocab)
    assert torch.equal(log_probs[0].argmax(dim=-1), first[0, 1:])  # each token the argmax after its prefix
    picked = log_probs[0].gather(-1, first[0, 1:].unsqueeze(-1))  # (35, 1)
    assert samples[0].mean_log_prob == pytest.approx(picked.mean().item(), rel=1e-5)


def test_the_course_s_generate_methods_are_the_shared_routine():
    from ptblm.models import GRU, make_model

    torch.manual_seed(0)
    gru, transformer = GRU(6, 5, 4, 3, VOCAB, 2, 0.6), make_model(VOCAB, n_blocks=1, n_units=8, n_heads=2)
    start = torch.tensor([1, 4, 6])  # (batch,)
    for model, state, generate in ((gru, gru.init_hidden(), lambda **kw: gru.generate(start, gru.init_hidden(), 9,
                                                                                          **kw)),
                                   (transformer, None, lambda **kw: transformer.generate(start, 9, **kw))):
        for options in ({}, dict(temperature=1.3, top_k=4)):
            shared = continue_tokens(model, start.unsqueeze(1), state, 9, generator=torch.Generator().manual_seed(2),
                                     **options)  # (batch, 9)
            assert torch.equal(generate(generator=torch.Generator().manual_seed(2), **options), shared.t())



@st.composite
def scores_to_sample(draw):
    """A row of float32 logits, some tokens banned (-inf, as --no-unk bans <unk>) but never all, and a top_k."""
    logits = draw(st.lists(st.floats(-1e4, 1e4, width=32), min_size=2, max_size=12))
    banned = draw(st.sets(st.integers(0, len(logits) - 1), max_size=len(logits) - 1))
    return logits, sorted(banned), draw(st.integers(0, len(logits)))


@settings(max_examples=300, deadline=None)
@given(scores_to_sample(), st.floats(min_value=0.0, exclude_min=True, allow_infinity=False), st.integers(0, 2**31))
def test_sampling_is_safe_at_every_finite_temperature_and_never_picks_a_banned_token(case, temperature, seed):
    """logits / 1e-40 overflowed to inf, softmax gave NaN and argmax token 0 (`generate --temperature 1e-40
    --no-unk` said <unk> <unk> <unk>): every finite temperature > 0 now samples an allowed token among the top k,
    and one so small that the distribution underflows to its best token picks that token, as greedy does."""
    logits, banned, top_k = case
    row = torch.tensor([logits]).index_fill(-1, torch.tensor(banned, dtype=torch.long), float("-inf"))  # (1, vocab)
    token = int(next_token(row, temperature, top_k, torch.Generator().manual_seed(seed))[0])
    allowed = sorted((value for index, value in enumerate(row[0].tolist()) if index not in banned), reverse=True)
    assert token not in banned and row[0, token] >= allowed[min(top_k or len(allowed), len(allowed)) - 1]
    best = allowed[0]
    below = [value for value in allowed if value < best]
    if not below or (best - below[0]) / temperature > 1000:  # exp(-1000): no float holds the others' probability
        assert row[0, token] == best
    assert int(next_token(row, temperature, top_k, torch.Generator().manual_seed(seed))[0]) == token  # its seed's


def test_a_tiny_temperature_continues_as_greedy_and_no_unk_never_says_unk(synthetic_dir, tmp_path, capsys):
    from ptblm.cli import main

    run = tmp_path / "results" / "unit" / "gru"
    train_run(tiny_config(num_epochs=1, max_batches=4), synthetic_dir, run, echo=False, environ={})
    greedy = continue_run(run, "w1 w2", 6, Decoding(no_unk=True)).words
    assert UNK not in greedy and continue_run(run, "w1 w2", 6, Decoding()).words != greedy  # <unk> is its argmax
    for temperature in (1e-40, 1e-300, 5e-324):
        assert continue_run(run, "w1 w2", 6, Decoding(temperature=temperature, no_unk=True)).words == greedy
    assert main(["generate", "unit/gru", "--results", str(tmp_path / "results"), "--prompt", "w1 w2",
                 "--temperature", "1e-40", "--no-unk", "--length", "6", "--data", str(synthetic_dir)]) == 0
    assert capsys.readouterr().out.strip() == f"[w1 w2] {' '.join(greedy)}"
