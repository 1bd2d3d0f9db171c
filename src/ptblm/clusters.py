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


# sbatch's long options, as its option table holds them (Slurm 22.05, the dev cluster's; tests/test_slurm.py
# checks it against the installed sbatch, whose --help leaves some out). Both submit paths pass a key of
# sbatch_extra as `--KEY`, and sbatch (getopt_long) reads that as the option of exactly that name, else as the one
# option the key begins, and refuses a key that begins several as ambiguous: `m` is --m, not sbatch's -m.
SBATCH_LONG_OPTIONS = (
    "account", "acctg-freq", "array", "batch", "bb", "bbf", "begin", "chdir", "cluster", "cluster-constraint",
    "clusters", "comment", "constraint", "container", "context", "contiguous", "core-spec", "cores-per-socket",
    "cpu-freq", "cpus-per-gpu", "cpus-per-task", "deadline", "delay-boot", "dependency", "distribution", "error",
    "exclude", "exclusive", "export", "export-file", "extra-node-info", "get-user-env", "gid", "gpu-bind",
    "gpu-freq", "gpus", "gpus-per-node", "gpus-per-socket", "gpus-per-task", "gres", "gres-flags", "help", "hint",
    "hold", "ignore-pbs", "input", "job-name", "kill-on-invalid-dep", "licenses", "mail-type", "mail-user",
    "mcs-label", "mem", "mem-bind", "mem-per-cpu", "mem-per-gpu", "mincpus", "network", "nice", "no-kill",
    "no-requeue", "nodefile", "nodelist", "nodes", "ntasks", "ntasks-per-core", "ntasks-per-gpu", "ntasks-per-node",
    "ntasks-per-socket", "ntasks-per-tres", "open-mode", "output", "overcommit", "oversubscribe", "parsable",
    "partition", "power", "prefer", "priority", "profile", "propagate", "qos", "quiet", "reboot", "requeue",
    "reservation", "signal", "sockets-per-node", "spread-job", "switches", "tasks-per-node", "test-only",
    "thread-spec", "threads-per-core", "time", "time-min", "tmp", "uid", "usage", "use-min-nodes", "verbose",
    "version", "wait", "wait-all-nodes", "wckey", "wrap",
)
NEWER_SBATCH_OPTIONS = ("tres-per-task",)  # later Slurm releases' options that ptblm must refuse too

# The options sbatch_extra must not hold, each with the profile key that sets it (None: none does) and why. First
# those ptblm writes itself (launch/slurm.py scheduler_parameters, launch/sbatch.py sbatch_argv, submitit's
# script, slurm/array.sbatch): sbatch_extra comes last and would win. Then those that break a submission or what
# ptblm knows of its tasks.
MANAGED = "which ptblm sets itself"
SAME_GPUS = "ptblm counts a task's GPUs from gpus_per_node or gres (runs_per_gpu, the GPU check, the cost table)"
ONE_TASK = "each task of the array is one process (ptblm's runs_per_gpu packs settings)"
NOT_SUBMITTED = "with which sbatch prints and submits nothing"
REFUSED_SBATCH_OPTIONS: dict[str, tuple[str | None, str]] = {
    "partition": ("partition", MANAGED), "account": ("account", MANAGED), "qos": ("qos", MANAGED),
    "gres": ("gres", MANAGED), "gpus-per-node": ("gpus_per_node", MANAGED), "gpus": ("gpus_per_node", MANAGED),
    "cpus-per-task": ("cpus_per_task", MANAGED), "mem": ("mem_gb", MANAGED), "time": ("time_min", MANAGED),
    "array": ("array_parallelism", MANAGED), "job-name": (None, MANAGED), "output": (None, MANAGED),
    "error": (None, MANAGED), "export": (None, MANAGED), "chdir": (None, MANAGED), "requeue": (None, MANAGED),
    "no-requeue": (None, MANAGED), "open-mode": (None, MANAGED), "signal": (None, MANAGED),
    "hold": (None, MANAGED), "nodes": (None, MANAGED), "ntasks": (None, MANAGED), "ntasks-per-node": (None, MANAGED),
    "tasks-per-node": (None, MANAGED), "wrap": (None, MANAGED), "parsable": (None, MANAGED),
    "test-only": (None, MANAGED),
    "mem-per-cpu": ("mem_gb", "which sbatch refuses beside the --mem that ptblm sets"),
    "mem-per-gpu": ("mem_gb", "which sbatch refuses beside the --mem that ptblm sets"),
    "cpus-per-gpu": ("cpus_per_task", "which sbatch refuses beside the --cpus-per-task that ptblm sets"),
    "gpus-per-task": ("gpus_per_node or gres", f"which asks for GPUs otherwise, and {SAME_GPUS}"),
    "gpus-per-socket": ("gpus_per_node or gres", f"which asks for GPUs otherwise, and {SAME_GPUS}"),
    "tres-per-task": ("gpus_per_node or gres", f"which may ask for GPUs otherwise, and {SAME_GPUS}"),
    "ntasks-per-gpu": (None, f"which starts several processes per task, and {ONE_TASK}"),
    "ntasks-per-tres": (None, f"which starts several processes per task, and {ONE_TASK}"),
    "wait": (None, "which makes sbatch wait for the array to end, and ptblm releases the held array only after "
                   "sbatch returns"),
    "clusters": (None, "which sends the array to another cluster, where ptblm's squeue and scontrol do not look"),
    "cluster": (None, "which sends the array to another cluster, where ptblm's squeue and scontrol do not look"),
    "help": (None, NOT_SUBMITTED), "usage": (None, NOT_SUBMITTED), "version": (None, NOT_SUBMITTED),
}
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
        why = refused_option(option)
        if why:
            raise ConfigError(f"{where}: sbatch_extra key {option!r} is invalid: {why}; valid: other sbatch long "
                              f"options, spelled out, e.g. constraint, exclusive, mail-type")
    for option, value in extra.items():
        if isinstance(value, bool):
            continue  # true: the bare flag (--exclusive); false: left out
        if isinstance(value, (int, float)):
            if value != value or value in (float("inf"), float("-inf")):
                raise ConfigError(f"{where}: sbatch_extra.{option} = {value!r} is invalid; valid: a finite number")
            continue
        _check_line(where, f"sbatch_extra.{option}", value, "a string, a number or true/false")


def sbatch_reads(option: str) -> list[str]:
    """The sbatch long options that sbatch may read `option` as, passed as a long option (as the keys of
    sbatch_extra are): the
    option of that very name (`job_name` is --job-name too), else each option it begins (one: sbatch takes the
    abbreviation; several: sbatch refuses it as ambiguous). [] for an option sbatch's table lacks (a plugin's, or
    a later Slurm's: left to sbatch)."""
    spelled = option.replace("_", "-")
    known = (*SBATCH_LONG_OPTIONS, *NEWER_SBATCH_OPTIONS)
    if spelled in known:
        return [spelled]
    return [name for name in known if name.startswith(spelled)]


def refused_option(option: str) -> str | None:
    """Why sbatch_extra may not hold `option` (an option of REFUSED_SBATCH_OPTIONS, or an abbreviation sbatch
    refuses as ambiguous), or None."""
    read = sbatch_reads(option)
    if len(read) > 1:
        return (f"sbatch reads it as --{option.replace('_', '-')}, which begins several of its options "
                f"({', '.join('--' + name for name in read)}) and which it refuses as ambiguous")
    if not read or read[0] not in REFUSED_SBATCH_OPTIONS:
        return None
    key, why = REFUSED_SBATCH_OPTIONS[read[0]]
    what = f"it is sbatch's --{read[0]}" if read[0] == option else f"sbatch reads it as --{read[0]}"
    return f"{what}, {why}" + (f"; set {key} instead" if key else "")


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
