"""A small pool of stores, so concurrent requests never share one connection's transaction."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator

from fastapi import HTTPException, Request, status

from autopilot_ops.store.connection import Store, StoreError


class StorePool:
    """At most ``size`` stores, each opened on first use by ``factory``; a borrower waits for a free one."""

    def __init__(self, factory: Callable[[], Store], size: int = 4, wait_seconds: float = 30.0):
        self._factory = factory
        self._free: queue.LifoQueue[Store] = queue.LifoQueue()
        self._created = 0
        self._size = size
        self._wait = wait_seconds
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def borrow(self) -> Iterator[Store]:
        store = self._take()
        try:
            yield store
        finally:
            self._free.put(store)

    def _take(self) -> Store:
        try:
            return self._free.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._created < self._size:
                self._created += 1
                try:
                    return self._factory()
                except Exception:
                    self._created -= 1
                    raise
        return self._free.get(timeout=self._wait)

    def close(self) -> None:
        while True:
            try:
                self._free.get_nowait().close()
            except queue.Empty:
                return


def store_dependency(request: Request) -> Iterator[Store]:
    """FastAPI dependency: a store from the app's pool for this request; 503 if the database is down."""
    pool: StorePool = request.app.state.store_pool
    try:
        with pool.borrow() as store:
            store.connection()
            yield store
    except StoreError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"AutoPilot database unavailable: {exc}") from exc
