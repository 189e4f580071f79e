"""Group commit: concurrent requests of one process share a transaction.

A request hands its database work (a function of a session) to
:meth:`GroupCommitter.run` and blocks until that work is durable or refused.
The first waiting thread becomes the *writer*: it takes what is queued (at most
``max_batch`` requests; when other requests are still on their way it lingers
at most ``linger`` seconds for them), opens ONE transaction, runs each request
in a SAVEPOINT of its own and commits once. A lone request is taken at once and
runs in a transaction of its own, without a SAVEPOINT.

- One bad request fails only itself: its savepoint rolls back (a claimed token
  is unclaimed, its audit events are dropped) and the others go on.
- A serial-number collision (an ``IntegrityError`` escaping the work: nonce and
  DevID races are mapped by the work itself) re-runs that request in a fresh
  savepoint - the one retry rule of the issuance pipeline.
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

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlmodel import Session

from bootstrap import metrics
from bootstrap.errors import Conflict
from bootstrap.store.db import Database

__all__ = ["ATTEMPTS", "GroupCommitter", "Work"]

log = logging.getLogger(__name__)

T = TypeVar("T")
#: A request's database work; it runs in a savepoint of the writer's transaction.
Work = Callable[[Session], T]
#: Tries per request when its certificate serial collides (a 1 in 2^159 event).
ATTEMPTS = 3


@dataclass(eq=False)
class _Job(Generic[T]):
    work: Work[T]
    value: Any = None
    error: BaseException | None = None
    finished: bool = False
    done: threading.Event = field(default_factory=threading.Event)


class GroupCommitter:
    """Runs requests' database work in shared transactions, one savepoint each."""

    def __init__(self, database: Database, *, max_batch: int = 64, linger: float = 0.002) -> None:
        self._db = database
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

    def run(self, work: Work[T]) -> T:
        """Run ``work`` in a savepoint of a shared transaction; return its value once committed.

        Raises:
            Exception: whatever ``work`` raised (its savepoint rolled back), or the
                commit's error; Conflict after ATTEMPTS serial collisions.
        """
        job: _Job[T] = _Job(work)
        if getattr(self._local, "writing", False):  # work that runs more work: its own transaction, now
            self._commit([job])
            if job.error is not None:
                raise job.error
            return job.value  # type: ignore[no-any-return]
        with self._cond:
            self._queue.append(job)
            self._cond.notify_all()
            while self._writing and not job.finished:
                self._cond.wait()
            if not job.finished:
                self._writing = True
        if not job.finished:
            self._local.writing = True
            try:
                while not job.finished:
                    self._write(self._take())
            finally:
                self._local.writing = False
                with self._cond:
                    self._writing = False
                    self._cond.notify_all()
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
            with self._cond:
                for job in batch:
                    job.value, job.error, job.finished = None, exc, True
                self._cond.notify_all()
            raise

    def _commit(self, batch: list[_Job[Any]]) -> None:
        if len(batch) == 1:
            self._commit_alone(batch[0])
        else:
            try:
                with self._db.session() as session:
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
            self._cond.notify_all()

    def _commit_alone(self, job: _Job[Any]) -> None:
        """A lone request: its own transaction, no SAVEPOINT (two round trips fewer).

        Its failure rolls the transaction back, which is all a savepoint would have
        done; a serial collision is retried in a fresh transaction.
        """
        for attempt in range(ATTEMPTS):
            try:
                with self._db.session() as session:
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

    @staticmethod
    def _run_one(session: Session, job: _Job[Any]) -> None:
        for attempt in range(ATTEMPTS):
            try:
                with session.begin_nested():
                    value = job.work(session)
                    session.flush()
            except IntegrityError:
                log.warning("serial collision on attempt %d; retrying", attempt + 1)
                continue
            except (OperationalError, InterfaceError):
                raise  # the database itself failed (gone, busy): the whole transaction is lost, not one request
            except DBAPIError as exc:
                if exc.connection_invalidated:
                    raise
                job.value, job.error = None, exc  # a value the database refused: this request alone
                return
            except Exception as exc:  # this request fails alone; its savepoint rolled back
                job.value, job.error = None, exc
                return
            job.value, job.error = value, None
            return
        job.value, job.error = None, Conflict("could not record a unique certificate serial; retry")
