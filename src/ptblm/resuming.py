"""Whether a run folder may be resumed by a setting on a corpus: not damaged, the same setting, the same corpus."""
from __future__ import annotations

from pathlib import Path

from . import runfolder as rf
from .config import RunConfig
from .errors import UserError


class RunFolderMismatch(UserError, RuntimeError):
    """The run folder holds another setting: resuming would mix two experiments."""


def check_same_setting(stored: dict, config: RunConfig, out_dir: Path, flag: str = "--out") -> None:
    """A run folder resumes only the setting it holds; execution options (EXECUTION_OPTIONS) may change.
    `flag`: the option that chose the folder, named as the way to choose another."""
    previous = RunConfig.from_dict(stored, where=str(out_dir / rf.CONFIG_FILE)).identity()
    changes = [f"{key} {previous[key]!r} -> {value!r}" for key, value in config.identity().items()
               if previous[key] != value]
    if changes:
        raise RunFolderMismatch(f"{out_dir} holds another setting ({'; '.join(changes)}); pass --force to "
                                f"start over there or choose another {flag}")


def check_same_corpus(stored: dict, corpus: str, data_dir: Path, out_dir: Path, flag: str = "--out") -> str | None:
    """A run folder resumes only on the corpus it recorded; returns that fingerprint (None: not recorded yet)."""
    recorded = stored.get(rf.CORPUS_KEY)
    if recorded is not None and recorded != corpus:
        raise RunFolderMismatch(f"{out_dir} was trained on another corpus (fingerprint {recorded}, data "
                                f"{stored.get('data_dir')}), not on {data_dir} (fingerprint {corpus}); pass --force "
                                f"to start over there on this corpus or choose another {flag}")
    return recorded


def check_resumable(record: rf.RunRecord, config: RunConfig, corpus: str, data_dir: Path,
                    flag: str = "--out") -> str | None:
    """The folder may be resumed by `config` on `corpus`: not damaged, same setting, same corpus. Returns the
    corpus it recorded (None: not recorded yet)."""
    damage = record.damage or rf.RunFolder(record.folder).unresumable(record)
    if damage:
        raise rf.Damaged.of(damage)
    if not record.config:
        return None
    check_same_setting(record.config, config, record.folder, flag)
    return check_same_corpus(record.provenance, corpus, data_dir, record.folder, flag)
