"""A client-side deadline on every round trip to PostgreSQL, for a server that stops answering mid-run.

The server's `statement_timeout` ends a slow statement with a clear error, and libpq's `connect_timeout` bounds a
new connection, but neither helps when the server is frozen (SIGSTOP, a stalled VM, a hung storage volume) while a
pooled connection is open: the kernel still acknowledges the client's packets and TCP keepalives, so the client
waits for an answer that never comes (before this module: until the task's one-hour execution timeout).

`DeadlineConnection` is a psycopg2 connection class (passed as `connection_factory`) whose cursors' `execute`,
`executemany` and `callproc`, and the connection's `commit` and `rollback`, arm a shared watchdog thread. When a
call has had no answer after `answer_timeout_s`, the watchdog shuts the connection's socket down: libpq's blocked
read returns at once, and the call raises `psycopg2.OperationalError` saying that PostgreSQL gave no answer (worded
as a lost connection, so SQLAlchemy discards the connection rather than returning it to the pool). The deadline is
set above the statement timeout, so a merely slow statement still gets the server's own error first. The pool's
liveness ping on checkout has a short deadline of its own (the connect timeout): a frozen server is found there,
the pool tries a new connection, and that one's connect timeout ends the call.
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from contextlib import contextmanager
from functools import cache
from typing import Iterator

import psycopg2
import psycopg2.extensions

# SQLAlchemy's psycopg2 dialect treats an error containing this phrase as a lost connection.
LOST = "could not receive data from server"


class _Watchdog:
    """One daemon thread that shuts down the sockets of calls past their deadline."""

    def __init__(self) -> None:
        self._reset()
        # A forked child (the OpenLineage listener forks the task process) has no watchdog thread, and the parent's
        # lock may have been held at the fork: the child starts afresh.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._heap: list[tuple[float, int, int]] = []  # (deadline, ticket, socket fd)
        self._live: dict[int, int] = {}  # ticket -> fd, for calls still waiting
        self._fired: set[int] = set()
        self._tickets = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def arm(self, fd: int, seconds: float) -> int:
        with self._wake:
            ticket = next(self._tickets)
            self._live[ticket] = fd
            heapq.heappush(self._heap, (time.monotonic() + seconds, ticket, fd))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="shopflow-db-deadline", daemon=True)
                self._thread.start()
            self._wake.notify()
            return ticket

    def disarm(self, ticket: int) -> bool:
        """Stop watching the call; True when its deadline had already passed (its socket was shut down)."""
        with self._wake:
            self._live.pop(ticket, None)
            if ticket in self._fired:
                self._fired.discard(ticket)
                return True
            return False

    def _run(self) -> None:
        with self._wake:
            while True:
                while self._heap and self._heap[0][1] not in self._live:
                    heapq.heappop(self._heap)  # answered in time
                if not self._heap:
                    self._wake.wait()
                    continue
                deadline, ticket, fd = self._heap[0]
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    self._wake.wait(remaining)
                    continue
                heapq.heappop(self._heap)
                del self._live[ticket]
                self._fired.add(ticket)
                _shut_down(fd)


def _shut_down(fd: int) -> None:
    try:  # shutdown acts on the socket itself, so a duplicate descriptor is enough (and closing it is harmless)
        with socket.socket(fileno=os.dup(fd)) as sock:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: the call fails by itself


_WATCHDOG = _Watchdog()


class DeadlineConnection(psycopg2.extensions.connection):
    """A psycopg2 connection whose every round trip has a deadline: `answer_timeout_s` for statements, commits and
    rollbacks, `ping_timeout_s` for the pool's liveness ping (which a live server answers at once)."""

    answer_timeout_s: float | None = None
    ping_timeout_s: float | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cursor_factory = DeadlineCursor

    @contextmanager
    def deadline(self, what: str, seconds: float | None = None) -> Iterator[None]:
        seconds = seconds or self.answer_timeout_s
        if not seconds or self.closed:
            yield
            return
        ticket = _WATCHDOG.arm(self.fileno(), seconds)
        try:
            yield
        except psycopg2.Error as exc:
            if _WATCHDOG.disarm(ticket):
                raise psycopg2.OperationalError(
                    f"{LOST}: PostgreSQL gave no answer to the {what} within {seconds:g} s (the server is frozen, "
                    "overloaded or unreachable); the connection was closed") from exc
            raise
        else:
            _WATCHDOG.disarm(ticket)

    def ping(self) -> bool:
        """What SQLAlchemy's `pool_pre_ping` runs on checkout (shopflow.store.repository), with the ping deadline."""
        with self.deadline("ping", self.ping_timeout_s), psycopg2.extensions.cursor(self) as cursor:
            cursor.execute("SELECT 1")
        return True

    def commit(self) -> None:
        with self.deadline("commit"):
            super().commit()

    def rollback(self) -> None:
        with self.deadline("rollback"):
            super().rollback()


@cache
def connection_factory(answer_timeout_s: float, ping_timeout_s: float) -> type[DeadlineConnection]:
    """A `DeadlineConnection` class with these deadlines (seconds)."""
    return type("DeadlineConnection", (DeadlineConnection,),
                {"answer_timeout_s": float(answer_timeout_s), "ping_timeout_s": float(ping_timeout_s)})


def ping(default_ping, dbapi_connection) -> bool:
    """A dialect's `do_ping` that uses the connection's own deadline when it has one."""
    if isinstance(dbapi_connection, DeadlineConnection):
        return dbapi_connection.ping()
    return default_ping(dbapi_connection)


class DeadlineCursor(psycopg2.extensions.cursor):
    def execute(self, query, vars=None):  # noqa: A002 - psycopg2's own parameter name
        with self.connection.deadline("statement"):
            return super().execute(query, vars)

    def executemany(self, query, vars_list):
        with self.connection.deadline("statement"):
            return super().executemany(query, vars_list)

    def callproc(self, procname, parameters=None):
        with self.connection.deadline("call"):
            return super().callproc(procname, parameters)
