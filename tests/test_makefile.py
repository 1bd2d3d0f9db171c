"""The Makefile passes its variables on, each word quoted: RESULTS (spaces included) reaches every ptblm command,
a value cannot run a command, and `make help` lists every target and variable. make runs for real here."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, write_run

MAKEFILE = (REPO / "Makefile").read_text()
PTBLM_TARGETS = sorted(set(re.findall(r"^([a-z-]+):[^\n]*\n\t\$\(PTBLM\)", MAKEFILE, re.M)))


def write_venv(venv: Path, ptblm: str) -> Path:
    """A venv whose bin/ptblm is `ptblm` (a script's text) and that make takes as set up."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "ptblm").write_text(ptblm)
    (venv / "bin" / "ptblm").chmod(0o755)
    (venv / ".installed").touch()  # newer than pyproject.toml: make does not rebuild the venv
    return venv


@pytest.fixture
def fake_venv(tmp_path) -> Path:
    """bin/ptblm prints the results folder it was given and its arguments, one by one, as JSON."""
    return write_venv(tmp_path / "venv", f"#!{sys.executable}\nimport json, os, sys\n"
                                         f"print(json.dumps([os.environ.get('PTBLM_RESULTS'), sys.argv[1:]]))\n")


def make(venv: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key not in ("PTBLM_RESULTS", "CLUSTER")}
    return subprocess.run(["make", "-s", "--no-print-directory", "-C", str(REPO), f"VENV={venv}", *args],
                          capture_output=True, text=True, env=env, check=check)


def passed(venv: Path, *args: str) -> tuple[str | None, list[str]]:
    """(PTBLM_RESULTS, the arguments) the fake ptblm got."""
    return tuple(json.loads(make(venv, *args).stdout))


def test_every_ptblm_target_is_covered():
    assert {"submit", "sbatch", "status", "tables", "report", "train", "image"} <= set(PTBLM_TARGETS)


@pytest.mark.parametrize("target", PTBLM_TARGETS)
def test_results_reaches_every_ptblm_command_as_one_absolute_path(fake_venv, target, tmp_path):
    assert passed(fake_venv, target, "RESULTS=elsewhere/runs")[0] == f"{REPO}/elsewhere/runs"
    spaced = tmp_path / "my results" / "run 1"
    assert passed(fake_venv, target, f"RESULTS={spaced}")[0] == str(spaced)
    assert passed(fake_venv, target)[0] is None  # ptblm's own default: results/


def test_values_are_passed_word_by_word_and_never_run(fake_venv, tmp_path):
    pwned = tmp_path / "pwn"
    for evil in (f"x; touch {pwned}", f"$$(touch {pwned})", f"`touch {pwned}`", f"$(shell touch {pwned})"):
        results, args = passed(fake_venv, "submit", f"EXP={evil}")
        assert args[:-2] == ["submit", *evil.split()] and not pwned.exists(), evil
    assert passed(fake_venv, "submit", "EXP=3.1 3.2", "SET=num_epochs=40 seeds=1111,1,2", "ONLY=0,2",
                  "CLUSTER=mila", "DRY_RUN=1")[1] == [
        "submit", "3.1", "3.2", "--executor", "auto", "--dry-run", "--cluster", "mila", "--set", "num_epochs=40",
        "--set", "seeds=1111,1,2", "--only", "0,2"]
    assert passed(fake_venv, "sbatch")[1] == ["sbatch", "smoke"]  # no CLUSTER=: ptblm's default, named as such
    assert passed(fake_venv, "samples", "ARGS=--rnn it's --no-unk")[1] == ["samples", "--rnn", "it's", "--no-unk"]
    assert passed(fake_venv, "export", "EXPS=3.1", "FORMAT=course")[1] == ["export", "3.1", "--format", "course"]


def test_image_passes_the_engine_and_the_stand_in_base(fake_venv):
    assert passed(fake_venv, "image")[1] == ["image", "--engine", "docker"]
    assert passed(fake_venv, "image", "ENGINE=podman", "BASE=localhost/base:1", "BASE_TORCH=2.13.0")[1] == [
        "image", "--engine", "podman", "--base", "localhost/base:1", "--build-arg", "BASE_TORCH=2.13.0"]


def test_every_target_that_trains_or_lists_settings_passes_the_corpus(fake_venv):
    """CORPUS reached only `make data`: `make submit EXP=smoke CORPUS=wikitext-2` trained PTB, silently."""
    assert passed(fake_venv, "data")[1] == ["data"]
    assert passed(fake_venv, "data", "CORPUS=wikitext-2")[1] == ["data", "--corpus", "wikitext-2"]
    assert passed(fake_venv, "train", "CORPUS=wikitext-2", "ARGS=--model GRU")[1] == [
        "train", "--corpus", "wikitext-2", "--model", "GRU"]
    assert passed(fake_venv, "bench", "CORPUS=wikitext-2")[1] == ["bench", "--corpus", "wikitext-2"]
    for target in ("submit", "sbatch", "status"):
        args = passed(fake_venv, target, "EXP=3.2", "CORPUS=wikitext-2")[1]
        assert args[:2] == [target, "3.2"] and args[-2:] == ["--set", "corpus=wikitext-2"], args
    assert passed(fake_venv, "submit", "EXP=3.2", "CORPUS=")[1] == ["submit", "3.2", "--executor", "auto"]


def test_help_lists_every_target_and_every_variable(fake_venv):
    listed = make(fake_venv, "help").stdout
    targets = re.search(r"^\.PHONY: (.*?)(?<!\\)$", MAKEFILE, re.M | re.S).group(1).replace("\\\n", " ").split()
    variables = re.findall(r"^([A-Z_]+) +\?=", MAKEFILE, re.M)
    assert len(targets) > 15 and len(variables) > 15
    for name in [*targets, *variables]:
        assert re.search(rf"^  {name} +\S", listed, re.M), f"{name} is not in make help:\n{listed}"


def test_status_reads_results_from_a_path_with_spaces(tmp_path):
    """The real ptblm, through make: a finished run in a folder with spaces is found (not `not submitted`)."""
    real = Path(sys.executable).parent / "ptblm"
    venv = write_venv(tmp_path / "venv", real.read_text())
    results = tmp_path / "my results"
    folder = write_run(results, "smoke", [900.0, 800.0])
    done = make(venv, "status", f"RESULTS={results}")
    assert done.returncode == 0, done.stderr
    assert f"{folder.name}" in done.stdout and " done " in done.stdout


def test_a_tilde_in_results_reaches_ptblm_as_written(fake_venv):
    """Not made into <repo>/~/runs: ptblm expands it (tests/test_cli.py)."""
    assert passed(fake_venv, "status", "RESULTS=~/runs")[0] == "~/runs"


@pytest.mark.parametrize("code", [1, 2, 130])
def test_make_exits_2_whenever_ptblm_fails_naming_ptblms_status_as_the_header_and_readme_say(tmp_path, code):
    venv = write_venv(tmp_path / "venv", f"#!/bin/sh\nexit {code}\n")
    result = make(venv, "tables", check=False)
    assert result.returncode == 2 and f"Error {code}" in result.stderr
    assert make(write_venv(tmp_path / "ok", "#!/bin/sh\nexit 0\n"), "tables", check=False).returncode == 0
    header = MAKEFILE.split("\nPYTHON")[0]
    assert "make itself exits 2\n# when ptblm exits nonzero" in header
    readme = (REPO / "README.md").read_text()
    assert "`make` exits 0 when ptblm did and 2\n(make's own code) whenever ptblm did not" in readme
