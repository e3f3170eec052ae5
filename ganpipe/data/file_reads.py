"""Reading one input file safely: regular files only, never more than a limit.

A source may list things that are not files at all: a FIFO named ``pipe.png`` (reading it
blocks forever), a link to ``/dev/zero`` (endless, and a device reports size 0, so a size check
from the listing passes), a socket, a directory named like an image. Their kind is decided
from ``stat`` before anything is opened, checked again on the open descriptor (the path may
have been swapped meanwhile), and every read stops at the limit whatever the listing said.
"""

from __future__ import annotations

import os
import stat

_KINDS = (
    (stat.S_ISDIR, "directory"),
    (stat.S_ISFIFO, "FIFO (named pipe)"),
    (stat.S_ISSOCK, "socket"),
    (stat.S_ISCHR, "character device"),
    (stat.S_ISBLK, "block device"),
)


class NotRegularFile(OSError):
    """The path is not a regular file; ``kind`` says what it is."""

    def __init__(self, path: str, kind: str):
        super().__init__(f"{path} is a {kind}, not a regular file")
        self.kind = kind


def special_kind(mode: int) -> str | None:
    """What a ``st_mode`` is when it is not a regular file (None: a regular file)."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return None if stat.S_ISREG(mode) else "special file"


def read_local(path: str, limit: int | None = None) -> bytes:
    """Up to ``limit`` bytes of the regular file at ``path`` (links followed)."""
    kind = special_kind(os.stat(path).st_mode)  # decided before opening
    if kind:
        raise NotRegularFile(path, kind)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    fd = os.open(path, flags)
    try:
        kind = special_kind(os.fstat(fd).st_mode)  # the same check on what was opened
        if kind:
            raise NotRegularFile(path, kind)
        os.set_blocking(fd, True)
        chunks, left = [], limit
        while left is None or left > 0:
            chunk = os.read(fd, 1 << 20 if left is None else min(1 << 20, left))
            if not chunk:
                break
            chunks.append(chunk)
            left = None if left is None else left - len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


class BoundedReader:
    """A source item's ``read``: ``read()`` the whole file, ``read(limit=n)`` at most ``n``
    bytes. Local paths go through ``read_local``; other filesystems hold only objects and
    folders, and read through fsspec within the limit."""

    accepts_limit = True

    def __init__(self, fs, path: str, local: bool):
        self.fs, self.path, self.local = fs, path, local

    def __call__(self, limit: int | None = None) -> bytes:
        if self.local:
            return read_local(self.path, limit)
        if limit is None:
            return self.fs.cat_file(self.path)
        with self.fs.open(self.path, "rb") as fh:
            return fh.read(limit)
