"""CPU accounting of the benchmark's own and other processes (servers, PostgreSQL) from ``/proc/<pid>/stat``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable

__all__ = [
    "CLK_TCK",
    "CpuMeter",
    "descendants",
    "local_postgres_pids",
    "postgres_backend_pids",
    "proc_cpu_seconds",
    "tree_cpu_seconds",
]


CLK_TCK = os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------------------
# CPU accounting
# --------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after ``comm``: index 0 is field 3 (state)."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        raw = handle.read().decode(errors="replace")
    return raw[raw.rindex(")") + 2:].split()


def proc_cpu_seconds(pid: int, *, children: bool = True) -> float:
    """utime+stime of ``pid`` (plus cutime+cstime, its reaped children, if ``children``)."""
    fields = _stat(pid)
    ticks = int(fields[11]) + int(fields[12])  # fields 14, 15: utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # fields 16, 17: cutime, cstime
    return ticks / CLK_TCK


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, comm) of every live process."""
    table: dict[int, tuple[int, str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                raw = handle.read().decode(errors="replace")
        except OSError:
            continue  # exited meanwhile
        comm = raw[raw.index("(") + 1: raw.rindex(")")]
        table[int(entry.name)] = (int(raw[raw.rindex(")") + 2:].split()[1]), comm)
    return table


def descendants(pid: int) -> list[int]:
    """Live descendants of ``pid`` (children, grandchildren, ...)."""
    table = _processes()
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    todo = list(children.get(pid, ()))
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and all its descendants, live or reaped.

    A descendant that exits moves from "live" into its parent's cutime/cstime when
    reaped, so the sum stays continuous across worker restarts.
    """
    total = proc_cpu_seconds(pid)
    for child in descendants(pid):
        with contextlib.suppress(OSError):
            total += proc_cpu_seconds(child)
    return total


def local_postgres_pids() -> list[int]:
    """Postmaster pids on this machine (a ``postgres`` whose parent is not one)."""
    table = _processes()
    return sorted(
        pid for pid, (parent, comm) in table.items()
        if comm == "postgres" and table.get(parent, (0, ""))[1] != "postgres"
    )


class CpuMeter:
    """CPU seconds used by other processes (servers, PostgreSQL backends) over a window.

    ``pids`` is a list, or a function returning one that is called at ``start`` (for
    processes that exist only once the work has begun, like a pool's backends). With
    ``trees`` each pid counts with all its descendants; a pid that is gone by ``read``
    counts as if it stopped at ``start`` (its CPU in the window is lost, never negative).
    """

    def __init__(self, pids: Iterable[int] | Callable[[], Iterable[int]] = (), *, trees: bool = True) -> None:
        self._source = pids
        self._trees = trees
        self.pids: list[int] = []
        self._start: dict[int, float] = {}

    def _one(self, pid: int) -> float:
        return tree_cpu_seconds(pid) if self._trees else proc_cpu_seconds(pid)

    def start(self) -> None:
        self.pids = list(self._source() if callable(self._source) else self._source)
        self._start = {}
        for pid in self.pids:
            with contextlib.suppress(OSError):
                self._start[pid] = self._one(pid)

    def read(self) -> float:
        total = 0.0
        for pid, before in self._start.items():
            with contextlib.suppress(OSError):
                total += self._one(pid) - before
        return total


def postgres_backend_pids(url: str) -> list[int]:
    """Pids of the backends connected to ``url``'s database (other than the asking one).

    Meter these for a scratch database only we use: PostgreSQL on a shared machine
    serves others too, and its background writers serve everyone.
    """
    import psycopg
    from sqlalchemy.engine import make_url

    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchall()
    return [int(r[0]) for r in rows]
