"""LaTeX pieces shared by every snippet: escaping, booktabs tables, figures, the preamble, compiling.

Snippets are written to be `\\input` into report.tex (they carry no preamble); `PACKAGES` is the one
list of packages they need, used by report.tex and by the tests' minimal documents alike.
"""
from __future__ import annotations

import re
import shutil
import subprocess
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
_SPECIAL_PATTERN = re.compile("|".join(re.escape(character) for character in _SPECIAL))


class LatexError(UserError, RuntimeError):
    """The document did not compile; the message names the log and quotes its first error."""


def escape(text: str) -> str:
    """Plain text -> LaTeX text that prints the same characters (one pass, so nothing is escaped twice)."""
    return _SPECIAL_PATTERN.sub(lambda match: _SPECIAL[match.group()], str(text))


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
    """The command that builds a PDF here: latexmk when present, else pdflatex, else None."""
    if shutil.which("latexmk"):
        return ["latexmk", "-pdf", "-interaction=nonstopmode", "-halt-on-error"]
    if shutil.which("pdflatex"):
        return ["pdflatex", "-interaction=nonstopmode", "-halt-on-error"]
    return None


def compile_pdf(tex_path: Path, timeout: float = 300) -> Path:
    """Build tex_path's PDF beside it (pdflatex runs twice for references); raise LatexError on failure."""
    tex_path = Path(tex_path)
    engine = latex_engine()
    if engine is None:
        raise LatexError(INSTALL_HINT)
    runs = 1 if engine[0] == "latexmk" else 2
    for _ in range(runs):
        result = subprocess.run([*engine, tex_path.name], cwd=tex_path.parent, capture_output=True, text=True,
                                timeout=timeout)
        if result.returncode != 0:
            log_path = tex_path.with_suffix(".log")
            raise LatexError(f"{engine[0]} failed on {tex_path} (see {log_path}):\n{first_error(result.stdout)}")
    return tex_path.with_suffix(".pdf")


def first_error(output: str, context: int = 6) -> str:
    """The first '! ...' error of a LaTeX log and the lines after it (where the problem is)."""
    lines = output.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("!"):
            return "\n".join(lines[index:index + context])
    return "\n".join(lines[-context:])
