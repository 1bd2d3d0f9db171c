"""Where a run ran (ptblm.provenance): CPU, GPU, driver, image, packages, every attempt; with fakes on a CPU."""
from __future__ import annotations

import hashlib
import json
import math
import subprocess
from types import SimpleNamespace

import pytest
import torch

from conftest import tiny_config, write_run
from ptblm import runfolder as rf
from ptblm.container import IMAGE_DIGEST_ENV, IMAGE_ENV, image_identity, profile_spec
from ptblm.provenance import (cpu_model, gpu_record, image_record, installed_packages, nvidia_driver_version,
                              provenance, record_attempt)
from ptblm.results import runs_frame, where_it_ran
from ptblm.train import train_run
from runtree import write_config

PROPRIETARY = ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n"
               "GCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n")
OPEN = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  535.104.05  Release Build  (dvs-builder@U16)\n"


def test_cpu_model_reads_cpuinfo_and_falls_back_to_platform(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7543 32-Core Processor\n")
    assert cpu_model(cpuinfo) == "AMD EPYC 7543 32-Core Processor"
    assert cpu_model(tmp_path / "absent")  # platform's answer, never empty


@pytest.mark.parametrize("text, version", [(PROPRIETARY, "550.54.15"), (OPEN, "535.104.05"), ("garbage", None)])
def test_the_driver_version_comes_from_the_kernel_modules_file(tmp_path, text, version):
    (tmp_path / "version").write_text(text)
    assert nvidia_driver_version(tmp_path / "version") == version
    assert nvidia_driver_version(tmp_path / "absent") is None


def test_gpu_record_names_the_card_and_its_memory():
    properties = SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=85_045_788_672)
    assert gpu_record(torch.device("cuda", 0), lambda device: properties) == \
        {"name": "NVIDIA H100 80GB HBM3", "memory_bytes": 85_045_788_672}
    assert gpu_record(torch.device("cpu"), pytest.fail) is None


def test_the_image_comes_from_the_submission_then_apptainer_then_podman(tmp_path):
    podman_file = tmp_path / ".containerenv"
    assert image_record({}, podman_file) is None
    podman_file.write_text('engine="podman-4.9.3"\nname="x"\nimage="localhost/ptblm:latest"\nimageid="ab12"\n')
    assert image_record({}, podman_file) == {"path": "localhost/ptblm:latest", "digest": "sha256:ab12"}
    assert image_record({"APPTAINER_CONTAINER": "/s/ptblm.sif"}, podman_file) == \
        {"path": "/s/ptblm.sif", "digest": None}
    told = {IMAGE_ENV: "/s/ptblm.sif", IMAGE_DIGEST_ENV: "sha256:cd34", "APPTAINER_CONTAINER": "/s/ptblm.sif"}
    assert image_record(told, podman_file) == {"path": "/s/ptblm.sif", "digest": "sha256:cd34"}


def test_the_sif_digest_is_its_sha256_cached_by_path_size_and_mtime(tmp_path):
    sif, cache = tmp_path / "ptblm.sif", tmp_path / "digests.json"
    sif.write_bytes(b"not really an image" * 1000)
    expected = "sha256:" + hashlib.sha256(sif.read_bytes()).hexdigest()
    assert image_identity(str(sif), "apptainer", "apptainer", pytest.fail, cache) == \
        {IMAGE_ENV: str(sif), IMAGE_DIGEST_ENV: expected}
    entry = json.loads(cache.read_text())[str(sif.resolve())]
    assert (entry["size"], entry["sha256"]) == (sif.stat().st_size, expected.removeprefix("sha256:"))
    spec = profile_spec(str(sif), "apptainer", [], {"K": "v"}, "p", environ={}, digest_cache=cache)
    assert spec.env == {"K": "v", IMAGE_ENV: str(sif.resolve()), IMAGE_DIGEST_ENV: expected}


def test_podmans_image_id_is_the_digest():
    def runner(argv, **kwargs):
        assert argv == ["podman", "image", "inspect", "--format", "{{.Id}}", "localhost/ptblm:latest"]
        return subprocess.CompletedProcess(argv, 0, stdout=b"sha256:0123abcd\n", stderr=b"")

    assert image_identity("localhost/ptblm:latest", "podman", "podman", runner) == \
        {IMAGE_ENV: "localhost/ptblm:latest", IMAGE_DIGEST_ENV: "sha256:0123abcd"}


def test_installed_packages_are_pip_freeze_lines():
    def dist(name, version):
        return SimpleNamespace(metadata={"Name": name}, version=version)

    assert installed_packages([dist("torch", "2.13.0"), dist("absl-py", "2.5.1"), dist("PyYAML", "6.0.4"),
                               dist("torch", "2.13.0")]) == ["absl-py==2.5.1", "PyYAML==6.0.4", "torch==2.13.0"]
    here = installed_packages()
    assert f"torch=={torch.__version__}" in here and any(line.startswith("ptblm==") for line in here)


def test_a_run_records_its_environment_and_packages(synthetic_dir, tmp_path):
    train_run(tiny_config(num_epochs=1, max_batches=2), synthetic_dir, tmp_path, echo=False, environ={})
    recorded = rf.read_run(tmp_path).provenance
    packages = (tmp_path / rf.PACKAGES_FILE).read_text()
    assert recorded["packages_sha256"] == hashlib.sha256(packages.encode()).hexdigest()
    assert f"torch=={torch.__version__}\n" in packages
    assert (recorded["cuda_version"], recorded["gpu"], recorded["image"]) == (torch.version.cuda, None, None)
    assert recorded["cpu"] == cpu_model() and len(recorded["attempts"]) == 1
    assert recorded["attempts"][0]["packages_sha256"] == recorded["packages_sha256"]


def test_a_resume_on_another_environment_says_what_changed_and_keeps_both_attempts(synthetic_dir, tmp_path,
                                                                                  monkeypatch):
    config = tiny_config(num_epochs=2, max_batches=2)
    after_one_epoch = lambda: len(rf.read_curves(tmp_path).epochs) == 1  # noqa: E731
    train_run(config, synthetic_dir, tmp_path, echo=False, should_stop=after_one_epoch, environ={})
    first = rf.read_run(tmp_path).provenance
    changed = [line for line in installed_packages() if not line.startswith("numpy==")] + ["numpy==9.9.9"]
    monkeypatch.setattr("ptblm.train.installed_packages", lambda: sorted(changed, key=str.lower))
    assert train_run(config, synthetic_dir, tmp_path, echo=False, environ={}).state == rf.DONE
    recorded = rf.read_run(tmp_path).provenance
    assert [a["packages_sha256"] for a in recorded["attempts"]] == [first["packages_sha256"],
                                                                    recorded["packages_sha256"]]
    assert recorded["attempts"][0]["started_at"] == first["started_at"]
    lines = [line for line in (tmp_path / rf.LOG_FILE).read_text().splitlines() if "environment changed" in line]
    assert len(lines) == 1 and lines[0].endswith(f"the environment changed since attempt 1 (on {first['host']}, "
                                                 f"started {first['started_at']}): packages "
                                                 f"-numpy=={__import__('numpy').__version__}, +numpy==9.9.9")


def test_an_older_folders_top_level_becomes_its_first_attempt(tmp_path):
    write_config(tmp_path, tiny_config().to_dict(),
                 {"host": "old-node", "torch_version": "2.5.1", "started_at": "then"})
    now = {"host": "new-node", "torch_version": "2.6.0", "started_at": "now", "cuda_version": "12.4"}
    attempts, note = record_attempt(tmp_path, now, ["a==1"])
    assert attempts == [{"host": "old-node", "torch_version": "2.5.1", "started_at": "then"},
                        {"host": "new-node", "torch_version": "2.6.0", "started_at": "now", "cuda_version": "12.4"}]
    assert note == "the environment changed since attempt 1 (on old-node, started then): torch_version 2.5.1 -> 2.6.0"
    assert (tmp_path / rf.PACKAGES_FILE).read_text() == "a==1\n"


def test_provenance_reads_the_node_list_from_the_environ_it_is_given():
    recorded = provenance(torch.device("cpu"), None, {"SLURM_JOB_NODELIST": "cn-a[001-002]", "SLURM_JOB_ID": "7"},
                          packages=["a==1"])
    assert (recorded["node_list"], recorded["slurm"]) == ("cn-a[001-002]", {"SLURM_JOB_ID": "7",
                                                                           "SLURM_JOB_NODELIST": "cn-a[001-002]"})
    assert recorded["packages_sha256"] == hashlib.sha256(b"a==1\n").hexdigest()


def test_runs_csv_carries_the_short_environment(tmp_path):
    folder = write_run(tmp_path, "3.1", valid=[300.0])
    config = rf.read_json_object(folder / rf.CONFIG_FILE)
    rf.atomic_write_json(folder / rf.CONFIG_FILE, {
        **config, "torch_version": "2.5.1+cu124", "cuda_version": "12.4",
        "gpu": {"name": "Tesla V100-SXM2-32GB", "memory_bytes": 34_089_730_048}, "cpu": "Intel(R) Xeon(R) Gold 6148",
        "node_list": "cn-a[001-002]", "packages_sha256": "fedcba9876543210" * 4,
        "image": {"path": "/s/ptblm.sif", "digest": "sha256:" + "0123456789abcdef" * 4}})
    cpu_run = write_run(tmp_path, "3.2", valid=[300.0])
    rf.atomic_write_json(cpu_run / rf.CONFIG_FILE, {**rf.read_json_object(cpu_run / rf.CONFIG_FILE), "gpu": None,
                                                    "cpu": "AMD EPYC 7742 64-Core Processor"})
    gpu_row, cpu_row = runs_frame(tmp_path).itertuples()
    assert (gpu_row.gpu, gpu_row.nodes, gpu_row.torch, gpu_row.cuda, gpu_row.image, gpu_row.packages) == \
        ("Tesla V100-SXM2-32GB", "cn-a[001-002]", "2.5.1+cu124", "12.4", "sha256:0123456789ab", "fedcba987654")
    assert math.isnan(gpu_row.cpu)  # a GPU run's CPU is not what ran it
    assert cpu_row.cpu == "AMD EPYC 7742 64-Core Processor" and math.isnan(cpu_row.gpu) and math.isnan(cpu_row.nodes)
    missing = where_it_ran({})
    assert all(math.isnan(value) for value in missing.values())
    assert list(missing) == ["gpu", "cpu", "nodes", "torch", "cuda", "image", "packages"]
