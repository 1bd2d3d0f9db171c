"""Checked on the login node before anything is queued: the data every task will read, that each setting's
batches fit in it, that each setting's model can be built in the memory it will get, and that a setting that
needs a GPU gets one."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..clusters import ClusterProfile
from ..config import ConfigError
from ..corpora import SPLITS, CorpusEntry
from ..data import (DataError, check_batches_fit, check_data_dir, count_tokens, file_mismatch, split_path,
                    where_to_get)
from ..jobs import Setting
from .cost import model_parameters, profile_gpus, training_bytes

NOTHING_SUBMITTED = "; nothing was submitted"


def check_data_for_submission(data_dir: Path, corpus: CorpusEntry, settings: Sequence[Setting] = ()) -> Path:
    """Every split present, readable, UTF-8 text and not empty; a file the size of the published one must
    have its sums (a copy cut short or altered in place); and every setting's batch and sequence length
    fill one batch of each split it reads. DataError names the file (and the setting) and what to do."""
    try:
        data_dir = check_data_dir(data_dir, corpus)
        for split in SPLITS:
            path = split_path(data_dir, split, corpus)
            try:
                with open(path, "rb") as handle:
                    empty = not handle.read(1)
            except OSError as error:
                raise DataError(f"{path} is not readable ({error.strerror}): fix its permissions or point --data or "
                                f"{corpus.env_var} at a readable copy") from None
            if empty:
                raise DataError(f"{path} is empty: {where_to_get(corpus)}")
            published = corpus.files[split]
            if published.size is not None and path.stat().st_size == published.size:
                mismatch = file_mismatch(path.read_bytes(), published)
                if mismatch:
                    raise DataError(f"{path} has the size of {corpus.title}'s {published.name} but its {mismatch}: "
                                    f"a corrupt copy; run `ptblm data --corpus {corpus.name}` to fetch it again")
        counts = count_tokens(data_dir, corpus)  # each file read as training reads it: UTF-8, its tokens
        paths = {split: split_path(data_dir, split, corpus) for split in SPLITS}
        for setting in settings:
            config = setting.config
            check_batches_fit(counts, paths, config.batch_size, config.seq_len, config.evaluate,
                              where=f"setting {setting.index} ({setting.run_name}): ")
    except DataError as error:
        raise DataError(f"{error}{NOTHING_SUBMITTED}") from None
    return data_dir


MAX_PARAMETERS = 10**9  # 4 GB of fp32 weights: far beyond any model of this course (3.4's largest: 91 million)
SIZE_KEYS = ("hidden_size", "emb_size", "num_layers")


def check_model_sizes(settings: Sequence[Setting], profile: ClusterProfile, where: str) -> None:
    """Every setting's model has at most MAX_PARAMETERS parameters and, on a profile without GPUs (the model
    lives in the task's memory), its weights, gradients and optimizer state fit in mem_gb. ConfigError names
    the setting, its size keys, the count and the limit."""
    for setting in settings:
        config = setting.config
        sizes = ", ".join(f"{key} = {getattr(config, key)}" for key in SIZE_KEYS)
        place = f"{where}, setting {setting.index} ({setting.run_name}): {sizes}"
        try:
            parameters = model_parameters(config)
        except (RuntimeError, TypeError, ValueError, OverflowError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ConfigError(f"{place} make a model torch cannot build ({first[:200]}); valid: at most "
                              f"{MAX_PARAMETERS:.0e} parameters{NOTHING_SUBMITTED}") from None
        if parameters > MAX_PARAMETERS:
            raise ConfigError(f"{place} make a model of {parameters:.3g} parameters; valid: at most "
                              f"{MAX_PARAMETERS:.0e} (lower hidden_size or emb_size){NOTHING_SUBMITTED}")
        needed = training_bytes(config, parameters) / 2**30
        if profile.mem_gb is not None and not profile_gpus(profile) and needed > profile.mem_gb:
            raise ConfigError(f"{place} make a model of {parameters:.3g} parameters whose weights, gradients and "
                              f"{config.optimizer} state alone need {needed:.3g} GB; valid: at most the profile "
                              f"{profile.name}'s mem_gb = {profile.mem_gb:g} (lower hidden_size or emb_size, or "
                              f"raise mem_gb){NOTHING_SUBMITTED}")


# Setting values that need a CUDA device on the node (devices.resolve_device, devices.check_cuda_graph): a task
# given no GPU fails with them before its first batch.
NEEDS_GPU = {"device": "cuda", "cuda_graph": "on"}


def gpu_settings(config) -> list[str]:
    """The `key = value` of `config` that need a GPU (NEEDS_GPU); [] when none does."""
    return [f"{key} = {value!r}" for key, value in NEEDS_GPU.items() if getattr(config, key) == value]


def check_gpus_asked_for(settings: Sequence[Setting], profile: ClusterProfile, where: str) -> None:
    """On Slurm, a task gets the GPUs its profile asks for (gpus_per_node or gres) and no other: a setting that
    needs one on a profile that asks for none is refused, naming the setting, its values and the profile."""
    if profile_gpus(profile):
        return
    for setting in settings:
        needs = gpu_settings(setting.config)
        if needs:
            raise ConfigError(f"{where}, setting {setting.index} ({setting.run_name}): {' and '.join(needs)} needs "
                              f"a GPU, but cluster profile {profile.name} asks Slurm for none (no gpus_per_node or "
                              f"gres), so its task would fail on the node; valid: a profile with GPUs (--cluster), "
                              f"or device auto or cpu (--set device=auto) and cuda_graph auto or off"
                              f"{NOTHING_SUBMITTED}")
