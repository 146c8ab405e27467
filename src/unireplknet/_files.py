"""What a path is, before anything opens it: only regular files are read (torch-free, imports nothing).

A FIFO (named pipe) blocks a reader until some writer comes, a character device such as ``/dev/zero`` never
ends, a folder is no file. Every reader of user files — checkpoints, images, audio, videos, point clouds,
CSV/array files — and the command line's input check ask here first (re-exported by
:mod:`unireplknet.checkpoint`).
"""
from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Union

__all__ = ["NotARegularFileError", "file_type_name", "not_a_regular_file", "require_regular_file"]

PathLike = Union[str, "os.PathLike[str]"]


class NotARegularFileError(OSError):
    """An input path that is no regular file (a FIFO, a device, a socket, a folder): never opened."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not a regular file"


def file_type_name(path: PathLike) -> str:
    """What ``path`` is, in words ("a regular file", "a FIFO (named pipe)", "a folder", …), following links."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing"
    for test, name in ((stat.S_ISREG, "a regular file"), (stat.S_ISDIR, "a folder"),
                       (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def not_a_regular_file(path: PathLike, what: str = "input file") -> str:
    """The message for a ``path`` that is no regular file: it does not exist, or what it is instead."""
    kind = file_type_name(path)
    if kind == "missing":
        return f"{what} {path} does not exist; check the path"
    return (f"{what} {path} is not a file but {kind}; only regular files are read (a pipe or a device could "
            "block forever) — pass the file itself")


def require_regular_file(path: PathLike, what: str = "input file") -> Path:
    """Refuse an input that is not a regular file, saying what it is: reading a FIFO blocks forever and a device
    never ends. Every reader of user files (checkpoints, images, audio, videos, clouds, CSVs) calls this first.

    Raises:
        FileNotFoundError: the path does not exist.
        NotARegularFileError: it is a FIFO, a device, a socket or a folder (an ``OSError``, so readers that skip
            unreadable files skip it too).
    """
    kind = file_type_name(path)
    if kind == "missing":
        raise FileNotFoundError(not_a_regular_file(path, what))
    if kind != "a regular file":
        raise NotARegularFileError(not_a_regular_file(path, what))
    return Path(path)
