"""Atomic file writes: write to a temporary name in the same folder, then rename.

Every stage writes through these helpers so that a later stage (or a resumed run) never reads a
half-written file: a file is either absent or complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary name keeps the final suffix (so libraries that infer a format from it still work)
    and starts with ``.tmp-`` so it is easy to recognise and clean up.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.stem}-", suffix=path.suffix, dir=path.parent)
    # mkstemp makes 0600 files; give the final file the permissions a plain open() would (0666 & ~umask),
    # so released files are readable by others as usual.
    os.fchmod(fd, 0o666 & ~_umask())
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (fsync before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def clean_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete leftover ``.tmp-*`` files under ``folder`` (from a killed run); return what was removed."""
    removed = []
    folder = Path(folder)
    if folder.exists():
        for p in folder.rglob(".tmp-*"):
            if p.is_file():
                p.unlink()
                removed.append(p)
    return removed
