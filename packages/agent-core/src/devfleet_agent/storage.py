"""Small, crash-safe JSON files on the device.

A power cut on a Raspberry Pi must never leave a half-written config behind:
write to a temporary file in the same directory, fsync it, rename it over the
old one (atomic on POSIX), then fsync the directory so the rename itself lasts.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["atomic_write_json", "read_json", "remove_orphans"]

_TMP_SUFFIX = ".tmp"


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically and durably.

    Raises:
        ValueError: ``obj`` holds NaN or an infinity (not JSON); nothing is written.
        TypeError: ``obj`` is not JSON-serialisable; nothing is written.
        OSError: the directory or file cannot be written.
    """
    # Serialise first: a value that cannot be written must leave no file behind.
    data = json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False, allow_nan=False).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=_TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read_json(path: Path) -> Any:
    """Read a JSON file; raise ``FileNotFoundError`` or ``ValueError`` (corrupt, or
    holding ``NaN``/``Infinity``, which no strict JSON reader accepts)."""
    raw = path.read_bytes()
    try:
        return json.loads(raw, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"{path} is corrupt: {exc}") from None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def remove_orphans(directory: Path) -> int:
    """Remove the temporary files :func:`atomic_write_json` leaves in ``directory``
    when the process is killed mid-write (``.{name}.{random}.tmp``); return how many.

    Only call it at start, before anything in this process writes there.
    """
    removed = 0
    try:
        candidates = list(directory.glob(f".*.json.*{_TMP_SUFFIX}"))
    except OSError:
        return 0
    for tmp in candidates:
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed += 1
    return removed
