"""A corpus's files: reading, batching, downloading, staging, its fingerprint, and a synthetic stand-in.

What differs between corpora (file names, how lines become tokens, checksums, where to download them)
is the corpus's entry in ptblm.corpora; every function here takes that entry (default: PTB). One module
a concern: files (where each file lies, DataError), reading and batching (the course scaffold's
`ptb_raw_data` and `ptb_iterator`), download, staging (node-local scratch), fingerprint (the corpus's
identity and the digest cache), synthetic. Their names are imported from here.
"""
from ..corpora import EOS, SPLITS, UNK  # their home is ptblm.corpora
from .batching import batch_at, batchify, check_batches_fit, num_batches, ptb_iterator, splits_read
from .download import download_corpus, file_mismatch
from .files import DataError, check_data_dir, split_path, where_to_get
from .fingerprint import corpus_fingerprint, digest_cache, file_digest
from .reading import Corpus, build_vocab, count_tokens, load_corpus, ptb_raw_data, read_words, words_to_ids
from .staging import STAGED_FOLDER, slurm_tmpdir_data, stage_data
from .synthetic import is_synthetic, write_synthetic_corpus

__all__ = [
    "EOS", "SPLITS", "UNK",
    "DataError", "check_data_dir", "split_path", "where_to_get",
    "Corpus", "build_vocab", "count_tokens", "load_corpus", "ptb_raw_data", "read_words", "words_to_ids",
    "batch_at", "batchify", "check_batches_fit", "num_batches", "ptb_iterator", "splits_read",
    "download_corpus", "file_mismatch",
    "STAGED_FOLDER", "slurm_tmpdir_data", "stage_data",
    "corpus_fingerprint", "digest_cache", "file_digest",
    "is_synthetic", "write_synthetic_corpus",
]
