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


@pytest.mark.parametrize("line, key, value", [
    ("account: 123", "account", "123"), ("account: 1:20", "account", "1:20"), ("partition: 0123", "partition", "0123"),
    ("qos: 1.50", "qos", "1.50"), ("account: yes", "account", "yes"), ("gres: 2024-01-01", "gres", "2024-01-01"),
    ("setup: [1:20]", "setup", ("1:20",)), ("sbatch_extra: {comment: 1:20, nice: +5, exclusive: yes}",
                                            "sbatch_extra", {"comment": "1:20", "nice": "+5", "exclusive": True}),
])
def test_a_text_key_that_yaml_reads_as_a_number_keeps_the_text_as_written(tmp_path, line, key, value):
    """YAML 1.1 reads 0123 as 83 and 1:20 as 80 before the key is known: they were refused as 'not a decimal
    integer ... e.g. 32' (and `account: 123` as not one word), though the text is what the user meant."""
    (tmp_path / "c.yaml").write_text(line + "\n")
    assert getattr(load_profile("c", tmp_path), key) == value


@pytest.mark.parametrize("line, message", [
    ("time_min: 2:00:00", "line 1: time_min = 2:00:00 is not a decimal integer (YAML 1.1 reads a leading 0 as octal, "
                          "0x as hex, 1:20 as base 60, 1_000 as 1000); valid: a positive whole number of minutes, "
                          "e.g. 120 for 2:00:00"),
    ("local_timeout_min: 1:30", "line 1: local_timeout_min = 1:30 is not a decimal integer"),
    ("time_min: '2h'", "time_min = '2h' is invalid; valid: a positive whole number of minutes, e.g. 120"),
    ("cpus_per_task: 010", "line 1: cpus_per_task = 010 is not a decimal integer (YAML 1.1 reads a leading 0 as octal"),
    ("mem_gb: 1_6", "line 1: mem_gb = 1_6 is not a decimal number (YAML 1.1 reads 1:30.5 as base 60, 1_000.5 as "
                    "1000.5); valid: a number of GB of at least 0.25, e.g. 16"),
    ("time_min: 0", "time_min = 0 is invalid; valid: a positive whole number of minutes, e.g. 120"),
])
def test_a_number_key_given_a_time_or_another_base_says_what_form_is_valid(tmp_path, line, message):
    (tmp_path / "c.yaml").write_text(line + "\n")
    with pytest.raises(ConfigError) as error:
        load_profile("c", tmp_path)
    assert str(error.value).startswith(f"{tmp_path / 'c.yaml'}, {message}" if message.startswith("line")
                                       else f"{tmp_path / 'c.yaml'}: {message}"), str(error.value)


@pytest.mark.parametrize("text, message", [
    ("a: 1\n\tb: 2\n", "line 2, column 1: found character '\\t' that cannot start any token (a tab: YAML indents "
                       "with spaces only)"),
    ("partition: x\nsbatch_extra: {a: 1\n", "line 3, column 1: expected ',' or '}', but got the end of the file, "
                                           "while parsing a flow mapping from line 2, column 15"),
    ("foo: [\n", "line 2, column 1: expected the node content, but found the end of the file"),
    ("a: \x07\n", "line 1, column 4: character #x0007 is not allowed in YAML; valid: printable characters"),
])
def test_a_yaml_syntax_error_is_one_line_with_the_file_line_column_and_problem(tmp_path, text, message):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError) as error:
        load_profile("c", tmp_path)
    assert str(error.value).startswith(f"{tmp_path / 'c.yaml'}, {message}") and "\n" not in str(error.value), (
        str(error.value))
