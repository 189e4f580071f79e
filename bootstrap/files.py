"""Files in the data directory are private: directories 0700, files 0600, whatever the umask.

The data directory holds the SQLite database (admin password hashes, token
hashes, the audit trail), the embedded keystore and the TLS key. ``mkdir(parents=True,
mode=...)`` gives the mode to the last directory only; these helpers give it to
every directory they create.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["private_dir", "private_file"]


def private_dir(path: Path) -> Path:
    """Create ``path`` and any missing parents with mode 0700; return ``path``."""
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            continue
        os.chmod(directory, 0o700)  # mkdir's mode is masked by the umask
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty with mode 0600 if it does not exist (its directory private too); return it."""
    private_dir(path.parent)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        with contextlib.suppress(PermissionError):  # not ours to change: leave it as its owner set it
            os.chmod(path, 0o600)  # a file made by an older version with the umask's mode
    return path
