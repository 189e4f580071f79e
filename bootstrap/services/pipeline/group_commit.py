"""Group commit: concurrent requests of one process share a transaction.

A request hands its database work (a function of a session) to
:meth:`GroupCommitter.run` and blocks until that work is durable or refused.
The first waiting thread becomes the *writer*: it takes what is queued (at most
``max_batch`` requests; when other requests are still on their way it lingers
at most ``linger`` seconds for them), opens ONE transaction, reads what the
requests announced they need in one statement per table (``prepare``: their
devices and tokens, locked), runs each request and commits once. A lone request
is taken at once and runs in a transaction of its own.

- A request's writes are queued to the commit (token claims, device updates,
  certificate rows, audit events: :mod:`bootstrap.services.pipeline.deferred`),
  so most requests only read, and need no SAVEPOINT. The first statement of a
  request that does write directly (a group-key nonce, a new device, HGET
  objects) opens one, just before it, and only for that request.
- One bad request fails only itself: what it queued is dropped, its savepoint
  (if it opened one) rolls back, and the others go on. A request that failed
  in the database without a savepoint (its read failed) has lost the whole
  transaction: the batch is then run again, each request alone.
- A serial-number collision (an ``IntegrityError`` at the commit: nonce and
  DevID races are mapped by the work itself) fails the batch's commit; each of
  its requests then runs alone, and a lone request that collides is run again
  in a fresh transaction - the one retry rule of the issuance pipeline.
- The audit chain is appended once per batch, at the commit (see
  :mod:`bootstrap.services.audit`): one head lock per batch, not per request.
- Nothing is answered before the commit returns. If the commit itself fails,
  every request of the batch is run again alone, so one cannot sink the others.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, event
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlmodel import Session

from bootstrap import metrics
from bootstrap.errors import Conflict
from bootstrap.services.pipeline.deferred import drop_since, queue_marks
from bootstrap.store.db import Database

__all__ = ["ATTEMPTS", "GroupCommitter", "Prepare", "Work"]

log = logging.getLogger(__name__)

T = TypeVar("T")
#: A request's database work; it runs in a savepoint of the writer's transaction.
Work = Callable[[Session], T]
#: Tries per request when its certificate serial collides (a 1 in 2^159 event).
ATTEMPTS = 3


#: Reads a batch's announced needs (the requests' ``hint`` values) before the requests run.
Prepare = Callable[[Session, list[Any]], None]
_GUARD = "dmboot.group_commit.job"  # connection.info: the request running without a savepoint
_SAVEPOINT = "dmboot_request"


@dataclass(eq=False)
class _Job(Generic[T]):
    work: Work[T]
    hint: Any = None
    value: Any = None
    error: BaseException | None = None
    finished: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class GroupCommitter:
    """Runs requests' database work in shared transactions; a savepoint only for a request that writes."""

    def __init__(self, database: Database, *, max_batch: int = 64, linger: float = 0.002,
                 prepare: Prepare | None = None) -> None:
        self._db = database
        #: Reads what the batch's requests announced (``run(hint=...)``) in bulk; set by the pipeline.
        self.prepare = prepare
        if not event.contains(database.engine, "before_execute", _open_savepoint_before_writes):
            event.listen(database.engine, "before_execute", _open_savepoint_before_writes)
        self._max_batch = max_batch
        self._linger = linger
        self._cond = threading.Condition()
        self._queue: deque[_Job[Any]] = deque()
        self._writing = False
        self._coming = 0  # requests announced (preparing outside the transaction), not yet queued
        self._local = threading.local()  # set while this thread writes a batch
        #: Batches committed and requests in them, for tests and metrics.
        self.batches = 0
        self.requests = 0

    @property
    def queued(self) -> int:
        """Requests waiting for a writer."""
        with self._cond:
            return len(self._queue)

    @contextmanager
    def announce(self) -> Iterator[None]:
        """Say a request will call :meth:`run` soon, so a writer may wait for it briefly."""
        with self._cond:
            self._coming += 1
        try:
            yield
        finally:
            with self._cond:
                self._coming -= 1
                self._cond.notify()  # a writer lingering for it need not wait any longer

    def run(self, work: Work[T], *, hint: Any = None) -> T:
        """Run ``work`` in a shared transaction; return its value once committed.

        ``hint``: what the work will read, for ``prepare`` to read with the batch's others.

        Raises:
            Exception: whatever ``work`` raised (nothing of it is kept), or the
                commit's error; Conflict after ATTEMPTS serial collisions.
        """
        job: _Job[T] = _Job(work, hint)
        if getattr(self._local, "writing", False):  # work that runs more work: its own transaction, now
            self._commit([job])
            if job.error is not None:
                raise job.error
            return job.value  # type: ignore[no-any-return]
        with self._cond:
            self._queue.append(job)
            self._cond.notify()  # a writer lingering for this request
            writer = not self._writing
            self._writing = True
        if not writer:
            # Each waiter sleeps on its own event: it is woken once, when its batch has
            # committed or when it is handed the writer's role - never by every commit.
            job.done.wait()
        if not job.finished:
            self._local.writing = True
            try:
                while not job.finished:
                    self._write(self._take())
            finally:
                self._local.writing = False
                with self._cond:
                    if self._queue:  # the next writer: the oldest request still waiting
                        self._queue[0].done.set()
                    else:
                        self._writing = False
        if job.error is not None:
            raise job.error
        return job.value  # type: ignore[no-any-return]

    def _take(self) -> list[_Job[Any]]:
        with self._cond:
            deadline = time.monotonic() + self._linger
            while len(self._queue) < self._max_batch and self._coming > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return [self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))]

    def _write(self, batch: list[_Job[Any]]) -> None:
        if not batch:
            return
        try:
            self._commit(batch)
        except BaseException as exc:  # the writer itself was interrupted: release every waiter
            for job in batch:
                job.value, job.error, job.finished = None, exc, True
                job.done.set()
            raise

    def _commit(self, batch: list[_Job[Any]]) -> None:
        if len(batch) == 1:
            self._commit_alone(batch[0])
        else:
            try:
                with self._db.session() as session:
                    self._prepare(session, batch)
                    for job in batch:
                        self._run_one(session, job)
            except Exception as exc:  # the commit failed: nothing of the batch is durable; try each alone
                log.warning("group commit of %d requests failed (%s); committing them one by one",
                            len(batch), type(exc).__name__)
                for job in batch:
                    self._commit([job])
                return
        metrics.observe_batch(len(batch))
        with self._cond:
            self.batches += 1
            self.requests += len(batch)
        for job in batch:
            job.finished = True
            job.done.set()

    def _commit_alone(self, job: _Job[Any]) -> None:
        """A lone request: its own transaction, no SAVEPOINT (two round trips fewer).

        Its failure rolls the transaction back, which is all a savepoint would have
        done; a serial collision is retried in a fresh transaction.
        """
        for attempt in range(ATTEMPTS):
            try:
                with self._db.session() as session:
                    self._prepare(session, [job])
                    value = job.work(session)
            except IntegrityError:  # nonce and DevID races are mapped by the work: this is a serial
                log.warning("serial collision on attempt %d; retrying", attempt + 1)
                continue
            except Exception as exc:  # rolled back: nothing of this request is left
                job.value, job.error = None, exc
                return
            job.value, job.error = value, None
            return
        job.value, job.error = None, Conflict("could not record a unique certificate serial; retry")

    def _prepare(self, session: Session, batch: list[_Job[Any]]) -> None:
        hints = [job.hint for job in batch if job.hint is not None]
        if self.prepare is not None and hints:
            self.prepare(session, hints)

    @staticmethod
    def _run_one(session: Session, job: _Job[Any]) -> None:
        """Run one request of a batch: without a SAVEPOINT until its first direct write.

        Raises:
            Exception: the transaction is lost (the database failed, or a request
                failed in it without a savepoint): the caller runs the batch again,
                each request alone.
        """
        marks = queue_marks(session)
        connection = session.connection()
        guard = _Guard()
        connection.info[_GUARD] = guard
        try:
            value = job.work(session)
            session.flush()
        except (OperationalError, InterfaceError):
            raise  # the database itself failed (gone, busy): the whole transaction is lost, not one request
        except Exception as exc:
            if isinstance(exc, DBAPIError) and (exc.connection_invalidated or not guard.opened):
                raise  # it failed in the database with nothing to roll back to: the transaction is lost
            if not session.is_active:
                raise  # a failed flush rolled the session's transaction back
            connection.info.pop(_GUARD, None)
            drop_since(session, marks)
            if guard.opened:  # what it wrote goes: rows in the database, and their objects in the session
                connection.exec_driver_sql(f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}")
                session.expunge_all()
            job.value, job.error = None, exc
            return
        finally:
            connection.info.pop(_GUARD, None)
        job.value, job.error = value, None


class _Guard:
    """A request of a batch running without a savepoint; ``opened`` once it wrote."""

    __slots__ = ("opened",)

    def __init__(self) -> None:
        self.opened = False


def _open_savepoint_before_writes(connection: Connection, statement: Any, *_args: Any) -> None:
    """Before a request's first direct write, open its savepoint (``before_execute``).

    Reads need none: the request's writes are queued to the commit. A statement
    that is not a SELECT (an INSERT, UPDATE, DELETE or a SAVEPOINT of the request's
    own) opens it, once, so the request can still fail alone.
    """
    guard = connection.info.get(_GUARD)
    if guard is None or guard.opened or _reads(statement):
        return
    guard.opened = True
    connection.exec_driver_sql(f"SAVEPOINT {_SAVEPOINT}")


def _reads(statement: Any) -> bool:
    if isinstance(statement, str):
        return statement.lstrip()[:6].upper() == "SELECT"
    return bool(getattr(statement, "is_select", False))
