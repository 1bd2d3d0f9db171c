"""LaTeX pieces shared by every snippet: escaping, booktabs tables, figures, the preamble, compiling.

Snippets are written to be `\\input` into report.tex (they carry no preamble); `PACKAGES` is the one
list of packages they need, used by report.tex and by the tests' minimal documents alike.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError

PACKAGES = ("booktabs", "graphicx", "caption", "float")
PLACEMENT = "H"  # float's "here, exactly": each table and figure stays in its section, never alone on a page
INSTALL_HINT = ("no LaTeX found (latexmk or pdflatex): install it, e.g. `apt-get install "
                "texlive-latex-recommended latexmk`, then rerun `make report`")

_SPECIAL = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
    "<": r"\textless{}", ">": r"\textgreater{}",  # the default OT1 font prints '<' as '¡'
}
# Characters pdflatex prints with the document's default (OT1) fonts: printable ASCII, most of Latin-1 and
# Latin Extended-A, and common punctuation; tests/test_report_text.py compiles every one of them.
_NOT_IN_OT1 = set("«»ÐÞðþĄąĐđĘęĦħĮįĸĿŀŉŊŋŦŧŲųſ")
PRINTABLE = frozenset({chr(code) for code in range(0x20, 0x7F)} | {chr(code) for code in range(0xA1, 0x180)}
                      | set("–—‘’“”…•€")) - _NOT_IN_OT1
UNPRINTABLE = "?"  # stands for a character pdflatex cannot print here (Greek, CJK, emoji, control characters)


class LatexError(UserError, RuntimeError):
    """The document did not compile; the message names the log and quotes its first error."""


def escape(text: str) -> str:
    """Any text (a description, a run or experiment name, a path, a corpus word) -> LaTeX that prints it on
    one line: the one function every text from outside the code goes through. Whitespace runs (blank lines,
    tabs, newlines) become one space, as a paragraph break in a title or caption is an error; special
    characters are escaped in one pass (nothing twice); characters the fonts lack become their ASCII
    letters (ſ -> s) or UNPRINTABLE, since one unknown character stops the whole PDF."""
    return "".join(_SPECIAL.get(character) or printable(character)
                   for character in re.sub(r"\s+", " ", str(text)))


def path(text: str) -> str:
    """A path as escape() sets it, breakable after each '/': a long results path in \\texttt never runs off
    the page."""
    return escape(text).replace("/", "/\\allowbreak{}")


def printable(character: str) -> str:
    """The character when pdflatex prints it here, else its ASCII decomposition (ﬁ -> fi), else UNPRINTABLE."""
    if character in PRINTABLE:
        return character
    ascii_form = unicodedata.normalize("NFKD", character).encode("ascii", "ignore").decode()
    return ascii_form if ascii_form and all(c in PRINTABLE for c in ascii_form) else UNPRINTABLE


def number(text: str) -> str:
    """A formatted number, '1e+08' (Python's scientific notation) set as $1\\times10^{8}$."""
    match = re.fullmatch(r"(-?[\d.]+)e([+-]\d+)", text)
    if not match:
        return escape(text)
    mantissa, exponent = match.group(1), int(match.group(2))
    return f"${mantissa}\\times10^{{{exponent}}}$" if mantissa != "1" else f"$10^{{{exponent}}}$"


def bold(cell: str) -> str:
    return f"\\textbf{{{cell}}}"


@dataclass
class Table:
    """A booktabs tabular: header rows (already LaTeX), body rows, and a \\midrule before each group."""

    columns: str  # e.g. "rll" + "r" * 5
    header: list[str]  # LaTeX lines of the header, each ending without '\\'
    rows: list[list[str]]
    group_starts: set[int] = field(default_factory=set)  # body row indices that begin a new group

    def tabular(self) -> str:
        lines = [f"\\begin{{tabular}}{{{self.columns}}}", "\\toprule"]
        lines += [f"{line} \\\\" for line in self.header]
        lines.append("\\midrule")
        for index, row in enumerate(self.rows):
            if index in self.group_starts and index > 0:
                lines.append("\\midrule")
            lines.append(" & ".join(row) + " \\\\")
        lines += ["\\bottomrule", "\\end{tabular}"]
        return "\n".join(lines)


def table_float(table: Table, caption: str, label: str, column_gap_pt: float | None = None) -> str:
    """A `table` float; a table wider than the text is scaled down to its width (never up).

    column_gap_pt narrows \\tabcolsep (LaTeX's default: 6 pt) for wide tables, so less scaling shrinks the text.
    """
    body = f"\\resizebox{{\\ifdim\\width>\\linewidth\\linewidth\\else\\width\\fi}}{{!}}{{%\n{table.tabular()}}}"
    gap = [] if column_gap_pt is None else [f"\\setlength{{\\tabcolsep}}{{{column_gap_pt:g}pt}}"]
    return "\n".join([f"\\begin{{table}}[{PLACEMENT}]", "\\centering", *gap, f"\\caption{{{caption}}}",
                      f"\\label{{{label}}}", body, "\\end{table}", ""])


def figure_float(graphic: str, caption: str, label: str) -> str:
    """A `figure` float including `graphic` (relative to report.tex, no extension) at the size it was drawn."""
    return "\n".join([f"\\begin{{figure}}[{PLACEMENT}]", "\\centering", f"\\includegraphics{{{graphic}}}",
                      f"\\caption{{{caption}}}", f"\\label{{{label}}}", "\\end{figure}", ""])


def document(body: str, title: str = "", packages: tuple[str, ...] = PACKAGES) -> str:
    """A complete article around `body`: report.tex and the tests' compile checks share it."""
    lines = ["\\documentclass[10pt]{article}", "\\usepackage[margin=2cm]{geometry}"]
    lines += [f"\\usepackage{{{package}}}" for package in packages]
    if title:
        lines += [f"\\title{{{title}}}", "\\date{\\today}"]
    lines += ["\\begin{document}"] + (["\\maketitle"] if title else []) + [body, "\\end{document}", ""]
    return "\n".join(lines)


def latex_engine() -> list[str] | None:
    """The command that builds a PDF here: latexmk when present, else pdflatex, else None. Errors are
    reported as 'file:line: message' (-file-line-error), so the message can name where the problem is."""
    options = ["-interaction=nonstopmode", "-halt-on-error", "-file-line-error"]
    if shutil.which("latexmk"):
        return ["latexmk", "-pdf", *options]
    if shutil.which("pdflatex"):
        return ["pdflatex", *options]
    return None


BUILD_STATE = (".fdb_latexmk", ".aux")  # what a failed build leaves that would make the next one skip or fail


def compile_pdf(tex_path: Path, timeout: float = 300) -> Path:
    """Build tex_path's PDF beside it (pdflatex runs twice for references); raise LatexError on failure.

    A failed build removes latexmk's record of it and the half-written .aux, so that the next build runs
    LaTeX again (instead of latexmk's "Nothing to do") and shows the error again while it is there."""
    tex_path = Path(tex_path)
    engine = latex_engine()
    if engine is None:
        raise LatexError(INSTALL_HINT)
    runs = 1 if engine[0] == "latexmk" else 2
    try:
        for _ in range(runs):
            result = subprocess.run([*engine, tex_path.name], cwd=tex_path.parent, capture_output=True, text=True,
                                    errors="replace", stdin=subprocess.DEVNULL, timeout=timeout)  # TeX logs: bytes
            if result.returncode != 0:
                raise LatexError(build_error(tex_path, engine[0], result.stdout))
    except subprocess.TimeoutExpired:
        forget_build(tex_path)
        raise LatexError(f"{engine[0]} did not finish {tex_path} within {timeout:g} s (see "
                         f"{tex_path.with_suffix('.log')})") from None
    except LatexError:
        forget_build(tex_path)
        raise
    return tex_path.with_suffix(".pdf")


def forget_build(tex_path: Path) -> None:
    for suffix in BUILD_STATE:
        tex_path.with_suffix(suffix).unlink(missing_ok=True)


def build_error(tex_path: Path, engine: str, output: str) -> str:
    """'<engine> failed on report.tex: tables/exp-3_1.tex line 4: Paragraph ended before ...' and the
    source line LaTeX quotes, read from the log (the engine's output when there is no log)."""
    log_path = tex_path.with_suffix(".log")
    log = log_path.read_text(errors="replace") if log_path.is_file() else output
    return f"{engine} failed on {tex_path} (log: {log_path}):\n{first_error(log, tex_path.parent)}"


_FILE_LINE_ERROR = re.compile(r"^(?P<file>[^\s:][^:]*\.(?:tex|sty|cls|def)):(?P<line>\d+): (?P<message>.*)$")


def first_error(log: str, folder: Path | None = None, context: int = 6) -> str:
    """The first error of a LaTeX log as '<file> line <n>: <message>' and the lines after it (up to the
    'l.<n>' line quoting the source); a file of `folder` is named by its full path. Without a file-line
    error: the first '! ...' error, else the last lines."""
    lines = log.splitlines()
    for index, line in enumerate(lines):
        match = _FILE_LINE_ERROR.match(line)
        if match:
            path = Path(match["file"])
            if folder is not None and not path.is_absolute():
                path = Path(folder) / path
            quoted = next((i for i in range(index + 1, min(index + 1 + 2 * context, len(lines)))
                           if lines[i].startswith("l.")), index + context - 1)
            after = [line.rstrip() for line in lines[index + 1:quoted + 2] if line.strip()]
            return "\n".join([f"{path} line {match['line']}: {match['message']}", *after])
    for index, line in enumerate(lines):
        if line.startswith("!"):
            return "\n".join(lines[index:index + context])
    return "\n".join(lines[-context:])
