"""The node's files, in one layout under its data directory, checked at start.

::

    {data_dir}/                   --data-dir; default /var/lib/devfleet/{node} when that
                                  is writable (root, or a prepared directory), else
                                  $XDG_STATE_HOME/devfleet/{node} (~/.local/state/...)
      session.json                the bd_seq, the birth counter (+1 at each start)
      replay.json                 the replay guard of signed control messages
      commands.json               ids of state-changing commands (at-most-once across restarts)
      config/v{N}.json            node config versions (the last 5)
      components/{name}.json      values a component persisted
      actors/{name}.json          values a dynamic actor persisted

``--state-dir DIR`` moves the actors' files to ``DIR/agentflow_{name}_state.json``:
Wactorz's names, for a Wactorz runner that shares the directory.

A directory the agent cannot write is a setup error: :func:`prepare` says so in
one line before anything connects, rather than a traceback at the first write.
"""

from __future__ import annotations

import getpass
import logging
import os
import tempfile
from pathlib import Path

from .errors import SettingsError
from .settings import Settings
from .storage import remove_orphans

__all__ = ["prepare"]

log = logging.getLogger("devfleet.agent")


def _writable(path: Path, what: str, flag: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".devfleet-write-check.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        user = getpass.getuser()
        raise SettingsError(
            f"{what} {path} is not writable by user {user!r} ({exc.strerror or exc}); "
            f"create it for that user or give {flag} a directory it can write"
        ) from None


def prepare(settings: Settings) -> Path:
    """Create and check the data and actor state directories; clean what killed
    writes left there. Return the data directory.

    Raises:
        SettingsError: a directory cannot be created or written.
    """
    data_dir = settings.resolved_data_dir
    _writable(data_dir, "data directory", "--data-dir")
    state_dir = settings.resolved_state_dir
    _writable(state_dir, "actor state directory", "--state-dir")
    for directory in (data_dir, data_dir / "components", state_dir):
        if directory == state_dir and settings.state_dir:
            continue  # a shared directory (/tmp, a Wactorz runner's): not ours to clean
        removed = remove_orphans(directory)
        if removed:
            log.info("removed %d temporary file(s) left by interrupted writes in %s", removed, directory)
    return data_dir
