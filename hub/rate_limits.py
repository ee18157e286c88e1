"""Fixed-window counters in Redis: the per-API-key and per-source rate limits, and the login's
failure lockout.

A window starts at its first hit and lasts `window` seconds; INCR and EXPIRE run in one Lua
script, so concurrent requests on every web process count exactly once and a window always ends.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

KEY_PREFIX = "hub:rl:"

# KEYS[1]: the counter; ARGV[1]: window seconds. Returns {count, seconds left in the window}.
_HIT_SCRIPT = """
local n = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if n == 1 or ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {n, ttl}
"""

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*(s|sec|m|min|h|hour)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hour": 3600}
_OFF = {"", "0", "off", "none", "false"}


class RateLimitUnavailable(Exception):
    """No Redis is configured, or it did not answer."""


@dataclass(frozen=True)
class WindowCount:
    count: int  # hits in the current window, this one included
    retry_after: int  # seconds until the window ends (at least 1)


def rate_parse(value: str) -> tuple[int, int] | None:
    """Parse `600/60s`, `100/m`, `5000/1h` into (requests, seconds); None when off or empty."""
    if value is None or str(value).strip().lower() in _OFF:
        return None
    match = _RATE.match(str(value))
    if not match:
        raise ValueError(f"Invalid rate {value!r}: use <requests>/<seconds>s, e.g. 600/60s.")
    requests_, amount, unit = int(match[1]), int(match[2] or 1), (match[3] or "s").lower()
    seconds = amount * _UNIT_SECONDS[unit]
    if requests_ < 1 or seconds < 1:
        raise ValueError(f"Invalid rate {value!r}: requests and seconds must be positive.")
    return requests_, seconds


@functools.lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    # Short timeouts: a slow Redis must not hold API requests for long (we fail open instead).
    return redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5)


@functools.lru_cache(maxsize=4)
def _script(url: str):
    return _client(url).register_script(_HIT_SCRIPT)


@functools.lru_cache(maxsize=1)
def _warn_no_redis() -> None:
    logger.warning(
        "API rate limiting is OFF: HUB_RATE_LIMIT_REDIS_URL is empty (the broker is not Redis). "
        "Set HUB_RATE_LIMIT_REDIS_URL=redis://... to enable it."
    )


def redis_url() -> str | None:
    """The Redis the counters live in, or None (rate limiting off)."""
    url = getattr(settings, "HUB_RATE_LIMIT_REDIS_URL", "") or ""
    if not url:
        _warn_no_redis()
        return None
    return url


def window_hit(*, key: str, window: int) -> WindowCount:
    """Count one hit on `key` in its current window; raise RateLimitUnavailable without Redis."""
    url = redis_url()
    if url is None:
        raise RateLimitUnavailable("no Redis configured")
    try:
        count, ttl = _script(url)(keys=[KEY_PREFIX + key], args=[window])
    except redis.RedisError as exc:
        raise RateLimitUnavailable(str(exc)) from exc
    return WindowCount(count=int(count), retry_after=max(int(ttl), 1))


_last_outage_log = 0.0


def _log_outage(exc: Exception) -> None:
    global _last_outage_log
    now = time.monotonic()
    if now - _last_outage_log >= 60:  # an outage must not flood the log with one line per request
        _last_outage_log = now
        logger.warning("API rate limiting skipped, Redis unavailable: %s", exc)


def rate_limit_exceeded(*, rate: str, key: str) -> WindowCount | None:
    """Count a hit on `key` under `rate` (`600/60s`, `off`...); return its window when over, else None.

    Fails open: without Redis (or while it is down) every request is allowed.
    """
    parsed = rate_parse(rate)
    if parsed is None:
        return None
    limit, window = parsed
    try:
        hit = window_hit(key=key, window=window)
    except RateLimitUnavailable as exc:
        if redis_url() is not None:
            _log_outage(exc)
        return None
    return hit if hit.count > limit else None


def api_rate_limit_exceeded(*, caller_key: str) -> WindowCount | None:
    """Count an API request of `caller_key` (`key:<pk>` for an API key, on every endpoint that
    takes one); return its window when over HUB_RATE_LIMIT, else None (fails open)."""
    return rate_limit_exceeded(rate=settings.HUB_RATE_LIMIT, key=f"api:{caller_key}")


def source_rate_limit_exceeded(*, source_id: int) -> WindowCount | None:
    """Count a request to a source (Segment tracking API or webhook URL); its window when over
    HUB_SOURCE_RATE_LIMIT, else None (fails open)."""
    return rate_limit_exceeded(rate=settings.HUB_SOURCE_RATE_LIMIT, key=f"source:{source_id}")


# --- Login failures ---------------------------------------------------------------------------
# Kept in the Django cache: shared by every web process when CACHE_URL is Redis (production),
# per process otherwise (development).


def _login_keys(*, username: str, ip: str | None) -> list[str]:
    keys = []
    if username:
        digest = hashlib.sha256(username.strip().lower().encode()).hexdigest()[:32]
        keys.append(f"{KEY_PREFIX}login:user:{digest}")
    if ip:
        keys.append(f"{KEY_PREFIX}login:ip:{ip}")
    return keys


def login_lockout_seconds(*, username: str, ip: str | None) -> int:
    """Seconds until this username or IP may try again; 0 when not locked out."""
    keys = _login_keys(username=username, ip=ip)
    found = cache.get_many([k for key in keys for k in (key, key + ":until")])
    now, worst = time.time(), 0
    for key in keys:
        if found.get(key, 0) >= settings.HUB_LOGIN_FAILURE_LIMIT:
            worst = max(worst, int(found.get(key + ":until", now) - now) + 1)
    return worst


def login_failure_record(*, username: str, ip: str | None) -> None:
    """Count a failed login against the username and the IP, in a window from the first failure."""
    window = settings.HUB_LOGIN_FAILURE_WINDOW
    for key in _login_keys(username=username, ip=ip):
        # add() starts a window only if none is running; incr() is atomic on Redis and keeps the
        # window's expiry, so parallel attempts are all counted.
        cache.add(key + ":until", time.time() + window, timeout=window)
        cache.add(key, 0, timeout=window)
        try:
            cache.incr(key)
        except ValueError:  # the window ended between add() and incr()
            cache.set(key + ":until", time.time() + window, timeout=window)
            cache.set(key, 1, timeout=window)


def login_failures_clear(*, username: str) -> None:
    """Forget the username's failures after a successful login (the IP's count stays)."""
    for key in _login_keys(username=username, ip=None):
        cache.delete_many([key, key + ":until"])
