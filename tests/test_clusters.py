"""The cluster profiles shipped in slurm/clusters/ and the profile keys that choose how tasks run."""
from __future__ import annotations

import re

import pytest

from conftest import REPO
from ptblm.clusters import ClusterProfile, load_profile
from ptblm.config import ConfigError
from ptblm.launch.slurm import sbatch_flags, scheduler_parameters
from ptblm.provenance import cpu_fallback_note

CLUSTERS = REPO / "slurm" / "clusters"
SHIPPED = sorted(path.stem for path in CLUSTERS.glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profiles_load_and_load_apptainer_only_with_a_container(name):
    """A setup line that fails stops the task before training (launch.setup): a `module load apptainer` on a
    cluster without that module fails every task, and is only needed when tasks run inside the image."""
    profile = load_profile(name, CLUSTERS)
    loads_apptainer = any(re.search(r"\bmodule\s+load\s+(apptainer|singularity)\b", line) for line in profile.setup)
    assert not loads_apptainer or profile.container, f"{name}.yaml loads apptainer without container:"


@pytest.mark.parametrize("name", ["mila", "alliance"])
def test_the_example_profiles_show_how_to_be_told_when_the_array_ends(name, tmp_path):
    """The commented mail lines, once used, reach both submit paths as sbatch's --mail-type and --mail-user."""
    text = (CLUSTERS / f"{name}.yaml").read_text()
    mail = next(line for line in text.splitlines() if line.startswith("# sbatch_extra:") and "mail-type" in line)
    used = re.sub(r"^sbatch_extra:.*\n", "", text, flags=re.M).replace(mail, mail.removeprefix("# "))
    (tmp_path / f"{name}.yaml").write_text(used)
    parameters = scheduler_parameters(load_profile(name, tmp_path), "ptblm-3.1")
    assert parameters["additional_parameters"]["mail-type"] == "END,FAIL"
    flags = sbatch_flags(parameters)
    assert "--mail-type=END,FAIL" in flags and any(flag.startswith("--mail-user=you@") for flag in flags)


def test_mila_keeps_to_fewer_than_five_concurrent_jobs():
    assert load_profile("mila", CLUSTERS).array_parallelism < 5  # docs.mila.quebec/Information.html


def test_alliance_names_a_gpu_type_and_packs_short_settings():
    profile = load_profile("alliance", CLUSTERS)
    assert re.fullmatch(r"gpu:(h100|a100):1", profile.gres or "")
    assert profile.runs_per_gpu > 1 and profile.account


def test_the_dev_gpu_profile_asks_for_the_dev_clusters_gpus():
    profile = load_profile("dev-gpu", CLUSTERS)
    assert (profile.partition, profile.gpus_per_node, profile.runs_per_gpu) == ("debug", 1, 2)
    assert "Gres=gpu:@GPU_COUNT@" in (REPO / "slurm/dev-cluster/slurm.conf.in").read_text()


def test_container_runtime_is_apptainer_unless_podman_is_asked_for():
    assert ClusterProfile.from_dict({"name": "x"}, "x.yaml").container_runtime == "apptainer"
    assert ClusterProfile.from_dict({"name": "x", "container_runtime": "podman"}, "x.yaml").container_runtime == \
        "podman"
    with pytest.raises(ConfigError, match=r"^x.yaml: container_runtime = 'docker' is invalid; valid: apptainer, "
                                          r"podman$"):
        ClusterProfile.from_dict({"name": "x", "container_runtime": "docker"}, "x.yaml")


def test_a_run_given_gpus_torch_cannot_use_says_it_runs_on_the_cpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("torch sees a GPU here: the note is for allocations torch cannot use")
    cpu = torch.device("cpu")
    assert cpu_fallback_note(cpu, {"CUDA_VISIBLE_DEVICES": "0,1"}) == (
        "GPUs 0,1 allocated (CUDA_VISIBLE_DEVICES) but torch sees no CUDA device: running on the CPU")
    assert cpu_fallback_note(cpu, {}) is None
    assert cpu_fallback_note(cpu, {"CUDA_VISIBLE_DEVICES": ""}) is None
