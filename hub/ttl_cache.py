"""The one per-process, time-limited cache the hub uses (hot paths skip a query they just made).

A thin, thread-safe wrapper of `cachetools.TTLCache`: entries expire `ttl` seconds after they were
set, the least recently used go first when `maxsize` is reached. Each process has its own copy, so
a change made in another process is seen within `ttl`; code that changes what is cached clears its
own process's entry at once. `ttl <= 0` turns the cache off (every read is a miss).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

import cachetools

V = TypeVar("V")


def _monotonic() -> float:
    # `time.monotonic` looked up at each call, not bound once: the tests' clock fixture moves it.
    return time.monotonic()


class TTLCache(Generic[V]):
    def __init__(
        self,
        *,
        ttl: float | Callable[[], float],
        maxsize: int = 10_000,
        timer: Callable[[], float] = _monotonic,
    ) -> None:
        """`ttl` is seconds, or a callable read at each set (a setting that tests may override)."""
        self._ttl = ttl
        self._maxsize = maxsize
        self._timer = timer
        self._lock = threading.Lock()
        self._data: cachetools.TLRUCache[Hashable, V] = cachetools.TLRUCache(
            maxsize=maxsize, ttu=self._ttu, timer=timer
        )

    def _seconds(self) -> float:
        return float(self._ttl() if callable(self._ttl) else self._ttl)

    def _ttu(self, _key: Hashable, _value: object, now: float) -> float:
        return now + self._seconds()

    def get(self, key: Hashable) -> V | None:
        # One lookup (cachetools' own `get` makes two, each reading the clock): on ingest's path.
        with self._lock:
            try:
                return self._data[key]
            except KeyError:
                return None

    def set(self, key: Hashable, value: V) -> None:
        if self._seconds() <= 0:
            return
        with self._lock:
            self._data[key] = value

    def get_or_set(self, key: Hashable, make: Callable[[], V]) -> V:
        """The cached value, or `make()`'s (cached unless it raised)."""
        hit = self.get(key)
        if hit is not None:
            return hit
        value = make()
        self.set(key, value)
        return value

    def pop(self, key: Hashable) -> None:
        with self._lock:
            self._data.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)
