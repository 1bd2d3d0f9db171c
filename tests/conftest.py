import http.server
import os
import threading
import time
from pathlib import Path

import pytest
import torch

from ptblm import runfolder as rf
from ptblm.config import RunConfig
from ptblm.corpora import PTB
from ptblm.data import write_synthetic_corpus
from runtree import build_tree, write_config, write_curves, write_status

REPO = Path(__file__).resolve().parents[1]
# Real corpus text for tests (never committed): ../shared/data beside the clone in CI, or PTBLM_SHARED_DATA.
SHARED_DATA = Path(os.environ.get("PTBLM_SHARED_DATA") or REPO.parent / "shared" / "data")


def shared_data(name: str) -> Path:
    """SHARED_DATA/<name> (see its README), or the test is skipped, saying why."""
    path = SHARED_DATA / name
    if not path.is_dir():
        pytest.skip(f"real corpus text not available: no {path} (set PTBLM_SHARED_DATA to the shared data folder)")
    return path


@pytest.fixture(scope="session")
def wikitext2_mini_dir() -> Path:
    """A WikiText-2-format corpus of real WikiText-2 text: train = WikiText-2's test split."""
    return shared_data("wikitext-2-mini")


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory) -> Path:
    """A small seeded corpus: enough for a few batches of 8 x 12 per epoch."""
    return write_synthetic_corpus(tmp_path_factory.mktemp("synthetic"), seed=3, vocab_size=60,
                                  tokens=(4000, 1200, 1200))


@pytest.fixture(scope="module")
def tree(tmp_path_factory, synthetic_dir):
    """runtree's trained results tree, built once per test module (tests change only copies of it)."""
    return build_tree(tmp_path_factory.mktemp("tree") / "tree", synthetic_dir)


@pytest.fixture
def copy(tree, tmp_path):
    """A copy of `tree` for one test to change."""
    return tree.copy(tmp_path / "tree")


@pytest.fixture(scope="session")
def study_sized_dir(tmp_path_factory) -> Path:
    """A synthetic corpus whose every split fills one batch of the study's settings (128 x 35), as the
    login-node check requires before a dry run of them."""
    return write_synthetic_corpus(tmp_path_factory.mktemp("study-sized"), seed=4, vocab_size=60,
                                  tokens=(4700, 4700, 4700))


@pytest.fixture(scope="session")
def ptb_mini_dir() -> Path:
    path = os.environ.get("PTB_DIR")
    if not path or not (Path(path) / "ptb.train.txt").is_file():
        pytest.skip("real PTB text not available: set PTB_DIR to a folder with ptb.{train,valid,test}.txt "
                    "(CI sets it to ../shared/data/ptb-mini)")
    return Path(path)


@pytest.fixture
def torch_tf32_flags():
    """Restores the process-wide TF32 flags a test sets (monkeypatch cannot: torch's flag objects hide them)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def queued(experiment: str, state: str = "RUNNING", reason: str = "None"):
    """A job of `experiment` as squeue lists it (launch.slurm.squeue_jobs), for a scheduler view in tests."""
    from ptblm.launch.slurm import QueuedJob, job_name

    return QueuedJob(state, reason, job_name(experiment), "me")


def tiny_config(**changes) -> RunConfig:
    """A setting that trains in well under a second per epoch on the synthetic corpus."""
    values = dict(model="GRU", optimizer="ADAM", initial_lr=0.01, batch_size=8, hidden_size=16, num_layers=2,
                  dp_keep_prob=0.8, seq_len=12, emb_size=12, num_epochs=3, device="cpu")
    values.update(changes)
    if values["model"] == "TRANSFORMER":
        values.setdefault("n_heads", 2)
    return RunConfig.from_dict(values)


PUBLISHED_RNN = dict(model="RNN", optimizer="SGD", initial_lr=1.0, batch_size=128, hidden_size=512, num_layers=2,
                     dp_keep_prob=0.8)  # 3.1 setting 0 of the study (emb 200 and seq 35 are RunConfig's defaults)
PUBLISHED_RNN_VALID = [796.77, 670.16, 578.56]  # its validation ppl at epochs 1-3, from the study's CSV


def write_run(root, experiment, valid, train=None, state=rf.DONE, corpus_fingerprint=PTB.published_fingerprint,
              vocab_size=None, **changes):
    """A run folder written by hand: `valid` (and `train`) ppl per epoch, 10 s per epoch; trained on the
    published PTB files unless `corpus_fingerprint` says otherwise (None: a folder from before fingerprints,
    which knows its corpus by `vocab_size`, when given)."""
    config = RunConfig.from_dict({**PUBLISHED_RNN, "num_epochs": len(valid), **changes})
    folder = root / experiment / config.run_name()
    train = train or [2 * v for v in valid]
    provenance = {"experiment": experiment, "setting_index": 0, "data_dir": "/d", rf.CORPUS_KEY: corpus_fingerprint}
    write_config(folder, config.to_dict(), provenance | ({} if vocab_size is None else {"vocab_size": vocab_size}))
    write_curves(folder, rf.Curves(epochs=[rf.EpochRecord(i + 1, t, v, 10.0, 10.0 * (i + 1), 1.0)
                                              for i, (t, v) in enumerate(zip(train, valid))]))
    write_status(folder, rf.RunStatus(state=state, epochs_done=len(valid), num_epochs=len(valid)))
    return folder


def child_pids(pid: int) -> list[int]:
    """The live processes whose parent is `pid` (Linux's /proc; a zombie is none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                state, parent = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            except OSError:  # it ended meanwhile
                continue
            if int(parent) == pid and state != "Z":
                found.append(int(entry.name))
    return found


def process_gone(pid: int, within: float = 30.0) -> bool:
    """Whether process `pid` has ended (or is a zombie) within `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.2)
    return False


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path):
    """A loopback HTTP server over tmp_path/www, standing in for a corpus's mirrors: (www folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = lambda *a, **k: _QuietFiles(*a, directory=str(root), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def stopped_and_unbroken_curves(config: RunConfig, data_dir: Path, tmp_path: Path) -> tuple[list, list]:
    """(train ppl, valid ppl) per epoch of a run stopped after its first last.pt and resumed, and of the same
    setting trained unbroken."""
    from ptblm.train import train_run

    unbroken, stopped = tmp_path / "unbroken", tmp_path / "stopped"
    train_run(config, data_dir, unbroken, echo=False, interactive=False, environ={})
    status = train_run(config, data_dir, stopped, echo=False, interactive=False,
                       should_stop=lambda: (stopped / rf.LAST_CHECKPOINT).exists(), environ={})
    assert (status.state, status.epochs_done) == (rf.CANCELLED, 1)
    assert train_run(config, data_dir, stopped, echo=False, interactive=False, environ={}).state == rf.DONE
    return [[(e.train_ppl, e.valid_ppl) for e in rf.read_curves(folder).epochs] for folder in (stopped, unbroken)]
