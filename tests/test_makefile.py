"""The Makefile passes its variables on: RESULTS=DIR reaches every ptblm command, ENGINE/BASE reach `ptblm image`."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

MAKEFILE = (REPO / "Makefile").read_text()
PTBLM_TARGETS = sorted(set(re.findall(r"^([a-z-]+):[^\n]*\n\t\$\(PTBLM\)", MAKEFILE, re.M)))


@pytest.fixture
def fake_venv(tmp_path) -> Path:
    """A venv whose `ptblm` prints the results folder it was given and its arguments."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    ptblm = venv / "bin" / "ptblm"
    ptblm.write_text('#!/bin/sh\necho "PTBLM_RESULTS=${PTBLM_RESULTS:-unset} ARGS=$*"\n')
    ptblm.chmod(0o755)
    (venv / ".installed").touch()  # newer than pyproject.toml: make does not rebuild the venv
    return venv


def make(venv: Path, *args: str) -> str:
    env = {key: value for key, value in os.environ.items() if key != "PTBLM_RESULTS"}
    done = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(REPO), f"VENV={venv}", *args],
                          capture_output=True, text=True, env=env, check=True)
    return done.stdout


def test_every_ptblm_target_is_covered():
    assert {"submit", "sbatch", "status", "tables", "report", "train", "image"} <= set(PTBLM_TARGETS)


@pytest.mark.parametrize("target", PTBLM_TARGETS)
def test_results_reaches_every_ptblm_command_as_an_absolute_path(fake_venv, target):
    assert make(fake_venv, target, "RESULTS=elsewhere/runs").startswith(f"PTBLM_RESULTS={REPO}/elsewhere/runs ")
    assert make(fake_venv, target).startswith("PTBLM_RESULTS=unset ")  # ptblm's own default: results/


def test_image_passes_the_engine_and_the_stand_in_base(fake_venv):
    assert make(fake_venv, "image").strip().endswith("ARGS=image --engine docker")
    assert make(fake_venv, "image", "ENGINE=podman", "BASE=localhost/base:1", "BASE_TORCH=2.13.0").strip() \
        .endswith("ARGS=image --engine podman --base localhost/base:1 --build-arg BASE_TORCH=2.13.0")


def test_data_passes_the_corpus(fake_venv):
    assert make(fake_venv, "data").strip().endswith("ARGS=data")
    assert make(fake_venv, "data", "CORPUS=wikitext-2").strip().endswith("ARGS=data --corpus wikitext-2")
