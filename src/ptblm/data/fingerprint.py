"""The corpus fingerprint: what identifies a corpus whatever folder holds it; and the cache of file digests
that spares hashing a large, perhaps read-only, corpus again."""
from __future__ import annotations

import contextlib
import functools
import hashlib
from collections.abc import Iterator
from pathlib import Path

from ..corpora import PTB, SPLITS, CorpusEntry, fingerprint_of
from ..runfolder import atomic_write_json, read_json
from .files import DataError, check_data_dir, split_path


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
