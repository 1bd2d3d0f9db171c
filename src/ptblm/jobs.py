"""Experiments as data: jobs/<exp>.yaml -> validated, numbered RunConfigs.

A jobs file has three optional parts, merged in this order (later wins):
    jobs/defaults.yaml      the suite's shared defaults (seq_len 35, 20 epochs, emb 200, seed 1111)
    common: {...}           what every setting of this experiment shares
    settings: [{...}, ...]  one entry per setting, listing only what differs
    grid: {key: [v1, v2]}   optional sweep: the product of the values, appended after `settings`
    seeds: [1111, 1, 2]     optional: every setting once per seed
Settings are numbered from 0 in file order; that number is the Slurm array task id. With seeds, the file's
n settings are numbered 0..n-1 with the first seed, n..2n-1 with the second, and so on: the first seed's
block keeps the numbers (and, for the default seed 1111, the run names) the file had without `seeds:`.
`--set KEY=VALUE[,VALUE...]` (Overrides) goes over all of it; each further value repeats the block the same way.
An experiment holds at most MAX_SETTINGS; its name (the file's) must be a safe folder name, since it names
results/<exp>/.
"""
from __future__ import annotations

import dataclasses
import itertools
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import layout
from .config import MAX_SEED, ConfigError, RunConfig, convert_value, load_yaml, read_yaml_mapping
from .naming import each_once
from .wording import count
from .models.registry import ARCHITECTURES, readers_of
from .yamlread import WrittenText, read_int, read_text

DEFAULTS_FILE = "defaults.yaml"
MAX_SETTINGS = 1000  # per experiment: one Slurm array at Slurm's default MaxArraySize; split larger sweeps
# The experiment's name (its file's) names results/<exp>/: no dot first (no `..`, no hidden folder), no slash.
EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
TOP_LEVEL_KEYS = ("description", "common", "settings", "grid", "seeds")
JOBS_FILE_SHAPE = f"a mapping with keys {', '.join(TOP_LEVEL_KEYS)}"
ALL = "all"  # every jobs file but the examples (example-*) and the smoke test
NOT_IN_ALL = "the examples (example-*.yaml) and the smoke test (smoke.yaml)"


@dataclass(frozen=True)
class Setting:
    experiment: str
    index: int  # 0-based position in the jobs file = Slurm array task id
    config: RunConfig
    description: str = ""  # the experiment's, recorded in each run folder (report titles read it there)

    @property
    def run_name(self) -> str:
        return self.config.run_name()

    def run_dir(self, results_dir: Path) -> Path:
        return layout.run_dir(results_dir, self.experiment, self.run_name)


@dataclass(frozen=True)
class Experiment:
    name: str
    path: Path
    description: str
    settings: tuple[Setting, ...]
    overrides: tuple[str, ...] = ()  # the --set texts it was loaded with

    @property
    def where(self) -> str:
        """How an error names it: the jobs file, with the --set texts it was loaded with."""
        overridden = Overrides({}, None, self.overrides).describe()
        return f"{self.path} with {overridden}" if overridden else str(self.path)


@dataclass(frozen=True)
class Overrides:
    """`--set KEY=VALUE[,VALUE...]`: one value replaces the key in every setting (over the file's own), a
    comma list adds a grid axis; `seeds=` (or `seed=`) replaces the file's seeds."""

    values: dict[str, list]  # RunConfig key -> its typed values
    seeds: list[int] | None = None
    texts: tuple[str, ...] = ()

    def describe(self) -> str:
        return " ".join(f"--set {text}" for text in self.texts)


OVERRIDE_SHAPE = "valid: KEY=VALUE or KEY=VALUE,VALUE,... (e.g. --set num_epochs=40, --set seeds=1111,1,2)"


def _override_value(text: str, piece: str) -> Any:
    """One value as YAML reads it in a jobs file (40 is an int, 1e-3 a float, GRU a string)."""
    if not piece.strip():
        raise ConfigError(f"--set {text}: an empty value; {OVERRIDE_SHAPE}")
    return load_yaml(piece, f"--set {text}", lines=False)


def parse_overrides(texts: list[str]) -> Overrides:
    """--set texts -> typed Overrides; each error one line naming --set, the key and what is valid. Values
    are checked for their type here and, merged into each setting, like any jobs-file value."""
    fields = {f.name: f for f in dataclasses.fields(RunConfig)}
    values: dict[str, list] = {}
    seeds, first = None, {}
    for text in texts:
        key, equals, raw = text.partition("=")
        key = key.strip()
        if not equals or not key:
            raise ConfigError(f"--set {text}: expected KEY=VALUE; {OVERRIDE_SHAPE}")
        if key not in fields and key not in ("seeds", "seed"):
            raise ConfigError(f"--set {text}: unknown key {key!r}; valid keys: seeds, {', '.join(fields)}")
        name = "seeds" if key in ("seeds", "seed") else key
        if name in first:
            raise ConfigError(f"--set {text}: {name} is set a second time (first by --set {first[name]}); valid: "
                              f"each key once, with a comma list for several values")
        first[name] = text
        parsed = [_override_value(text, piece) for piece in raw.split(",")]
        if name == "seeds":
            seeds = check_seeds(f"--set {text}", parsed)
            continue
        typed = [convert_value(f"--set {text}", key, fields[key].type, value) for value in parsed]
        for i, value in enumerate(typed):
            if value in typed[:i]:
                raise ConfigError(f"--set {text}: {key} value {value!r} appears a second time; valid: distinct "
                                  f"values")
        values[key] = typed
    return Overrides(values, seeds, tuple(texts))


def jobs_file(experiment: str, jobs_dir: Path) -> Path:
    """`3.1` -> jobs/3.1.yaml; a path to a YAML file is taken as is."""
    candidate = Path(experiment)
    if candidate.suffix in (".yaml", ".yml"):
        if not candidate.is_file():
            raise ConfigError(f"{candidate}: no such jobs file; valid: a path to a YAML file, or the name of one "
                              f"in {jobs_dir} (e.g. 3.1)")
        return candidate
    path = Path(jobs_dir) / f"{experiment}.yaml"
    if not path.is_file() and candidate.is_dir():  # `ptblm status ../t0`: a run or results folder, not a name
        raise ConfigError(f"{experiment} is a folder, not an experiment: name experiments as in {jobs_dir} (e.g. "
                          f"3.1); their runs are read under --results, so for runs elsewhere pass the folder that "
                          f"holds <experiment>/<run>/ as --results")
    if not path.is_file():
        known = sorted(p.stem for p in Path(jobs_dir).glob("*.yaml") if p.name != DEFAULTS_FILE)
        raise ConfigError(f"no experiment {experiment!r}: {path} does not exist; "
                          f"known experiments: {', '.join(known) or 'none'}")
    return path


def experiment_names(names: list[str], jobs_dir: Path) -> list[str]:
    """The experiments a command names, `all` expanded to the study's jobs files (sorted; not NOT_IN_ALL);
    each once, in the order given (`3.1` and `jobs/3.1.yaml` are one: the first spelling is kept)."""
    study = sorted(p.stem for p in Path(jobs_dir).glob("*.yaml")
                   if p.name != DEFAULTS_FILE and p.stem != "smoke" and not p.stem.startswith("example"))
    if ALL in names and not study:
        found = ("does not exist" if not Path(jobs_dir).is_dir()
                 else f"holds no jobs file ({ALL} leaves out {NOT_IN_ALL})")
        raise ConfigError(f"{ALL}: the experiments folder {jobs_dir} {found}; valid: --jobs naming a folder of "
                          f"jobs files (default jobs/)")
    expanded = [part for name in names for part in (study if name == ALL else [name])]
    return each_once(expanded, key=lambda name: named_file(name, jobs_dir))


def named_file(experiment: str, jobs_dir: Path) -> Path:
    """The jobs file `experiment` names (as jobs_file finds it, whether it exists or not), resolved: how two
    spellings of one experiment are told to be one."""
    candidate = Path(experiment)
    return (candidate if candidate.suffix in (".yaml", ".yml") else Path(jobs_dir) / f"{experiment}.yaml").resolve()


def _expect_mapping(path: Path, key: str, value: Any) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {key} must be a mapping of setting keys to values, got {value!r}")
    return value


def grid_settings(path: Path, grid: dict[str, Any], listed: int = 0) -> list[dict[str, Any]]:
    """The product of the grid's value lists, in the order keys and values are written; its size is
    checked against MAX_SETTINGS (with the `listed` settings) before anything is expanded."""
    if not grid:
        return []
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: grid.{key} must be a non-empty list of values, got {values!r}")
    size = math.prod(len(values) for values in grid.values())
    if listed + size > MAX_SETTINGS:
        raise ConfigError(f"{path}: grid gives {' x '.join(str(len(v)) for v in grid.values())} = {size} settings"
                          f"{f' after {listed} listed ones' if listed else ''}; valid: at most {MAX_SETTINGS} "
                          f"settings per experiment (split the sweep into several jobs files)")
    keys = list(grid)
    return [dict(zip(keys, combination)) for combination in itertools.product(*(grid[k] for k in keys))]


def check_seeds(where: str, seeds: Any) -> list[int]:
    """A non-empty list of distinct seeds in torch's and numpy's range."""
    valid = f"valid: a non-empty list of distinct integers from 0 to {MAX_SEED}, e.g. [1111, 1, 2]"
    if not isinstance(seeds, list) or not seeds:
        raise ConfigError(f"{where}: seeds = {seeds!r} is invalid; {valid}")
    seeds = [read_int(where, f"seeds[{i}]", seed) if isinstance(seed, WrittenText) else seed  # 0777, +5
             for i, seed in enumerate(seeds)]
    for i, seed in enumerate(seeds):
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"{where}: seeds[{i}] = {seed!r} is invalid; {valid}")
        if seed in seeds[:i]:
            raise ConfigError(f"{where}: seeds[{i}] = {seed} appears a second time; {valid}")
    return seeds


def load_experiment(experiment: str, jobs_dir: Path, overrides: Overrides | None = None) -> Experiment:
    """Read, merge and validate every setting (with `overrides` on top); any error stops before anything runs."""
    path = jobs_file(experiment, jobs_dir)
    if not EXPERIMENT_NAME.fullmatch(path.stem):
        raise ConfigError(f"{path}: experiment name {path.stem!r} (the file's name) is invalid; valid: letters, "
                          f"digits, '.', '_' and '-', starting with a letter or digit (it names results/<exp>/)")
    if path.stem == ALL:
        raise ConfigError(f"{path}: experiment name {ALL!r} (the file's name) is the word that names every "
                          f"experiment at once (`ptblm submit {ALL}`, `make status EXP={ALL}`), so it cannot name "
                          f"this one alone; valid: any other name (rename the file)")
    if path.stem in layout.RESERVED_NAMES:
        raise ConfigError(f"{path}: experiment name {path.stem!r} (the file's name) is ptblm's own folder "
                          f"results/{path.stem}/; valid: any other name (not {', '.join(layout.RESERVED_NAMES)})")
    defaults_path = Path(jobs_dir) / DEFAULTS_FILE
    defaults = read_yaml_mapping(defaults_path, "a mapping of setting keys to values") \
        if defaults_path.is_file() else {}
    RunConfig.check_values(defaults, where=str(defaults_path))  # its mistakes named there, not in a setting
    content = read_yaml_mapping(path, JOBS_FILE_SHAPE)
    unknown = sorted(set(content) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {unknown[0]!r}; valid: {', '.join(TOP_LEVEL_KEYS)}")
    common = _expect_mapping(path, "common", content.get("common") or {})
    RunConfig.check_values(common, where=f"{path}, common")
    entries = content.get("settings") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: settings must be a list of mappings, got {type(entries).__name__}")
    if len(entries) > MAX_SETTINGS:
        raise ConfigError(f"{path}: settings lists {len(entries)} settings; valid: at most {MAX_SETTINGS} per "
                          f"experiment (split them into several jobs files)")
    entries = [_expect_mapping(path, f"settings[{i}]", e) for i, e in enumerate(entries)]
    entries += grid_settings(path, _expect_mapping(path, "grid", content.get("grid") or {}), len(entries))
    if not entries:
        raise ConfigError(f"{path}: no settings (add a `settings:` list or a `grid:`)")
    seeds = None
    if "seeds" in content:
        seeds = check_seeds(str(path), content["seeds"])
        if "seed" in common or any("seed" in entry for entry in entries):
            place = "common" if "seed" in common else f"setting {next(i for i, e in enumerate(entries) if 'seed' in e)}"
            raise ConfigError(f"{path}: {place} sets seed and the file has seeds:; valid: one of the two")
    overrides = overrides or Overrides({})
    seeds = overrides.seeds or seeds
    where = f"{path} with {overrides.describe()}" if overrides.texts else str(path)
    factors = [(len(entries), "setting"), *((len(v), f"{k} value") for k, v in overrides.values.items()
                                            if len(v) > 1), *([(len(seeds), "seed")] if seeds else [])]
    total = math.prod(number for number, _ in factors)
    if total > MAX_SETTINGS:
        raise ConfigError(f"{where}: {' x '.join(count(number, what) for number, what in factors)} = {total} settings; "
                          f"valid: at most {MAX_SETTINGS} settings per experiment (split the sweep into several "
                          f"jobs files)")
    axes = overrides.values
    combinations = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    # block by block: the file's settings, then again for each further --set combination, then for each seed
    entries = [{**entry, **combination, **({"seed": seed} if seed is not None else {})}
               for seed in (seeds or [None]) for combination in combinations for entry in entries]
    name = path.stem
    description = read_text(str(path), "description", content.get("description") or "")
    settings = tuple(Setting(name, i, RunConfig.from_dict({**defaults, **common, **entry},
                                                          where=f"{where}, setting {i}"), description)
                     for i, entry in enumerate(entries))
    seen: dict[str, int] = {}
    for setting in settings:
        if setting.run_name in seen:
            raise ConfigError(f"{where}: settings {seen[setting.run_name]} and {setting.index} are the same "
                              f"setting ({setting.run_name}); make them differ or remove one")
        seen[setting.run_name] = setting.index
    return Experiment(name=name, path=path, description=description, settings=settings,
                      overrides=overrides.texts)


def check_trains_distinct(experiment: Experiment) -> None:
    """What a submission runs trains distinct models: no two settings differ only in keys their architecture
    does not read (`--set n_heads=2,4` on an RNN: two runs, one training), and no --set key is read by none of
    them (`--set n_heads=4` on recurrent models would only rename every run). Asked of the settings --only
    picks, so that `--only 3,7 --set n_heads=2,4` sweeps the one Transformer of a mixed experiment."""
    settings = experiment.settings
    trained: dict[tuple, Setting] = {}
    for setting in settings:
        other = trained.setdefault(tuple(sorted(setting.config.trained_identity().items())), setting)
        if other is not setting:
            differ = [key for key in ARCHITECTURES[setting.config.model].unread
                      if getattr(other.config, key) != getattr(setting.config, key)]
            raise ConfigError(f"{experiment.where}: settings {other.index} and {setting.index} train the same "
                              f"model: they differ only in {', '.join(differ)}, which the {setting.config.model} "
                              f"does not read ({other.run_name}, {setting.run_name}); valid: settings that differ "
                              f"in what it reads (--only picks some)")
    models = sorted({setting.config.model for setting in settings}, key=list(ARCHITECTURES).index)
    for text in experiment.overrides:
        key = text.partition("=")[0].strip()
        if models and all(key in ARCHITECTURES[model].unread for model in models):
            raise ConfigError(f"--set {text}: no setting of {experiment.name} reads {key} (its models: "
                              f"{', '.join(models)}), so it would only rename the runs; valid: leave it out ("
                              f"{key} is read by {', '.join(readers_of(key))})")


def only_settings(experiment: Experiment, texts: list[str]) -> Experiment:
    """`--only 0,2 --only gru_adam_...`: the experiment with these settings alone (numbers, ranges like 0-3, or
    run names; each keeps its number). Anything else is refused naming what is valid."""
    if not texts:
        return experiment
    by_name = {setting.run_name: setting.index for setting in experiment.settings}
    last = len(experiment.settings) - 1
    chosen: set[int] = set()
    for text in texts:
        for piece in filter(None, (part.strip() for part in text.split(","))):
            span = re.fullmatch(r"(\d+)-(\d+)", piece)
            numbers = (range(int(span[1]), int(span[2]) + 1) if span else [int(piece)] if piece.isdigit()
                       else [by_name[piece]] if piece in by_name else None)
            if numbers is None or not numbers or not all(0 <= number <= last for number in numbers):
                names = list(by_name)
                shown = ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")
                raise ConfigError(f"--only {text}: {experiment.name} has no setting {piece!r}; valid: setting "
                                  f"numbers 0 to {last} (e.g. 0,2 or 0-{min(last, 3)}) or run names: {shown}")
            chosen.update(numbers)
    return dataclasses.replace(experiment, settings=tuple(s for s in experiment.settings if s.index in chosen))
