"""Time in tests: the `clock` fixture's Clock (tests/conftest.py) and the end of Redis rate windows.

A test never sleeps for a timeout, a cache TTL or a rate window to pass: it moves the clock (see
docs/architecture.md, Testing).
"""


def rate_windows_end(client) -> None:
    """End every running rate-limit window now, as Redis does when a counter's TTL runs out.

    The windows are Redis keys with a TTL, on Redis's own clock, which no test clock moves; a
    counter without a TTL is a window that would never end, and fails here.
    """
    from hub import rate_limits

    for key in client.scan_iter(f"{rate_limits.KEY_PREFIX}*"):
        assert client.pttl(key) > 0, f"{key!r} has no expiry: its window would never end"
        client.pexpireat(key, 1)  # a time in the past: Redis drops the key, as at its TTL


class Clock:
    """The test's clock (fixture `clock`): `advance(seconds)` moves time forward at once.

    Wall-clock time (`time.time`, `datetime.now`, `django.utils.timezone.now`, Django's local-memory
    cache expiry) moves through time-machine; monotonic time (`time.monotonic`, which the per-process
    TTL caches of `hub.ttl_cache` read) by the same offset. Time keeps ticking in between.
    """

    def __init__(self, traveller):
        self._traveller = traveller
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        self._traveller.shift(seconds)
        self.offset += seconds
