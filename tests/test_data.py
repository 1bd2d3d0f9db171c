import dataclasses
import hashlib
import os
import re
from pathlib import Path

import numpy as np
import pytest

from ptblm.corpora import PTB, FileSource, ArchiveSource
from ptblm.data import (DataError, build_vocab, corpus_fingerprint, download_corpus, load_corpus, num_batches,
                        ptb_iterator, ptb_raw_data, read_words, stage_data, write_synthetic_corpus)

PTB_NAMES = PTB.file_names


def with_contents(corpus, contents: dict[str, bytes]):
    """The corpus entry with these bytes as its published files (their MD5, SHA-256 and size)."""
    files = {split: dataclasses.replace(file, sha256=hashlib.sha256(contents[file.name]).hexdigest(),
                                        md5=hashlib.md5(contents[file.name]).hexdigest(),
                                        size=len(contents[file.name]))
             for split, file in corpus.files.items()}
    return dataclasses.replace(corpus, files=files)


def write_corpus(folder: Path, train: str, valid: str, test: str) -> Path:
    for split, text in (("train", train), ("valid", valid), ("test", test)):
        (folder / f"ptb.{split}.txt").write_text(text)
    return folder


def test_words_of_each_line_then_eos(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text(" the cat \n sat on the mat \n")
    assert read_words(path) == ["the", "cat", "<eos>", "sat", "on", "the", "mat", "<eos>"]


def test_vocabulary_sorted_by_count_then_word():
    word_to_id, id_to_word = build_vocab(["b", "a", "c", "a", "b", "a", "<eos>", "<eos>", "<eos>"])
    assert id_to_word == ["<eos>", "a", "b", "c"]  # <eos> 3, a 3 (ties by word), b 2, c 1
    assert word_to_id == {"<eos>": 0, "a": 1, "b": 2, "c": 3}


def test_unknown_words_map_to_unk_and_are_counted(tmp_path, caplog):
    write_corpus(tmp_path, " a b <unk> a \n", " a zebra b \n", " yak yak \n")
    corpus = load_corpus(tmp_path)
    unk = corpus.word_to_id["<unk>"]
    assert corpus.valid == [corpus.word_to_id["a"], unk, corpus.word_to_id["b"], corpus.word_to_id["<eos>"]]
    assert corpus.unknown_counts == {"train": 0, "valid": 1, "test": 2}
    train, valid, test, word_to_id, id_to_word = ptb_raw_data(tmp_path)
    assert all(isinstance(i, int) for i in train + valid + test)
    assert [id_to_word[i] for i in test] == ["<unk>", "<unk>", "<eos>"]
    assert "out-of-vocabulary words mapped to <unk>: valid 1, test 2" in caplog.text


def test_unknown_words_dropped_and_counted_without_unk_in_vocabulary(tmp_path):
    write_corpus(tmp_path, " a b \n", " a zebra \n", " a \n")
    corpus = load_corpus(tmp_path)
    assert [corpus.id_to_word[i] for i in corpus.valid] == ["a", "<eos>"]
    assert corpus.unknown_counts["valid"] == 1


def test_iterator_shapes_count_and_shift():
    data = list(range(1000))
    batches = list(ptb_iterator(data, batch_size=4, num_steps=7))
    assert len(batches) == ((1000 // 4) - 1) // 7 == num_batches(1000, 4, 7) == 35
    rows = np.arange(1000).reshape(4, 250)  # contiguous rows
    for i, (x, y) in enumerate(batches):
        assert x.shape == y.shape == (4, 7)
        np.testing.assert_array_equal(x, rows[:, i * 7:(i + 1) * 7])
        np.testing.assert_array_equal(y, x + 1)


def test_too_little_data_is_a_clear_error():
    with pytest.raises(ValueError, match="10 tokens cannot fill one batch of batch_size 4 x num_steps 3"):
        list(ptb_iterator(list(range(10)), batch_size=4, num_steps=3))


def test_real_ptb_mini_matches_its_documented_size(ptb_mini_dir):
    corpus = load_corpus(ptb_mini_dir)
    assert len(corpus.train) == 82430 and corpus.vocab_size == 6049
    assert corpus.id_to_word[:3] == ["<unk>", "the", "<eos>"]
    assert 0.04 < corpus.unknown_counts["valid"] / len(corpus.valid) < 0.06  # documented: about 5%


def test_missing_data_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(DataError, match=r"ptb.train.txt is missing: run `make data`.*PTB_DIR"):
        load_corpus(tmp_path)


@pytest.mark.parametrize("kind, says", [
    ("folder", "is a folder, not a text file"), ("fifo", "is a named pipe (FIFO), not a text file"),
    ("dangling link", "is a link to nowhere/ptb.valid.txt, which does not exist"),
])
def test_a_split_that_is_no_file_says_what_is_there_not_missing(tmp_path, kind, says):
    write_corpus(tmp_path, " a b \n", " a \n", " a \n")
    valid = tmp_path / "ptb.valid.txt"
    valid.unlink()
    if kind == "folder":
        valid.mkdir()
    elif kind == "fifo":
        os.mkfifo(valid)
    else:
        valid.symlink_to("nowhere/ptb.valid.txt")
    with pytest.raises(DataError) as error:
        load_corpus(tmp_path)  # and never blocks reading a FIFO
    assert str(error.value).startswith(f"{valid} {says}: run `make data`")


def test_corrupt_data_names_the_file(tmp_path):
    write_corpus(tmp_path, " a b \n", " a \n", " a \n")
    (tmp_path / "ptb.valid.txt").write_bytes(b"\x00\xff\xfe binary")
    with pytest.raises(DataError, match=r"ptb.valid.txt is not UTF-8 text"):
        load_corpus(tmp_path)
    (tmp_path / "ptb.valid.txt").write_text("")
    with pytest.raises(DataError, match=r"ptb.valid.txt is empty"):
        load_corpus(tmp_path)


def test_synthetic_corpus_is_seeded_and_ptb_shaped(tmp_path):
    a = write_synthetic_corpus(tmp_path / "a", seed=5, vocab_size=50, tokens=(2000, 300, 300))
    b = write_synthetic_corpus(tmp_path / "b", seed=5, vocab_size=50, tokens=(2000, 300, 300))
    assert (a / "ptb.train.txt").read_text() == (b / "ptb.train.txt").read_text()
    corpus = load_corpus(a)
    assert 2000 <= len(corpus.train) <= 2000 * 1.2  # words plus <eos> per line
    assert corpus.vocab_size <= 51


def test_stage_data_copies_once(tmp_path):
    (tmp_path / "src").mkdir()
    source = write_corpus(tmp_path / "src", " a b \n", " a \n", " b \n")
    staged = stage_data(source, tmp_path / "scratch")
    assert (staged / "ptb.valid.txt").read_text() == " a \n"
    mtime = (staged / "ptb.train.txt").stat().st_mtime_ns
    assert stage_data(source, tmp_path / "scratch") == staged
    assert (staged / "ptb.train.txt").stat().st_mtime_ns == mtime


def test_stage_data_keeps_apart_corpora_whose_files_share_names(tmp_path):
    """Runs packed on one node stage into one $SLURM_TMPDIR: ptb-mini and PTB, or WikiText-2 and -103, have the
    same file names, and each run must read its own text (the copies were one folder, the last one won)."""
    import dataclasses

    from ptblm.data import slurm_tmpdir_data

    (tmp_path / "one").mkdir()
    (tmp_path / "other").mkdir()
    one, other = (write_corpus(tmp_path / name, text, " a \n", " b \n") for name, text in
                  (("one", " a b \n"), ("other", " b b \n")))
    renamed = dataclasses.replace(PTB, name="ptb-renamed")  # another entry whose files have PTB's names
    staged = [stage_data(one, tmp_path / "scratch"), stage_data(other, tmp_path / "scratch"),
              stage_data(one, tmp_path / "scratch", renamed)]
    assert len(set(staged)) == 3
    assert [(folder / "ptb.train.txt").read_text() for folder in staged] == [" a b \n", " b b \n", " a b \n"]
    assert staged[0].name == f"ptb-{corpus_fingerprint(one)}"
    assert slurm_tmpdir_data(str(tmp_path / "scratch"), renamed) == staged[2]  # the one copy of that corpus
    with pytest.raises(DataError, match=r"2 staged copies of Penn Treebank with different contents .*ptb-\w+, "
                                        r"ptb-\w+\); pass the one meant to --data"):
        slurm_tmpdir_data(str(tmp_path / "scratch"), PTB)


def test_download_checks_md5_and_names_the_file(mirror, tmp_path):
    root, url = mirror
    for name in PTB_NAMES:
        (root / name).write_text("not ptb\n")
    with pytest.raises(DataError, match=r"could not download ptb.train.txt \(http://\S+/ptb.train.txt: MD5 \w+ does "
                                        r"not match the expected f26c4b92.*none.tgz: .*nothing unverified was written"):
        download_corpus(PTB, tmp_path / "dest", sources=(FileSource(url + "/{name}"),
                                                         ArchiveSource(url + "/none.tgz", "{name}")))
    assert not (tmp_path / "dest" / "ptb.train.txt").exists()  # nothing half-written


def test_download_skips_valid_files_and_fetches_missing_ones(mirror, tmp_path):
    root, url = mirror
    dest = tmp_path / "dest"
    dest.mkdir()
    contents = {name: f"content of {name}\n".encode() for name in PTB_NAMES}
    corpus = with_contents(PTB, contents)
    (dest / "ptb.train.txt").write_bytes(contents["ptb.train.txt"])  # already there and valid
    for name in ("ptb.valid.txt", "ptb.test.txt"):
        (root / name).write_bytes(contents[name])
    paths = download_corpus(corpus, dest, sources=(FileSource(url + "/{name}"),))
    assert [p.read_bytes() for p in paths] == list(contents.values())


def test_download_offline_fails_fast_with_the_ptb_dir_hint(tmp_path):
    closed = "http://127.0.0.1:9/{name}"  # the discard port: connection refused at once
    with pytest.raises(DataError, match=r"could not download ptb.train.txt.*PTB_DIR"):
        download_corpus(PTB, tmp_path, timeout=2, sources=(FileSource(closed),
                                                           ArchiveSource("http://127.0.0.1:9/x.tgz", "{name}")))


def test_stage_data_replaces_a_stale_copy_of_the_same_size(tmp_path):
    (tmp_path / "src").mkdir()
    source = write_corpus(tmp_path / "src", " a b \n", " a \n", " b \n")
    staged = stage_data(source, tmp_path / "scratch")
    (staged / "ptb.valid.txt").write_text(" b \n")  # another corpus's file, byte for byte as long
    assert (stage_data(source, tmp_path / "scratch") / "ptb.valid.txt").read_text() == " a \n"


def test_a_split_that_cannot_fill_one_batch_is_named_with_what_would_fit():
    from ptblm.data import check_batches_fit

    paths = {split: Path(f"/d/ptb.{split}.txt") for split in ("train", "valid", "test")}
    counts = {"train": 100, "valid": 50, "test": 5}
    check_batches_fit({**counts, "valid": 52}, paths, 4, 12, evaluate=False)  # 4 x 13 = 52: one batch exactly
    with pytest.raises(DataError, match=re.escape(
            "the valid split, /d/ptb.valid.txt, has 50 tokens: they cannot fill one batch of batch_size 4 x seq_len 12 "
            "(needs at least 52 tokens); valid: batch_size at most 3 (at seq_len 12) or seq_len at most 11 (at "
            "batch_size 4), or a larger valid split")):
        check_batches_fit(counts, paths, 4, 12, evaluate=False)
    with pytest.raises(DataError, match="the test split, /d/ptb.test.txt, has 5 tokens"):  # read only to evaluate
        check_batches_fit({**counts, "valid": 52}, paths, 4, 12, evaluate=True)


def test_only_the_synthetic_vocabulary_is_called_synthetic(synthetic_dir, ptb_mini_dir):
    from ptblm.data import is_synthetic

    assert is_synthetic(load_corpus(synthetic_dir).id_to_word)
    assert not is_synthetic(load_corpus(ptb_mini_dir).id_to_word)
    assert not is_synthetic(["<unk>", "N", "<eos>", "w1", "wall"])
