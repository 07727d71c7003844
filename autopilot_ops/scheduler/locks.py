"""Session-level advisory locks per queue and per back end, held on a connection of their own.

The store's main connection is replaced when it breaks (``Store.connection``), and a session lock would go
with it, unnoticed. The locks here live on a dedicated connection that is never replaced while it holds a
lock: :meth:`AdvisoryLocks.check` raises :class:`LockLost` once that connection is gone, so a submission
stops before it calls the back end without the lock.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg2

from autopilot_ops.store.connection import Store

#: The advisory-lock key of a queue; the schema is part of it, so installs sharing a database do not collide.
QUEUE_LOCK_KEY = "hashtext('autopilot.queue'), hashtext(current_schema() || ':' || %s)"
#: The key of a back end's status sweep: sweeps of one back end (and so of each of its queues) exclude each other.
SWEEP_LOCK_KEY = "hashtext('autopilot.sweep'), hashtext(current_schema() || ':' || %s)"


class LockLost(Exception):
    """The connection holding the advisory locks broke: the locks are gone."""


class AdvisoryLocks:
    """Try-locks on one dedicated connection of ``store``; a lock taken twice must be released twice."""

    def __init__(self, store: Store):
        self.store = store
        self._conn: Any = None
        self._held: dict[tuple[str, str], int] = {}

    def _cursor(self) -> Any:
        if self._conn is None or self._conn.closed:
            if self._held:
                raise LockLost(f"the lock connection closed while holding {self._describe()}")
            self._conn = self.store.open_dedicated()
            self._conn.autocommit = True
        return self._conn.cursor()

    def _describe(self) -> str:
        return "the locks of " + ", ".join(sorted({name for _, name in self._held}))

    def try_lock(self, key_sql: str, names: Iterable[str]) -> set[str]:
        """Take the lock of each of ``names`` that is free (one query); return the names locked."""
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return set()
        try:
            got = self._try(key_sql, wanted)
        except psycopg2.Error as exc:
            lost = bool(self._held)
            self._drop()
            if lost:
                raise LockLost(f"taking advisory locks failed: {exc}".strip()) from exc
            # Nothing was held: the idle connection died (a server restart between cycles); take a new one.
            try:
                got = self._try(key_sql, wanted)
            except psycopg2.Error as again:
                self._drop()
                raise LockLost(f"taking advisory locks failed: {again}".strip()) from again
        for name in got:
            self._held[(key_sql, name)] = self._held.get((key_sql, name), 0) + 1
        return got

    def _try(self, key_sql: str, names: list[str]) -> set[str]:
        with self._cursor() as cur:
            cur.execute(
                f"SELECT n.name, pg_try_advisory_lock({key_sql.replace('%s', 'n.name')}) AS got "
                "FROM unnest(%s::text[]) AS n (name)",
                (names,),
            )
            return {name for name, ok in cur.fetchall() if ok}

    def release(self, key_sql: str, names: Iterable[str]) -> None:
        """Release one hold of each of ``names`` (one query); a broken connection has released them already."""
        freed = []
        for name in names:
            count = self._held.get((key_sql, name), 0)
            if not count:
                continue
            if count == 1:
                del self._held[(key_sql, name)]
            else:
                self._held[(key_sql, name)] = count - 1
            freed.append(name)
        if not freed or self._conn is None or self._conn.closed:
            return
        try:
            with self._conn.cursor() as cur:
                cur.execute(
                    f"SELECT pg_advisory_unlock({key_sql.replace('%s', 'n.name')}) FROM unnest(%s::text[]) AS n (name)",
                    (freed,),
                )
        except psycopg2.Error:
            self._drop()

    def check(self) -> None:
        """Raise :class:`LockLost` unless the connection holding the locks still reaches the server."""
        if not self._held:
            return
        try:
            with self._cursor() as cur:
                cur.execute("SELECT 1")
        except psycopg2.Error as exc:
            lost = self._describe()
            self._drop()
            raise LockLost(f"the lock connection broke; lost {lost}: {exc}".strip()) from exc

    @contextlib.contextmanager
    def holding(self, key_sql: str, names: Iterable[str]) -> Iterator[set[str]]:
        """The names locked for the duration of the block (possibly none)."""
        got = self.try_lock(key_sql, names)
        try:
            yield got
        finally:
            self.release(key_sql, got)

    def _drop(self) -> None:
        """Forget a broken connection: its session, and every lock it held, is gone."""
        if self._conn is not None:
            with contextlib.suppress(psycopg2.Error):
                self._conn.close()
        self._conn = None
        self._held.clear()

    def close(self) -> None:
        self._drop()


def locks_of(store: Store) -> AdvisoryLocks:
    """The one :class:`AdvisoryLocks` of ``store``, shared by its cycle, submitters and sweeps."""
    if store.advisory_locks is None:
        store.advisory_locks = AdvisoryLocks(store)
    return store.advisory_locks
