"""`ptblm samples`: the appendix's generated sequences and the numbers that help compare them; `ptblm generate`.

Per analysed model (report.trained.analysed_runs), 10 sequences of 35 tokens and 10 of 70, every token
predicted from the model's own previous predictions, from the model's initial_state (zeros) for 10 sequences.
Every model starts from the same 20 seeded start words, drawn without replacement from the training
unigram distribution with <eos> and <unk> excluded (a sample should start from a real word), one
word per sample (greedy decoding from one word would otherwise repeat the 35-token samples as the
prefix of the 70-token ones). Greedy by default; --temperature / --top-k sample instead; --no-unk
never picks <unk> (its probability set to 0, the others renormalised), in either mode.

Per sample: the distinct-token ratio, the longest n-gram that occurs twice (occurrences may
overlap), and the mean log-probability of the generated tokens under the model (unmodified).
PICK_RULES then choose 3 best, 3 worst and 3 interesting samples; all stay in the appendix,
so a person can overrule the choice.

Both commands generate with models.interface.continue_tokens, which continues any registered model
(a prompt is its prefix) through the interface alone: nothing here depends on which model it is.
"""
from __future__ import annotations

import json
import statistics
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..outputs import write_text
from ..data import EOS, UNK, Corpus, DataError
from ..errors import UserError
from ..models.interface import continue_tokens
from . import latex
from .trained import TrainedModel, load_trained

FOLDER = "samples"  # inside the report folder
LENGTHS = (35, 70)
PER_LENGTH = 10  # sequences per model and length: the batch the models are built for
EXCLUDED_START_WORDS = (EOS, UNK)
PICKED = 3  # samples per pick
PICK_RULES = {  # pick -> how it is chosen, as the appendix says it
    "best": "the highest mean log-probability among the samples whose distinct-token ratio is at least the "
            "median (fluent, and not a loop)",
    "worst": "the lowest distinct-token ratio, ties broken by the longer repeated n-gram (the loops)",
    "interesting": "of the rest, the lowest mean log-probability (where the model is least sure, off its "
                   "beaten track)",
}


class PromptError(UserError, ValueError):
    """A prompt that cannot be continued; the message says why."""


@dataclass
class Sample:
    id: str  # e.g. "RNN-35-03": model, length, number
    model: str
    length: int
    start: str
    words: list[str]  # the generated tokens, start word excluded
    distinct_ratio: float  # distinct tokens / tokens
    longest_repeat: list[str]  # the longest n-gram occurring at least twice ([] if none)
    mean_log_prob: float  # mean over the generated tokens of log p(token | start, previous tokens)


@dataclass(frozen=True)
class Decoding:
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0  # 0 = the whole vocabulary
    seed: int = 0  # start words and sampling
    no_unk: bool = False  # never pick <unk>

    def describe(self) -> str:
        unk = (f", {UNK} never picked (its probability set to 0, the rest renormalised)" if self.no_unk
               else f", {UNK} allowed")
        if self.temperature == 0:
            return "greedy (the most probable next token at every step)" + unk
        top = f", from the {self.top_k} most probable tokens" if self.top_k else ""
        return f"sampled at temperature {self.temperature:g}{top} (seed {self.seed})" + unk


def start_words(corpus: Corpus, count: int, seed: int) -> list[str]:
    """`count` distinct words drawn from the training unigram distribution, <eos> and <unk> excluded."""
    counts = torch.bincount(torch.tensor(corpus.train), minlength=corpus.vocab_size).double()  # (vocab,)
    for word in EXCLUDED_START_WORDS:
        if word in corpus.word_to_id:
            counts[corpus.word_to_id[word]] = 0
    distinct = int((counts > 0).sum())
    ids = torch.multinomial(counts, count, replacement=count > distinct,
                            generator=torch.Generator().manual_seed(seed))
    return [corpus.id_to_word[i] for i in ids.tolist()]


def longest_repeat(words: list[str]) -> list[str]:
    """The longest n-gram of `words` that occurs at least twice (the earliest such, on ties)."""
    for n in range(len(words) - 1, 0, -1):
        seen: set[tuple[str, ...]] = set()
        for i in range(len(words) - n + 1):
            gram = tuple(words[i:i + n])
            if gram in seen:
                return list(gram)
            seen.add(gram)
    return []


@torch.no_grad()
def mean_log_probs(model, sequences: torch.Tensor) -> torch.Tensor:
    """(batch, length + 1) start token then generated ones -> (batch,) mean log p of the generated ones."""
    logits, _ = model.lm_forward(sequences[:, :-1], model.initial_state(sequences.size(0)))  # (batch, length, vocab)
    log_probs = logits.log_softmax(dim=-1).gather(-1, sequences[:, 1:].unsqueeze(-1)).squeeze(-1)  # (batch, length)
    # summed time-major, (length, batch) -> (batch,): the sums the samples had before the interface, bit for bit
    return log_probs.t().contiguous().mean(dim=0)


def continue_ids(trained: TrainedModel, prefix: torch.Tensor, length: int, decoding: Decoding) -> torch.Tensor:
    """prefix (batch, prefix_len) token ids -> (batch, length) generated after them by the model, from its
    initial state, as `decoding` says: models.interface.continue_tokens, which continues any model."""
    model, word_to_id = trained.model, trained.corpus.word_to_id
    banned = [word_to_id[UNK]] if decoding.no_unk and UNK in word_to_id else []
    return continue_tokens(model, prefix, model.initial_state(prefix.size(0)), length, decoding.temperature,
                           decoding.top_k, torch.Generator().manual_seed(decoding.seed), banned)


def generate(trained: TrainedModel, starts: list[str], length: int, decoding: Decoding) -> torch.Tensor:
    """(len(starts), length + 1) token ids: each start word's id, then the tokens generated after it."""
    word_to_id = trained.corpus.word_to_id
    missing = [word for word in starts if word not in word_to_id]
    if missing:
        raise DataError(f"{trained.folder}: start word {missing[0]!r} is not in its vocabulary; the analysed runs "
                        f"must be trained on the same data")
    start_ids = torch.tensor([word_to_id[word] for word in starts]).unsqueeze(1)  # (batch,) -> (batch, 1)
    return torch.cat([start_ids, continue_ids(trained, start_ids, length, decoding)], dim=1)  # (batch, length + 1)


def prompt_words(trained: TrainedModel, prompt: str) -> tuple[list[str], list[str]]:
    """The prompt as the model reads it, and the words of it not in its vocabulary (read as <unk>). A word
    is taken as written, else lower-cased (PTB is), else as <unk>."""
    vocabulary = trained.corpus.word_to_id
    words, unknown = [], []
    for word in prompt.split():
        known = word if word in vocabulary else word.lower() if word.lower() in vocabulary else None
        words.append(known or UNK)
        if known is None:
            unknown.append(word)
    if not words:
        raise PromptError("--prompt is empty; valid: one or more words, e.g. --prompt 'the company said'")
    return words, unknown


def continue_prompt(trained: TrainedModel, words: list[str], length: int, decoding: Decoding) -> list[str]:
    """`length` words after `words` (all in the vocabulary), whatever the model: the prompt is its prefix."""
    ids = torch.tensor([trained.corpus.word_to_id[word] for word in words]).unsqueeze(0)  # (prompt,) -> (1, prompt)
    return [trained.corpus.id_to_word[i] for i in continue_ids(trained, ids, length, decoding)[0].tolist()]


@dataclass
class Continuation:
    run: TrainedModel
    prompt: list[str]  # as the model read it
    unknown: list[str]  # prompt words read as <unk>
    words: list[str]  # generated


def continue_run(folder: Path, prompt: str, length: int, decoding: Decoding, data_dir: Path | None = None,
                 environ: Mapping[str, str] | None = None) -> Continuation:
    """`ptblm generate`: best.pt of `folder` continues `prompt` by `length` words (data: see load_trained)."""
    if length < 1:
        raise PromptError(f"--length {length}: valid: a number of words >= 1")
    trained = load_trained(folder, None, data_dir, batch_size=1, environ=environ)
    words, unknown = prompt_words(trained, prompt)
    return Continuation(trained, words, unknown, continue_prompt(trained, words, length, decoding))


def make_samples(trained: TrainedModel, starts: list[str], decoding: Decoding) -> list[Sample]:
    """PER_LENGTH samples per length in LENGTHS, start words taken in order."""
    samples = []
    for group, length in enumerate(LENGTHS):
        group_starts = starts[group * PER_LENGTH:(group + 1) * PER_LENGTH]
        sequences = generate(trained, group_starts, length, decoding)  # (batch, length + 1)
        log_probs = mean_log_probs(trained.model, sequences).tolist()
        for row, start in enumerate(group_starts):
            words = [trained.corpus.id_to_word[i] for i in sequences[row, 1:].tolist()]
            samples.append(Sample(f"{trained.name}-{length}-{row + 1:02d}", trained.name, length, start, words,
                                  len(set(words)) / len(words), longest_repeat(words), log_probs[row]))
    return samples


def statistics_text(sample: Sample, shown_words: int = 6) -> str:
    """'distinct 0.40; longest repeat 3 (of the cat); mean log p -2.31', long repeats shortened."""
    repeat = sample.longest_repeat
    text = " ".join(repeat[:shown_words]) + (" ..." if len(repeat) > shown_words else "")
    return (f"distinct {sample.distinct_ratio:.2f}; longest repeat {len(repeat)}" + (f" ({text})" if repeat else "")
            + f"; mean log p {sample.mean_log_prob:.2f}")


def pick_samples(samples: list[Sample], count: int = PICKED) -> dict[str, list[Sample]]:
    """PICK_RULES applied in order (best, worst, interesting), each from the samples not picked yet."""
    median = statistics.median(s.distinct_ratio for s in samples)
    rules = {"best": (lambda s: s.distinct_ratio >= median, lambda s: -s.mean_log_prob),
             "worst": (lambda s: True, lambda s: (s.distinct_ratio, -len(s.longest_repeat))),
             "interesting": (lambda s: True, lambda s: s.mean_log_prob)}
    picks, taken = {}, set()
    for pick, (eligible, order) in rules.items():
        chosen = sorted((s for s in samples if s.id not in taken and eligible(s)), key=order)[:count]
        picks[pick] = chosen
        taken |= {s.id for s in chosen}
    return picks


def unk_share(samples: list[Sample], decoding: Decoding) -> float | None:
    """The share of <unk> among the generated tokens when it is over a fifth and --no-unk was not given."""
    words = [word for sample in samples for word in sample.words]
    share = words.count(UNK) / len(words)
    return None if decoding.no_unk or share <= 0.2 else share


def sample_item(sample: Sample) -> list[str]:
    return [f"\\item[{latex.escape(sample.id)}] \\textit{{{latex.escape(sample.start)}}} "
            f"{latex.escape(' '.join(sample.words))}",
            f"\\\\ {{\\small ({latex.escape(statistics_text(sample))})}}"]


def appendix(samples: list[Sample], runs: list[TrainedModel], decoding: Decoding) -> str:
    """LaTeX for \\input inside a section: a subsection per model, a subsubsection per length."""
    lines = [
        f"{len(samples)} generated sequences, {PER_LENGTH} of each length per model, "
        f"{latex.escape(decoding.describe())}; each token is predicted from the model's own previous "
        f"predictions, from a zero hidden state. Every model starts from the same start words (in italics), "
        f"drawn with seed {decoding.seed} from the training unigram distribution without "
        f"{latex.escape(EOS)} and {latex.escape(UNK)}. After each sample: the ratio of distinct tokens to "
        f"tokens, the length of the longest n-gram occurring twice (and the n-gram), and the mean "
        f"log-probability of the generated tokens under the model (natural log; higher: more confident). "
        + (f"{100 * share:.0f}\\% of the generated tokens are {latex.escape(UNK)}: \\texttt{{make samples "
           f"ARGS=-{{}}-no-unk}} never picks it." if (share := unk_share(samples, decoding)) else ""), "",
        "\\subsection{Picked samples}",
        f"Chosen automatically from the {len(samples)} below, by these rules: "
        + "; ".join(f"{pick}, {latex.escape(rule)}" for pick, rule in PICK_RULES.items())
        + ". A reader may prefer others: all are listed after these.", ""]
    for pick, chosen in pick_samples(samples).items():
        lines += [f"\\subsubsection{{{pick.capitalize()}}}", "\\begin{description}"]
        lines += [line for sample in chosen for line in sample_item(sample)] + ["\\end{description}", ""]
    for run in runs:
        lines += [f"\\subsection{{{latex.escape(run.name)} samples}}",
                  f"From {latex.escape(run.run_label)}, weights of epoch {run.epoch} "
                  f"(validation perplexity {run.valid_ppl:.2f}).", ""]
        for length in LENGTHS:
            lines += [f"\\subsubsection{{{latex.escape(run.name)}, {length} tokens}}", "\\begin{description}"]
            for sample in (s for s in samples if s.model == run.name and s.length == length):
                lines += sample_item(sample)
            lines += ["\\end{description}", ""]
    return "\n".join(lines)


def write_samples(runs: list[TrainedModel], report_dir: Path, decoding: Decoding = Decoding(),
                  notify=print) -> list[Path]:
    """samples/<model>-len<L>.txt, samples.json and appendix.tex; returns the paths written."""
    out_dir = Path(report_dir) / FOLDER
    starts = start_words(runs[0].corpus, PER_LENGTH * len(LENGTHS), decoding.seed)
    samples = [sample for run in runs for sample in make_samples(run, starts, decoding)]
    written = []
    for run in runs:
        for length in LENGTHS:
            path = out_dir / f"{run.name.lower()}-len{length}.txt"
            write_text(path, "".join(f"{s.id}\t[{s.start}] {' '.join(s.words)}\t{statistics_text(s)}\n"
                                    for s in samples if s.model == run.name and s.length == length))
            written.append(path)
    record = {"decoding": asdict(decoding), "decoding_rule": decoding.describe(),
              "runs": [str(run.folder) for run in runs],
              "pick_rules": PICK_RULES,
              "picks": {pick: [s.id for s in chosen] for pick, chosen in pick_samples(samples).items()},
              "samples": [asdict(sample) for sample in samples]}
    write_text(out_dir / "samples.json", json.dumps(record, indent=2) + "\n")
    write_text(out_dir / "appendix.tex", appendix(samples, runs, decoding))
    if share := unk_share(samples, decoding):
        notify(f"note: {share:.0%} of the generated tokens are {UNK}; `make samples ARGS=--no-unk` never picks it")
    return written + [out_dir / "samples.json", out_dir / "appendix.tex"]
