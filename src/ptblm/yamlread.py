"""YAML as ptblm reads it everywhere (jobs files, defaults.yaml, cluster profiles, --set values), and the typed
readers that turn what it read into a key's value.

YAML 1.1 reads a plain `123`, `0123`, `1:20`, `1.50`, `on` or `True` as a number or a boolean before anyone knows
which key it belongs to, and a text key (an account, a partition, a model) then gets a value its writer never
meant: 0123 is octal 83, 1:20 is 80, on is true. So the loader keeps every such scalar whose Python value would
not print back as written as WrittenText, the text as written with what YAML 1.1 reads it as (`meaning`; None
for a number in a base other than 10, which ptblm never reads as one). The readers decide by the key's type:
a text key takes the text as written, a number or yes/no key its meaning, or one line saying what is valid.
A syntax error is one line naming the file (or the --set text), the line and column, and the problem.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

DECIMAL_INTEGER = re.compile(r"[-+]?(0|[1-9][0-9]*)")
DECIMAL_FLOAT = re.compile(r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?")
YAML_NON_FINITE = re.compile(r"[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")  # refused later, with the key's range


def decimal_number(text: str) -> float | None:
    """The one reading of a written float (a jobs file, --set, a flag, a quoted value): decimal only, or None."""
    return float(text) if DECIMAL_FLOAT.fullmatch(text) else None


def decimal_integer(text: str) -> int | None:
    """The one reading of a written integer (a jobs file, --set, a flag): decimal only, or None."""
    return int(text) if DECIMAL_INTEGER.fullmatch(text) else None


class WrittenText(str):
    """A plain scalar that YAML 1.1 reads as a number or a boolean but whose Python value would not print back
    as written (`0123`, `1:20`, `+5`, `1.50`, `.inf`, `on`, `True`): the text, with `meaning`, what YAML 1.1
    reads (None: a number in another base than 10), and `line`, where it stands (None in a --set value)."""

    meaning: int | float | bool | None
    line: int | None

    def __new__(cls, text: str, meaning: int | float | bool | None, line: int | None) -> WrittenText:
        written = super().__new__(cls, text)
        written.meaning, written.line = meaning, line
        return written


def not_decimal_message(text: str, kind: type, valid: str = "") -> str:
    """Why `text` is no number here, and the decimal spelling of what YAML 1.1 would have read (or `valid`)."""
    digits = text.replace("_", "")
    if kind is int:
        example = str(int(digits)) if re.fullmatch(r"[-+]?[0-9]+", digits) else "32"
        return (f"{text} is not a decimal integer (YAML 1.1 reads a leading 0 as octal, 0x as hex, 1:20 as base 60, "
                f"1_000 as 1000); valid: {valid or f'decimal digits without a leading zero, e.g. {example}'}")
    example = digits if DECIMAL_FLOAT.fullmatch(digits) else "0.001"
    return (f"{text} is not a decimal number (YAML 1.1 reads 1:30.5 as base 60, 1_000.5 as 1000.5); valid: "
            f"{valid or f'decimal digits with an optional point and exponent, e.g. {example} or 1e-3'}")


def _type(value: Any) -> str:
    return "str" if isinstance(value, str) else type(value).__name__


def _at(where: str, value: Any) -> str:
    line = getattr(value, "line", None)
    return f"{where}, line {line}" if line else where


def read_text(where: str, key: str, value: Any) -> str:
    """A text key's value as its writer wrote it: a string; a number or boolean that YAML read (`account: 123`,
    `partition: 0123`, `compile: true`), as written. Anything else (a list, a mapping, nothing) is refused."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):  # only `true` and `false` are read as booleans; True, on, yes are WrittenText
        return "true" if value else "false"
    if isinstance(value, (int, float)):  # prints back as written (else it would be WrittenText)
        return repr(value)
    if value is None:
        raise ConfigError(f"{where}: {key} is empty (YAML reads an empty value, ~ and null as nothing); valid: a "
                          f"text (quoted, e.g. {key}: \"null\", where YAML would read it otherwise)")
    raise ConfigError(f"{where}: {key} = {value!r} has type {_type(value)}; expected str")


def read_int(where: str, key: str, value: Any, valid: str = "") -> int:
    """A whole-number key's value: an integer, or a WrittenText YAML read as a decimal one (`+5`)."""
    if isinstance(value, WrittenText):
        if isinstance(value.meaning, int) and not isinstance(value.meaning, bool):
            return value.meaning
        if value.meaning is None or isinstance(value.meaning, float):
            raise ConfigError(f"{_at(where, value)}: {key} = {not_decimal_message(value, int, valid)}")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{_at(where, value)}: {key} = {value!r} "
                          + (f"is invalid; valid: {valid}" if valid else f"has type {_type(value)}; expected int"))
    return value


def read_float(where: str, key: str, value: Any, valid: str = "") -> float:
    """A number key's value: a number, a WrittenText YAML read as one (`1.50`, `.inf`: the key's range refuses
    it), or a string of decimal digits (YAML 1.1 reads 1e-3, without a point, as a string)."""
    if isinstance(value, WrittenText):
        if isinstance(value.meaning, (int, float)) and not isinstance(value.meaning, bool):
            return float(value.meaning)
        if value.meaning is None:
            raise ConfigError(f"{_at(where, value)}: {key} = {not_decimal_message(value, float, valid)}")
    if isinstance(value, str):
        number = decimal_number(value.strip())
        if number is not None:
            return number
        if re.fullmatch(r"[-+0-9_.:eE]+", value.strip()) and re.search("[0-9]", value):
            raise ConfigError(f"{_at(where, value)}: {key} = {not_decimal_message(value, float, valid)}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{_at(where, value)}: {key} = {value!r} "
                          + (f"is invalid; valid: {valid}" if valid else f"has type {_type(value)}; expected float"))
    return float(value)


def read_bool(where: str, key: str, value: Any) -> bool:
    """A yes/no key's value: true or false, or what YAML 1.1 reads as one (yes, no, on, off, True, ...)."""
    if isinstance(value, WrittenText) and isinstance(value.meaning, bool):
        return value.meaning
    if not isinstance(value, bool):
        raise ConfigError(f"{_at(where, value)}: {key} = {value!r} has type {_type(value)}; expected bool")
    return value


class _DuplicateKey(yaml.YAMLError):
    def __init__(self, key: Any, line: int, first_line: int):
        super().__init__(f"line {line}: key {key!r} appears a second time (first on line {first_line}); "
                         f"valid: each key once per mapping (merge the two)")


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing a key written twice in one mapping (PyYAML keeps the last one silently), and
    keeping as WrittenText each number or boolean that would not print back as written (see the module)."""

    def __init__(self, stream: str, lines: bool):
        super().__init__(stream)
        self.lines = lines

    def _written(self, node: yaml.ScalarNode, meaning: Any) -> WrittenText:
        return WrittenText(node.value, meaning, node.start_mark.line + 1 if self.lines else None)

    def construct_decimal_int(self, node: yaml.ScalarNode) -> int | WrittenText:
        value = decimal_integer(node.value)
        return value if value is not None and str(value) == node.value else self._written(node, value)

    def construct_decimal_float(self, node: yaml.ScalarNode) -> float | WrittenText:
        if YAML_NON_FINITE.fullmatch(node.value):
            return self._written(node, self.construct_yaml_float(node))
        value = decimal_number(node.value)
        return value if value is not None and repr(value) == node.value else self._written(node, value)

    def construct_written_bool(self, node: yaml.ScalarNode) -> bool | WrittenText:
        value = self.construct_yaml_bool(node)
        return value if node.value in ("true", "false") else self._written(node, value)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        first_lines: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                if key in first_lines:
                    raise _DuplicateKey(key, key_node.start_mark.line + 1, first_lines[key])
                first_lines[key] = key_node.start_mark.line + 1
            except TypeError:  # an unhashable key: the base class names it
                pass
        return super().construct_mapping(node, deep=deep)


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_decimal_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _Loader.construct_decimal_float)
_Loader.add_constructor("tag:yaml.org,2002:bool", _Loader.construct_written_bool)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)  # no key is a date


def syntax_error(error: yaml.YAMLError, where: str, text: str, lines: bool = True) -> str:
    """One line for a YAML error: `where`, the line and column (a --set value: the column), the problem, and
    what YAML was in the middle of when the construct it reports started elsewhere."""
    end = "the end of the file" if lines else "the end of the value"

    def place(mark) -> str:
        return f"line {mark.line + 1}, column {mark.column + 1}" if lines else f"column {mark.column + 1} of the value"

    if isinstance(error, yaml.reader.ReaderError):
        line = text.count("\n", 0, error.position) + 1
        column = error.position - (text.rfind("\n", 0, error.position) + 1) + 1
        at = f"line {line}, column {column}" if lines else f"column {column} of the value"
        return (f"{where}, {at}: character #x{error.character:04x} is not allowed in YAML; valid: printable "
                f"characters, tabs and newlines")
    if not isinstance(error, yaml.MarkedYAMLError):
        return f"{where}: not valid YAML: {str(error).splitlines()[0]}"
    mark = error.problem_mark or error.context_mark
    problem = (error.problem or error.context or "not valid YAML").replace("'<stream end>'", end)
    if "'\\t'" in problem:
        problem += " (a tab: YAML indents with spaces only)"
    context = ""
    if error.context and error.problem and error.context_mark is not None and (
            error.context_mark.line, error.context_mark.column) != (mark.line, mark.column):
        context = f", {error.context} from {place(error.context_mark)}"
    return f"{where}, {place(mark)}: {problem}{context}" if mark is not None else f"{where}: {problem}{context}"


def load_yaml(text: str, where: str, lines: bool = True) -> Any:
    """YAML text as this project reads it everywhere (jobs files, profiles, --set values): the safe loader,
    no anchors or aliases, each key once, numbers and booleans kept as written where YAML 1.1 would change
    them (WrittenText). Every error is one line naming `where` (and, with `lines`, the line)."""
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):  # events only: aliases are not expanded here
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                raise ConfigError(f"{where}, line {event.start_mark.line + 1}: YAML anchors and aliases (&name, "
                                  f"*name, <<) are not allowed; valid: each value written out")
        loader = _Loader(text, lines)
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except _DuplicateKey as error:
        raise ConfigError(f"{where}, {error}") from None
    except yaml.YAMLError as error:
        raise ConfigError(syntax_error(error, where, text, lines)) from None


def read_yaml_mapping(path: Path, expected: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping (an empty file is an empty one); `expected` says what kind.

    Anchors and aliases are refused before anything is built (a few lines of aliases expand to billions of
    values), and so is a key written twice in one mapping.
    """
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text (byte {error.start}); valid: a YAML file saved as UTF-8") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read it ({error.strerror}); valid: a readable YAML file") from None
    content = load_yaml(text, str(path)) or {}
    if not isinstance(content, dict):
        raise ConfigError(f"{path}: expected {expected}, got {type(content).__name__}")
    return content
