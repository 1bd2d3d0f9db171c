"""Checking that docker/Dockerfile, docker/ptblm.def, docker/constraints.txt and .dockerignore agree with
pyproject.toml (its torch range, requires-python, dependencies and console script), so that an image built
from them runs this project as it is."""
from __future__ import annotations

import json
import operator
import re
from pathlib import Path
from typing import Any

from .images import IMAGE_TAG


def check_image_agreement(repo_dir: str | Path, image_tag: str = IMAGE_TAG) -> list[str]:
    """Problems that would make the images disagree with the project (empty when they agree)."""
    repo = Path(repo_dir)
    project = _read_toml(repo / "pyproject.toml")["project"]
    requirements = dict(_requirement(text) for text in project.get("dependencies", []))
    scripts = sorted(project.get("scripts", {}))
    dockerfile = _dockerfile_instructions((repo / "docker/Dockerfile").read_text())
    return [
        *_dockerfile_problems(dockerfile, requirements, project.get("requires-python", ""), scripts),
        *_definition_problems(*_definition((repo / "docker/ptblm.def").read_text()), image_tag, scripts),
        *_lock_problems(read_lock(repo / "docker/constraints.txt"), requirements),
        *_dockerignore_problems((repo / ".dockerignore").read_text().splitlines(), dockerfile),
    ]


def _dockerfile_problems(instructions: list[tuple[str, str]], requirements: dict[str, str],
                         requires_python: str, scripts: list[str]) -> list[str]:
    where = "docker/Dockerfile"
    problems = []
    bases = [value for keyword, value in instructions if keyword == "FROM"]
    build_args = dict(value.partition("=")[::2] for keyword, value in instructions if keyword == "ARG")
    tag_torch = re.search(r":(\d+(?:\.\d+)+)-", bases[0]) if bases else None
    if len(bases) != 1 or tag_torch is None:
        return [f"{where}: expected one FROM with a versioned PyTorch tag such as "
                f"pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime, got {bases}"]
    torch, python = build_args.get("BASE_TORCH", ""), build_args.get("BASE_PYTHON", "")
    if torch != tag_torch.group(1):
        problems.append(f"{where}: ARG BASE_TORCH={torch!r} but the base tag {bases[0]} ships torch "
                        f"{tag_torch.group(1)}")
    if "torch" in requirements and not version_in_range(tag_torch.group(1), requirements["torch"]):
        problems.append(f"{where}: base {bases[0]} ships torch {tag_torch.group(1)}, outside pyproject.toml's "
                        f"torch{requirements['torch']}")
    if not python or not version_in_range(python, requires_python):
        problems.append(f"{where}: ARG BASE_PYTHON={python!r} does not satisfy pyproject.toml's "
                        f"requires-python {requires_python!r}")
    env = " ".join(value for keyword, value in instructions if keyword == "ENV")
    for setting in ("PYTHONNOUSERSITE=1", "PYTHONUNBUFFERED=1"):
        if setting not in env.split():
            problems.append(f"{where}: ENV lacks {setting}")
    entrypoints = [value for keyword, value in instructions if keyword == "ENTRYPOINT"]
    entrypoint = _exec_form(entrypoints[-1]) if entrypoints else None
    if len(scripts) != 1 or entrypoint != scripts:
        problems.append(f"{where}: ENTRYPOINT is {entrypoints[-1] if entrypoints else 'missing'}; expected the "
                        f"console script of pyproject.toml [project.scripts] {scripts}, as {json.dumps(scripts)}")
    problems += _installed_from_repo(instructions, where)
    return problems


def _installed_from_repo(instructions: list[tuple[str, str]], where: str) -> list[str]:
    """The package must be pip-installed from a COPY of pyproject.toml and src/, not a registry."""
    copies = {source: dest for keyword, value in instructions if keyword == "COPY"
              for source, dest in _copy_pairs(value)}
    src_dest = copies.get("src/", copies.get("src", "")).rstrip("/")
    folder = src_dest[:-len("/src")] if src_dest.endswith("/src") else ""
    if not folder or copies.get("pyproject.toml", "").rstrip("/") != folder:
        return [f"{where}: expected `COPY pyproject.toml ... DIR/` and `COPY src/ DIR/src/` (the package from "
                f"this repository), got COPY {copies}"]
    commands = [command for keyword, value in instructions if keyword == "RUN"
                for command in re.split(r"&&|\|\||;", value)]
    if not any("pip install" in command and folder in command.split() for command in commands):
        return [f"{where}: no `pip install {folder}` (the repository copy) in any RUN"]
    return []


def _exec_form(value: str) -> list[str] | None:
    """ENTRYPOINT ["a", "b"] -> ['a', 'b']; the shell form (no JSON list) -> None."""
    try:
        words = json.loads(value)
    except json.JSONDecodeError:
        return None
    return words if isinstance(words, list) else None


def _copy_pairs(value: str) -> list[tuple[str, str]]:
    words = [word for word in value.split() if not word.startswith("--")]
    return [(source, words[-1]) for source in words[:-1]]


def _definition_problems(header: dict[str, str], sections: dict[str, str], image_tag: str,
                         scripts: list[str]) -> list[str]:
    where = "docker/ptblm.def"
    problems = []
    if header.get("Bootstrap") != "docker-daemon" or header.get("From") != image_tag:
        problems.append(f"{where}: header is Bootstrap: {header.get('Bootstrap')} / From: {header.get('From')}; "
                        f"expected Bootstrap: docker-daemon / From: {image_tag} (the tag `make image` builds)")
    missing = [name for name in ("environment", "runscript", "test", "labels", "help") if name not in sections]
    if missing:
        problems.append(f"{where}: missing sections {', '.join('%' + name for name in missing)}")
    expected_run = f'exec {scripts[0] if scripts else "?"} "$@"'
    if sections.get("runscript", "").strip() != expected_run:
        problems.append(f"{where}: %runscript is {sections.get('runscript', '').strip()!r}; expected {expected_run!r}")
    if "import" not in sections.get("test", "") or "ptblm" not in sections.get("test", ""):
        problems.append(f"{where}: %test does not import ptblm")
    return problems


def _lock_problems(lock: dict[str, str], requirements: dict[str, str]) -> list[str]:
    where = "docker/constraints.txt"
    problems = []
    if "torch" in lock:
        problems.append(f"{where}: pins torch=={lock['torch']}; leave torch out (the base image provides it)")
    for name, specifier in requirements.items():
        if name == "torch":
            continue
        if name not in lock:
            problems.append(f"{where}: dependency {name} of pyproject.toml is not pinned (add {name}==VERSION)")
        elif not version_in_range(lock[name], specifier):
            problems.append(f"{where}: {name}=={lock[name]} is outside pyproject.toml's {name}{specifier}")
    return problems


def _dockerignore_problems(patterns: list[str], instructions: list[tuple[str, str]]) -> list[str]:
    """.dockerignore must keep results/, .venv/ and data/ out and let every COPY source in."""
    where = ".dockerignore"
    patterns = [line.strip() for line in patterns if line.strip() and not line.lstrip().startswith("#")]
    allowed = {pattern[1:].strip("/") for pattern in patterns if pattern.startswith("!")}
    if patterns[:1] != ["*"]:
        excluded = {pattern.strip("/") for pattern in patterns if not pattern.startswith("!")}
        return [f"{where}: {name}/ is not excluded" for name in ("results", ".venv", "data") if name not in excluded]
    problems = [f"{where}: re-includes {name}/, which must stay out of the build context"
                for name in ("results", ".venv", "data") if name in allowed]
    sources = [source for keyword, value in instructions if keyword == "COPY" for source, _ in _copy_pairs(value)]
    problems += [f"{where}: COPY source {source} is excluded (add !{source.rstrip('/')})"
                 for source in sources if source.rstrip("/") not in allowed]
    return problems


# --- small parsers -------------------------------------------------------------------------

_OPERATORS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
              "==": operator.eq, "!=": operator.ne}


def version_in_range(version: str, specifier: str) -> bool:
    """'2.5.1+cu124' satisfies '>=2.4,<2.15': release numbers compared, zero-padded (2.5 == 2.5.0).
    Enough for the plain X.Y[.Z] clauses this project writes; anything else is refused."""
    release = _release(version)
    for clause in filter(None, (part.strip() for part in specifier.split(","))):
        match = re.fullmatch(r"(>=|<=|==|!=|>|<)\s*(\d+(?:\.\d+)*)", clause)
        if match is None:
            raise ValueError(f"version clause {clause!r} (in {specifier!r}) is not supported; "
                             "use >=, <=, >, <, == or != with X.Y[.Z]")
        bound = _release(match.group(2))
        width = max(len(release), len(bound))
        padded = release + (0,) * (width - len(release)), bound + (0,) * (width - len(bound))
        if not _OPERATORS[match.group(1)](*padded):
            return False
    return True


def _release(version: str) -> tuple[int, ...]:
    match = re.match(r"\d+(?:\.\d+)*", version.strip())
    if match is None:
        raise ValueError(f"{version!r} is not a version number")
    return tuple(int(part) for part in match.group().split("."))


def _requirement(text: str) -> tuple[str, str]:
    """'torch>=2.4,<2.15' -> ('torch', '>=2.4,<2.15'); names normalised as pip does."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*([^;]*)", text)
    if match is None:
        raise ValueError(f"cannot read requirement {text!r}")
    return _normalise(match.group(1)), match.group(2).strip()


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """name==version lines (comments and blanks skipped) -> {normalised name: version}."""
    lock = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.split("#")[0].strip()
        if not line:
            continue
        name, separator, version = line.partition("==")
        if not separator or not version.strip():
            raise ValueError(f"{path}:{number}: {line!r} is not an exact pin NAME==VERSION")
        lock[_normalise(name.strip())] = version.strip()
    return lock


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError as error:
            raise RuntimeError(f"reading {path} needs Python >= 3.11 or `pip install tomli`") from error
    with open(path, "rb") as file:
        return tomllib.load(file)


def _dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#"):  # Docker drops comment lines, inside continuations too
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined = (pending + line).strip()
        pending = ""
        if joined:
            keyword, _, arguments = joined.partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def _definition(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """({'Bootstrap': ..., 'From': ...}, {'runscript': body, 'test': body, ...})."""
    header: dict[str, str] = {}
    sections: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("%"):
            current = line[1:].split()[0]
            sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
        elif ":" in line and not line.lstrip().startswith("#"):
            key, _, value = line.partition(":")
            header[key.strip()] = value.strip()
    return header, sections
