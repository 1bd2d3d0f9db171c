"""The files ptblm writes outside run folders (the report's tables, figures, facts, samples and gradients; the
exports): through the run folder's writer (runfolder/files.py), so each is atomic (a reader, LaTeX included,
never sees half a file, and a failure leaves the previous one), never written through a symbolic link (the
rename replaces the link itself), and a failure (a full disk, a folder in the way) is one line naming the file.
"""
from __future__ import annotations

import io
from pathlib import Path

from .runfolder.files import atomic_write_bytes


def write_text(path: Path, text: str) -> Path:
    atomic_write_bytes(Path(path), text.encode())
    return Path(path)


def write_figure(figure, path: Path, **savefig) -> Path:
    """A matplotlib figure in the format of `path`'s suffix (pdf, png, ...)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=Path(path).suffix.lstrip("."), **savefig)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)
