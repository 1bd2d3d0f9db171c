"""The files ptblm writes outside run folders (the report's tables, figures, facts, samples and gradients):
through the run folder's writer (runfolder/files.py), so each is atomic (a reader, LaTeX included, never sees
half a file, and a failure leaves the previous one), never written through a symbolic link (the rename replaces
the link itself). Each file's folder is made here, through layout.output_dir: a file in the way of a folder, a
folder in the way of a file or a place this user cannot write is one line naming the path, what is in the way,
and --out, the flag of every report command that chooses another report folder.
"""
from __future__ import annotations

import errno
import io
from pathlib import Path

from .layout import OutputFolderError, output_dir
from .runfolder.files import FULL, FileWriteError, atomic_write_bytes

FLAG = "--out"  # every report command's report folder (its default <results>/report follows --results)


def write_text(path: Path, text: str) -> Path:
    return write_bytes(Path(path), text.encode())


def write_figure(figure, path: Path, **savefig) -> Path:
    """A matplotlib figure in the format of `path`'s suffix (pdf, png, ...)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format=Path(path).suffix.lstrip("."), **savefig)
    return write_bytes(Path(path), buffer.getvalue())


def write_bytes(path: Path, data: bytes) -> Path:
    output_dir(path.parent, FLAG)
    try:
        atomic_write_bytes(path, data)
    except FileWriteError as error:
        if error.errno in (*FULL, errno.ELOOP):  # its own message says what to do
            raise
        if path.is_dir() and not path.is_symlink():
            raise OutputFolderError(f"{path} is a folder where ptblm writes a file: move it away, or choose another "
                                    f"folder with {FLAG}") from None
        raise OutputFolderError(f"{path}: cannot write it ({error.strerror}): make {path.parent} writable, or "
                                f"choose another folder with {FLAG}") from None
    return path
