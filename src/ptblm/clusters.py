"""Cluster profiles: slurm/clusters/<name>.yaml -> a validated ClusterProfile."""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from .config import ConfigError, read_yaml_mapping
from .container import RUNTIMES
from .yamlread import WrittenText, read_float, read_int, read_text

DEFAULT_MAX_ARRAY_SIZE = 1000  # Slurm's default MaxArraySize is 1001 (task ids 0..1000)


@dataclass(frozen=True)
class ClusterProfile:
    name: str
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    gpus_per_node: int = 0  # --gpus-per-node; leave 0 and set gres on clusters that want --gres
    gres: str | None = None  # e.g. "gpu:a100:1"
    cpus_per_task: int = 2
    mem_gb: float | None = None
    time_min: int = 180  # per task; preempted or timed-out tasks requeue and resume from last.pt
    max_timeouts: int = 10  # requeues after a time limit (submitit's max_num_timeout); preemptions are not counted
    array_parallelism: int = 16  # the %K throttle of the array
    max_array_size: int | None = None  # None: ask `scontrol show config`, else 1000
    setup: tuple[str, ...] = ()  # lines run before the task, e.g. "module load apptainer"
    container: str | None = None  # path to ptblm.sif (apptainer) or an image name (podman): tasks run inside it
    container_runtime: str = "apptainer"  # apptainer | podman (see ptblm.container)
    container_binds: tuple[str, ...] = ()  # extra host paths bound at the same path
    sbatch_extra: dict[str, Any] = field(default_factory=dict)  # more sbatch options, e.g. {constraint: a100}
    runs_per_gpu: int = 1  # settings run side by side in one array task (one process each, one allocation)
    local_parallelism: int = 2  # without Slurm: tasks run at once on this machine
    local_timeout_min: int = 24 * 60  # without Slurm: submitit's local timeout (its default is 2 minutes)

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str) -> ClusterProfile:
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid keys: {', '.join(known)}")
        values = dict(values)
        for key in ("partition", "account", "qos", "gres", "container", "container_runtime"):
            if values.get(key) is not None:
                values[key] = _text(where, key, values[key])
        for key in ("partition", "account", "qos", "gres"):
            if values.get(key) is not None:
                _check_word(where, key, values[key])
        if values.get("container") is not None:
            _check_line(where, "container", values["container"], "a path to the image")
        for key in ("setup", "container_binds"):
            if key in values:
                if not isinstance(values[key], list):
                    raise ConfigError(f"{where}: {key} = {values[key]!r} is invalid; valid: a list of strings")
                values[key] = tuple(_text(where, f"{key}[{i}]", line) for i, line in enumerate(values[key]))
                for i, line in enumerate(values[key]):
                    _check_line(where, f"{key}[{i}]", line, "one line of text" if key == "setup" else "a path")
        if isinstance(values.get("mem_gb"), str):  # 1_5, 1:30, 16.0e0 (read_float), or text
            values["mem_gb"] = read_float(where, "mem_gb", values["mem_gb"], MEM_VALID)
        if values.get("mem_gb") is not None:
            try:
                slurm_mem(values["mem_gb"])
            except ConfigError as error:
                raise ConfigError(f"{where}: {error}") from None
        for key, valid in INTEGER_KEYS.items():
            value = values.get(key)
            if value is None:
                continue
            if isinstance(value, WrittenText) and key in MINUTES_KEYS:  # 2:00:00 is no time here
                valid = f"a positive whole number of minutes, {minutes_example(value)}"
            value = values[key] = read_int(where, key, value, valid)
            if value < 0 or (value == 0 and key != "gpus_per_node"):
                raise ConfigError(f"{where}: {key} = {value!r} is invalid; valid: {valid}")
        if values.get("gpus_per_node") and values.get("gres"):
            raise ConfigError(f"{where}: set gpus_per_node or gres, not both")
        if values.get("container_runtime", RUNTIMES[0]) not in RUNTIMES:
            raise ConfigError(f"{where}: container_runtime = {values['container_runtime']!r} is invalid; "
                              f"valid: {', '.join(RUNTIMES)}")
        if "sbatch_extra" in values:
            _check_sbatch_extra(where, values["sbatch_extra"])
            values["sbatch_extra"] = {str(option): _sbatch_value(value)
                                      for option, value in values["sbatch_extra"].items()}
        return cls(**values)


# sbatch options that ptblm writes itself (launch/slurm.py scheduler_parameters, launch/sbatch.py sbatch_argv,
# submitit's script, slurm/array.sbatch) or whose effect it relies on: sbatch_extra comes last and would win.
# Each maps to the profile key that sets it, or None when ptblm alone decides it.
MANAGED_SBATCH_OPTIONS = {
    "partition": "partition", "account": "account", "qos": "qos", "gres": "gres", "gpus-per-node": "gpus_per_node",
    "gpus": "gpus_per_node", "cpus-per-task": "cpus_per_task", "mem": "mem_gb", "time": "time_min",
    "array": "array_parallelism", "job-name": None, "output": None, "error": None, "export": None, "chdir": None,
    "requeue": None, "no-requeue": None, "open-mode": None, "signal": None, "hold": None, "nodes": None,
    "ntasks": None, "ntasks-per-node": None, "wrap": None, "parsable": None, "test-only": None,
}
# sbatch's one-letter forms of managed options (`sbatch --help`); a one-letter key is refused as one of these.
MANAGED_SBATCH_SHORT = {"A": "account", "a": "array", "c": "cpus-per-task", "D": "chdir", "e": "error",
                        "G": "gpus", "H": "hold", "J": "job-name", "N": "nodes", "n": "ntasks", "o": "output",
                        "p": "partition", "q": "qos", "t": "time"}
MINUTES_KEYS = ("time_min", "local_timeout_min")
INTEGER_KEYS = {"gpus_per_node": "0 or more", "cpus_per_task": "a positive integer",
                "time_min": "a positive whole number of minutes, e.g. 120",
                "array_parallelism": "a positive integer", "runs_per_gpu": "a positive integer",
                "local_parallelism": "a positive integer",
                "local_timeout_min": "a positive whole number of minutes, e.g. 120",
                "max_array_size": "a positive integer", "max_timeouts": "a positive integer"}
MIN_MEM_MB = 256  # below this no Python with torch starts; and Slurm reads --mem=0 as all of the node's memory
MEM_VALID = f"a number of GB of at least {MIN_MEM_MB / 1024:g}, e.g. 16"
SBATCH_WORD = re.compile(r"[A-Za-z0-9_.,:=+@%/-]+")  # partition, account, qos, gres: sbatch's own characters
SBATCH_OPTION = re.compile(r"[a-z][a-z0-9_-]*")


def minutes_example(text: str) -> str:
    """`e.g. N for H:MM:SS`, a time as sbatch's --time writes it, in whole minutes; else `e.g. 120`."""
    parts = text.split(":")
    if len(parts) == 3 and all(part.isdigit() for part in parts):
        seconds = int(parts[0]) * 3600 + int(parts[1]) * 60 + int(parts[2])
        return f"e.g. {max(1, -(-seconds // 60))} for {text}"
    return "e.g. 120"


def _text(where: str, key: str, value: Any) -> Any:
    """A text key's scalar as written (`account: 123`, `partition: 0123`, `comment: 1:20`, yamlread); a list
    or mapping is left to the key's own check, which names what is valid."""
    return read_text(where, key, value) if isinstance(value, (str, int, float, bool)) else value


def _sbatch_value(value: Any) -> Any:
    """An sbatch_extra value as written (`comment: 1:20` stays 1:20), or what YAML 1.1 reads as true/false
    (`exclusive: yes`), which the option's flag form reads."""
    if isinstance(value, WrittenText):
        return value.meaning if isinstance(value.meaning, bool) else str(value)
    return value


def _check_word(where: str, key: str, value: Any) -> None:
    if not isinstance(value, str) or not SBATCH_WORD.fullmatch(value):
        raise ConfigError(f"{where}: {key} = {value!r} is invalid; valid: one word of letters, digits and "
                          f"_ . , : = + @ % / - (e.g. {key}: main)")


def _check_line(where: str, key: str, value: Any, what: str) -> None:
    """One line of text: no newline or other control character can reach the job script."""
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        raise ConfigError(f"{where}: {key} = {value!r} is invalid; valid: {what} (a non-empty string without "
                          f"newlines or control characters)")


def _check_sbatch_extra(where: str, extra: Any) -> None:
    if not isinstance(extra, dict):
        raise ConfigError(f"{where}: sbatch_extra = {extra!r} is invalid; valid: a mapping of sbatch options to "
                          f"values, e.g. {{constraint: a100, exclusive: true}}")
    for option in extra:
        if not isinstance(option, str) or not SBATCH_OPTION.fullmatch(option):
            raise ConfigError(f"{where}: sbatch_extra key {option!r} is invalid; valid: an sbatch long option "
                              f"without its dashes, e.g. constraint")
    for option in extra:
        managed = managed_options(option)
        if managed:
            keys = sorted({MANAGED_SBATCH_OPTIONS[name] for name in managed} - {None})
            raise ConfigError(f"{where}: sbatch_extra key {option!r} is sbatch's "
                              f"{' or '.join('--' + name for name in managed)} (sbatch takes abbreviations and "
                              f"one-letter forms), which ptblm manages"
                              + (f" (set {' or '.join(keys)} instead)" if keys else "")
                              + "; valid: other sbatch options, e.g. constraint, exclusive, mail-type")
    for option, value in extra.items():
        if isinstance(value, bool):
            continue  # true: the bare flag (--exclusive); false: left out
        if isinstance(value, (int, float)):
            if value != value or value in (float("inf"), float("-inf")):
                raise ConfigError(f"{where}: sbatch_extra.{option} = {value!r} is invalid; valid: a finite number")
            continue
        _check_line(where, f"sbatch_extra.{option}", value, "a string, a number or true/false")


def managed_options(option: str) -> list[str]:
    """The managed sbatch options that sbatch may read `option` as: the option itself (`job_name` is
    --job-name too), its one-letter form, or any managed option it abbreviates (sbatch takes any unambiguous
    prefix of a long option: `arr` is --array, `partitio` --partition). [] when none."""
    spelled = option.replace("_", "-")
    if spelled in MANAGED_SBATCH_OPTIONS:
        return [spelled]
    if spelled in MANAGED_SBATCH_SHORT:
        return [MANAGED_SBATCH_SHORT[spelled]]
    return [name for name in MANAGED_SBATCH_OPTIONS if name.startswith(spelled)]


def slurm_mem(mem_gb: Any) -> str:
    """mem_gb as sbatch's --mem value ("1536MB"); ConfigError for a value that is no positive number of GB or
    rounds below MIN_MEM_MB (a tiny value would render as --mem=0MB: all of the node's memory)."""
    valid = MEM_VALID
    if isinstance(mem_gb, bool) or not isinstance(mem_gb, (int, float)) or not 0 < mem_gb < float("inf"):
        raise ConfigError(f"mem_gb = {mem_gb!r} is invalid; valid: {valid}")
    megabytes = int(mem_gb * 1024)
    if megabytes < MIN_MEM_MB:
        raise ConfigError(f"mem_gb = {mem_gb!r} is invalid (it is --mem={megabytes}MB); valid: {valid}")
    return f"{megabytes}MB"


def load_profile(name: str, clusters_dir: Path) -> ClusterProfile:
    path = Path(clusters_dir) / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in Path(clusters_dir).glob("*.yaml"))
        raise ConfigError(f"no cluster profile {name!r}: {path} does not exist; known: "
                          f"{', '.join(known) or f'none (no profiles in {clusters_dir}; see --clusters)'}")
    values = read_yaml_mapping(path, "a mapping of profile keys")
    return ClusterProfile.from_dict({"name": name, **values}, where=str(path))


def split_array(count: int, max_array_size: int) -> list[range]:
    """Chunks of task positions so that no array exceeds the cluster's MaxArraySize."""
    if max_array_size < 1:
        raise ValueError(f"max_array_size must be >= 1, got {max_array_size}")
    return [range(start, min(start + max_array_size, count)) for start in range(0, count, max_array_size)]
