"""A corpus's files: reading, batching, downloading, staging, its fingerprint, and a synthetic stand-in.

What differs between corpora (file names, how lines become tokens, checksums, where to download them)
is the corpus's entry in ptblm.corpora; every function here takes that entry (default: PTB).
Reading and batching keep the course scaffold's semantics (`ptb_raw_data`, `ptb_iterator`), except
that words missing from the training vocabulary map to `<unk>` and are counted instead of being
silently dropped (real PTB has none; smaller corpora do).
"""
from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import io
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .corpora import (DEFAULT_CORPUS, EOS, PTB, SPLITS, UNK, ArchiveSource, CorpusEntry, CorpusFile, FileSource,
                      fetch_command, fingerprint_of)
from .errors import UserError
from .runfolder import atomic_write_bytes, atomic_write_json, read_json

__all__ = ["EOS", "UNK", "SPLITS"]  # re-exported: their home is ptblm.corpora

log = logging.getLogger(__name__)


class DataError(UserError, RuntimeError):
    """Missing, unreadable or corrupt data; the message says which file and what to do."""


# ----------------------------------------------------------------------------- reading

def split_path(data_dir: Path, split: str, corpus: CorpusEntry = PTB) -> Path:
    return Path(data_dir) / corpus.file_name(split)


def where_to_get(corpus: CorpusEntry) -> str:
    """The ways to provide a corpus's files, for error messages."""
    return (f"run `{fetch_command(corpus)}` (downloads {corpus.title} into data/{corpus.name}), or point --data or "
            f"{corpus.env_var} at a folder holding {', '.join(corpus.file_names[:-1])} and {corpus.file_names[-1]}")


def check_data_dir(data_dir: Path, corpus: CorpusEntry = PTB) -> Path:
    """Fail early, naming the first missing file and the ways to provide it."""
    data_dir = Path(data_dir)
    for split in SPLITS:
        path = split_path(data_dir, split, corpus)
        if not path.is_file():
            raise DataError(f"{path} is missing: {where_to_get(corpus)} (`ptblm synthetic DIR"
                            f"{'' if corpus.name == DEFAULT_CORPUS else ' --corpus ' + corpus.name}` writes a small "
                            f"offline stand-in)")
    return data_dir


def read_words(path: Path, corpus: CorpusEntry = PTB) -> list[str]:
    """The file's tokens as the corpus reads them (`<eos>` included); DataError for a file that is not
    UTF-8 text or holds no word."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text (byte {error.start}): corrupt, or not a {corpus.title} file"
                        ) from error
    words = corpus.tokenize(text)
    if not any(word != EOS for word in words):
        raise DataError(f"{path} is empty: expected {corpus.title} text, one sentence or paragraph per line")
    return words


def build_vocab(words: Sequence[str]) -> tuple[dict[str, int], list[str]]:
    """Vocabulary sorted by (-count, word), as the scaffold does."""
    counts = collections.Counter(words)
    id_to_word = [word for word, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    return {word: i for i, word in enumerate(id_to_word)}, id_to_word


def words_to_ids(words: Sequence[str], word_to_id: dict[str, int]) -> tuple[list[int], int]:
    """Ids of the words, unknown words as `<unk>` when the vocabulary has it (else dropped); also their count."""
    unk = word_to_id.get(UNK)
    ids, unknown = [], 0
    for word in words:
        index = word_to_id.get(word)
        if index is None:
            unknown += 1
            if unk is None:
                continue
            index = unk
        ids.append(index)
    return ids, unknown


@dataclass
class Corpus:
    train: list[int]
    valid: list[int]
    test: list[int]
    word_to_id: dict[str, int]
    id_to_word: list[str]
    unknown_counts: dict[str, int]  # per split: words outside the training vocabulary

    @property
    def vocab_size(self) -> int:
        return len(self.id_to_word)

    def describe(self) -> str:
        unknown = ", ".join(f"{split} {count}" for split, count in self.unknown_counts.items() if count)
        return (f"vocabulary {self.vocab_size}; tokens train {len(self.train)}, valid {len(self.valid)}, "
                f"test {len(self.test)}" + (f"; out-of-vocabulary words mapped to {UNK}: {unknown}"
                                            if unknown else ""))


def load_corpus(data_dir: Path, corpus: CorpusEntry = PTB) -> Corpus:
    """The three splits as ids of the training split's vocabulary; a corpus whose text has no `<unk>` gets
    one (last), so that words of valid and test outside that vocabulary are counted as it, not dropped."""
    data_dir = check_data_dir(data_dir, corpus)
    train_words = read_words(split_path(data_dir, "train", corpus), corpus)
    word_to_id, id_to_word = build_vocab(train_words)
    if not corpus.has_unk and UNK not in word_to_id:
        word_to_id[UNK] = len(id_to_word)
        id_to_word.append(UNK)
    ids, unknown = {}, {}
    for split in SPLITS:
        words = train_words if split == "train" else read_words(split_path(data_dir, split, corpus), corpus)
        ids[split], unknown[split] = words_to_ids(words, word_to_id)
    return Corpus(ids["train"], ids["valid"], ids["test"], word_to_id, id_to_word, unknown)


def ptb_raw_data(data_path: Path, corpus: CorpusEntry = PTB):
    """The scaffold's loader: (train_ids, valid_ids, test_ids, word_to_id, id_to_word)."""
    loaded = load_corpus(data_path, corpus)
    if any(loaded.unknown_counts.values()):
        log.warning("%s: %s", data_path, loaded.describe())
    return loaded.train, loaded.valid, loaded.test, loaded.word_to_id, loaded.id_to_word


# ----------------------------------------------------------------------------- batching

def batchify(raw_data: Sequence[int], batch_size: int) -> np.ndarray:
    """Cut the token stream into `batch_size` contiguous rows: (batch_size, len // batch_size)."""
    data = np.asarray(raw_data, dtype=np.int64)
    batch_len = len(data) // batch_size
    return data[: batch_size * batch_len].reshape(batch_size, batch_len)  # (batch, batch_len)


def num_batches(num_tokens: int, batch_size: int, num_steps: int) -> int:
    """Batches per epoch, ((len // batch_size) - 1) // num_steps; at least one or an error."""
    count = ((num_tokens // batch_size) - 1) // num_steps
    if count < 1:
        raise ValueError(f"{num_tokens} tokens cannot fill one batch of batch_size {batch_size} x "
                         f"num_steps {num_steps} (needs at least {batch_size * (num_steps + 1)} tokens): "
                         f"decrease batch_size or seq_len, or use more data")
    return count


def splits_read(evaluate: bool) -> tuple[str, ...]:
    """The splits a training run reads: train and valid every epoch, test only to evaluate the best weights."""
    return SPLITS if evaluate else ("train", "valid")


def count_tokens(data_dir: Path, corpus: CorpusEntry = PTB) -> dict[str, int]:
    """Tokens per split as training reads them (`<eos>` included); DataError naming a file that is not UTF-8
    text or holds no word."""
    return {split: len(read_words(split_path(data_dir, split, corpus), corpus)) for split in SPLITS}


def check_batches_fit(token_counts: Mapping[str, int], paths: Mapping[str, Path], batch_size: int, seq_len: int,
                      evaluate: bool, where: str = "") -> None:
    """DataError unless every split the run reads fills one batch of batch_size x seq_len: it names the split,
    its file, the numbers and the batch sizes and sequence lengths that would fit."""
    for split in splits_read(evaluate):
        tokens = token_counts[split]
        if tokens >= batch_size * (seq_len + 1):
            continue
        largest_batch, longest_seq = tokens // (seq_len + 1), tokens // batch_size - 1
        valid = " or ".join([*([f"batch_size at most {largest_batch} (at seq_len {seq_len})"]
                               if largest_batch >= 1 else []),
                             *([f"seq_len at most {longest_seq} (at batch_size {batch_size})"]
                               if longest_seq >= 1 else [])]) or "more data"
        raise DataError(f"{where}the {split} split, {paths[split]}, has {tokens} tokens: they cannot fill one "
                        f"batch of batch_size {batch_size} x seq_len {seq_len} (needs at least "
                        f"{batch_size * (seq_len + 1)} tokens); valid: {valid}, or a larger {split} split")


def batch_at(data, index: int, num_steps: int):
    """Batch `index` of batchified data (numpy or torch, (batch, batch_len)): x and y = x shifted by one."""
    start = index * num_steps
    return data[:, start:start + num_steps], data[:, start + 1:start + num_steps + 1]  # (batch, num_steps) each


def ptb_iterator(raw_data: Sequence[int], batch_size: int, num_steps: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield (x, y) of shape (batch_size, num_steps); y is x shifted by one token."""
    data = batchify(raw_data, batch_size)
    for i in range(num_batches(len(raw_data), batch_size, num_steps)):
        yield batch_at(data, i, num_steps)


# ----------------------------------------------------------------------------- downloading and staging

def file_mismatch(data: bytes, expected: CorpusFile) -> str | None:
    """Why `data` is not the published file `expected` (which of its sums differs), or None."""
    for algorithm, want in (("md5", expected.md5), ("sha256", expected.sha256)):
        if want is not None and (got := hashlib.new(algorithm, data).hexdigest()) != want:
            return f"{algorithm.upper()} {got} does not match the expected {want}"
    return None


def download_corpus(corpus: CorpusEntry, dest: Path, timeout: float = 10.0,
                    sources: Sequence[FileSource | ArchiveSource] | None = None) -> list[Path]:
    """Fetch the corpus's three files into `dest`, each verified by its MD5 and SHA-256 (corpora.CorpusFile);
    files already valid are kept. Each file comes from the first of `sources` (default: the entry's) that
    gives the published bytes; an archive is fetched once. Nothing unverified is ever written."""
    dest = Path(dest)
    archives: dict[str, tarfile.TarFile | zipfile.ZipFile | None] = {}
    for split in SPLITS:
        expected = corpus.files[split]
        target = dest / expected.name
        if target.is_file() and file_mismatch(target.read_bytes(), expected) is None:
            continue
        errors: list[str] = []
        for source in corpus.sources if sources is None else sources:
            data, where = _from_source(source, split, expected.name, timeout, archives, errors)
            if data is None:
                continue
            mismatch = file_mismatch(data, expected)
            if mismatch is None:
                atomic_write_bytes(target, data)
                break
            errors.append(f"{where}: {mismatch} (corrupt, or not {corpus.title})")
        else:
            raise DataError(f"could not download {expected.name} ({'; '.join(errors)}); nothing unverified was "
                            f"written. Offline? Copy {', '.join(corpus.file_names)} into a folder and set "
                            f"{corpus.env_var}=/that/folder (or pass --data), or fetch them on a machine with "
                            f"network access.")
    return [split_path(dest, split, corpus) for split in SPLITS]


def _from_source(source: FileSource | ArchiveSource, split: str, name: str, timeout: float,
                 archives: dict, errors: list[str]) -> tuple[bytes | None, str]:
    """One file's bytes from one source (None, with the reason in `errors`), and where they came from."""
    if isinstance(source, FileSource):
        url = source.url.format(name=name, split=split)
        return _fetch(url, timeout, errors), url
    if source.url not in archives:
        archives[source.url] = _open_archive(source, _fetch(source.url, timeout, errors), errors)
    archive, member = archives[source.url], source.member.format(name=name, split=split)
    where = f"{source.url}, {member}"
    if archive is None:
        return None, where
    try:
        if isinstance(archive, zipfile.ZipFile):
            return archive.read(member), where
        extracted = archive.extractfile(member)
    except (KeyError, tarfile.TarError, zipfile.BadZipFile) as error:
        errors.append(f"{source.url}: no readable {member} ({error})")
        return None, where
    return (extracted.read() if extracted else None), where


def _open_archive(source: ArchiveSource, blob: bytes | None, errors: list[str]):
    """The archive (.zip by its url, else .tgz), or None with the reason: not fetched, another archive than
    the one published (its MD5), or unreadable."""
    if blob is None:
        return None
    if source.md5 is not None and (actual := hashlib.md5(blob).hexdigest()) != source.md5:
        errors.append(f"{source.url}: MD5 {actual} does not match the published archive's {source.md5}")
        return None
    try:
        if source.url.endswith(".zip"):
            return zipfile.ZipFile(io.BytesIO(blob))
        return tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz")
    except (tarfile.TarError, zipfile.BadZipFile) as error:
        errors.append(f"{source.url}: not a readable archive ({error})")
        return None


def _fetch(url: str, timeout: float, errors: list[str]) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except urllib.error.HTTPError as error:
        errors.append(f"{url}: HTTP {error.code} ({error.reason})")
    except (urllib.error.URLError, OSError, ValueError) as error:
        errors.append(f"{url}: {getattr(error, 'reason', error)}")
    return None


STAGED_FOLDER = "ptblm-data"  # stage_data's copy, under the scratch folder


def stage_data(data_dir: Path, scratch_dir: Path, corpus: CorpusEntry = PTB) -> Path:
    """Copy the corpus to node-local scratch (e.g. $SLURM_TMPDIR) once; return the staged folder (one for every
    corpus: their file names differ). A copy left there earlier is reused only when its content hashes equal
    the source's."""
    data_dir = check_data_dir(data_dir, corpus)
    staged = Path(scratch_dir) / STAGED_FOLDER
    for split in SPLITS:
        source, target = split_path(data_dir, split, corpus), split_path(staged, split, corpus)
        if (not target.is_file() or target.stat().st_size != source.stat().st_size
                or file_digest(target) != file_digest(source)):
            staged.mkdir(parents=True, exist_ok=True)
            # a private temporary name: runs packed on one node stage into the same $SLURM_TMPDIR at once
            fd, tmp = tempfile.mkstemp(dir=staged, prefix=f".{target.name}.", suffix=".partial")
            os.close(fd)
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
    return staged


def slurm_tmpdir_data(scratch_dir: str | None, corpus: CorpusEntry = PTB) -> Path:
    """run_exp.py's `--data SLURM_TMPDIR`: the corpus copied into $SLURM_TMPDIR (the scaffold's place for it),
    else the copy stage_data made there."""
    if not scratch_dir:
        raise DataError("--data SLURM_TMPDIR: $SLURM_TMPDIR is not set (Slurm sets it inside a job); "
                        f"pass the {corpus.title} folder instead")
    for candidate in (Path(scratch_dir), Path(scratch_dir) / STAGED_FOLDER):
        if split_path(candidate, "train", corpus).is_file():
            return check_data_dir(candidate, corpus)
    raise DataError(f"--data SLURM_TMPDIR: neither {scratch_dir} nor {Path(scratch_dir) / STAGED_FOLDER} holds "
                    f"{corpus.file_name('train')}; copy {corpus.title} there first, or pass its folder to --data")


# ----------------------------------------------------------------------------- the corpus fingerprint

@functools.lru_cache(maxsize=64)
def _sha256_of(path: str, size: int, mtime_ns: int) -> str:
    """Keyed by size and mtime as well: a file rewritten since is hashed again."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_digest(path: Path, cache: dict | None = None) -> str:
    """SHA-256 of a file, hashed once per process, or read from `cache` (path -> size, mtime_ns, sha256)
    where its size and mtime still match; a fresh digest is put into `cache`."""
    path = Path(path).resolve()
    stat = path.stat()
    entry = (cache or {}).get(str(path))
    if isinstance(entry, dict) and entry.get("size") == stat.st_size and entry.get("mtime_ns") == stat.st_mtime_ns:
        return str(entry["sha256"])
    digest = _sha256_of(str(path), stat.st_size, stat.st_mtime_ns)
    if cache is not None:
        cache[str(path)] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
    return digest


def corpus_fingerprint(data_dir: Path, cache_file: Path | None = None, corpus: CorpusEntry = PTB) -> str:
    """What identifies a corpus whatever folder holds it: 16 hex digits of a SHA-256 over its three files'
    (corpora.fingerprint_of). It equals the entry's published_fingerprint exactly when the files are the
    published ones, which is what a run folder's record of it says (corpora.CorpusEntry.is_published).

    The data folder may be read-only (a shared copy), so digests are cached in `cache_file` (any writable
    folder the caller chooses, e.g. beside the run folders; written only where that folder exists), keyed
    by path, size and mtime; a cache that cannot be read or written is only a cache.
    """
    data_dir = check_data_dir(data_dir, corpus)
    digests = {}
    with digest_cache(cache_file) as cache:
        for split in SPLITS:
            path = split_path(data_dir, split, corpus)
            try:
                digests[split] = file_digest(path, cache)
            except OSError as error:
                raise DataError(f"{path}: cannot read it ({error.strerror}); make it readable, or point --data or "
                                f"{corpus.env_var} at a readable copy") from None
    return fingerprint_of(digests)


@contextlib.contextmanager
def digest_cache(cache_file: Path | None) -> Iterator[dict]:
    """file_digest's cache, read from `cache_file` and written back when it grew (only where its folder exists);
    a cache that cannot be read or written is only a cache (the container image's digest uses it too)."""
    cache: dict = {}
    if cache_file is not None and Path(cache_file).is_file():
        try:
            loaded = read_json(cache_file)
            cache = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            pass
    before = dict(cache)
    yield cache
    if cache_file is not None and cache != before and Path(cache_file).parent.is_dir():
        with contextlib.suppress(OSError):  # a read-only results folder: hashing again next time is all it costs
            atomic_write_json(cache_file, cache)


# ----------------------------------------------------------------------------- synthetic corpus

def write_synthetic_corpus(dest: Path, seed: int = 0, vocab_size: int = 500,
                           tokens: tuple[int, int, int] = (60_000, 6_000, 6_000), corpus: CorpusEntry = PTB) -> Path:
    """A seeded corpus with learnable structure in `corpus`'s file names (PTB's format), for tests and the
    offline demo.

    Words follow a first-order Markov chain: each word has a handful of likely successors drawn
    from a Zipf-like distribution, so a language model's perplexity falls well below vocab_size.
    """
    rng = np.random.default_rng(seed)
    words = ["<unk>", "N"] + [f"w{i}" for i in range(vocab_size - 2)]
    zipf = 1.0 / np.arange(1, vocab_size + 1)
    zipf /= zipf.sum()
    successors = rng.choice(vocab_size, size=(vocab_size, 4), p=zipf)  # likely next words
    dest = Path(dest)
    for split, count in zip(SPLITS, tokens):
        lines, line, word = [], [], int(rng.integers(vocab_size))
        for _ in range(count):
            explore = rng.random() < 0.15
            word = int(rng.choice(vocab_size, p=zipf)) if explore else int(rng.choice(successors[word]))
            line.append(words[word])
            if len(line) >= 4 and rng.random() < 0.08:
                lines.append(" " + " ".join(line) + " ")
                line = []
        lines.append(" " + " ".join(line) + " ")
        atomic_write_bytes(split_path(dest, split, corpus), ("\n".join(lines) + "\n").encode())
    return dest
