"""Downloading a corpus's three files, each verified against its published MD5 and SHA-256 sums."""
from __future__ import annotations

import hashlib
import io
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Sequence
from pathlib import Path

from ..corpora import SPLITS, ArchiveSource, CorpusEntry, CorpusFile, FileSource
from ..runfolder import atomic_write_bytes
from .files import DataError, split_path


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
