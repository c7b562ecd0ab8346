"""Files of a run directory: atomic writes (a reader never sees half a file) and cheap reads of a file's end."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO


def atomic_write(path: str | os.PathLike, fill: Callable[[IO[bytes]], object]) -> None:
    """Write ``path`` through ``fill(file)`` into a temporary file beside it, fsync, then ``os.replace``.

    Killed half-way, the old file (or none) stays in place.  ``fill`` may be ``torch.save``-like:
    ``atomic_write(p, lambda f: torch.save(state, f))``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def tail_bytes(path: str | os.PathLike, n: int) -> bytes:
    """The last ``n`` bytes of a file (all of it when shorter)."""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - n))
        return fh.read()


def tail_lines(path: str | os.PathLike, lines: int = 50) -> str:
    """The last ``lines`` lines of a text file ("" if it does not exist)."""
    p = Path(path)
    if not p.is_file() or lines <= 0:
        return ""
    size, chunk = p.stat().st_size, 64 * 1024
    while True:
        data = tail_bytes(p, chunk)
        if data.count(b"\n") > lines or chunk >= size:
            break
        chunk *= 4
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])
