"""The hub's one time-limited cache (hub.ttl_cache): expiry, the off switch and the size bound."""

from hub.ttl_cache import TTLCache


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_an_entry_expires_after_its_ttl():
    clock = Clock()
    cache = TTLCache(ttl=2, timer=clock)
    cache.set("a", 1)
    clock.now = 1.9
    assert cache.get("a") == 1
    clock.now = 2.1
    assert cache.get("a") is None


def test_a_ttl_of_zero_or_less_caches_nothing():
    cache = TTLCache(ttl=lambda: 0)
    assert cache.get_or_set("a", lambda: 1) == 1
    assert cache.get("a") is None


def test_the_oldest_set_goes_when_full():
    cache = TTLCache(ttl=60, maxsize=2)
    cache.set(1, "one")
    cache.set(2, "two")
    cache.set(1, "one again")  # set again: the newest now
    cache.set(3, "three")
    assert len(cache) == 2
    assert cache.get(2) is None and cache.get(1) == "one again" and cache.get(3) == "three"


def test_an_expired_entry_is_dropped_when_read():
    clock = Clock()
    cache = TTLCache(ttl=1, timer=clock)
    cache.set("a", 1)
    clock.now = 5
    assert cache.get("a") is None
    assert len(cache) == 0


def test_get_or_set_makes_once_and_pop_forgets():
    cache = TTLCache(ttl=60)
    made = []
    assert cache.get_or_set("k", lambda: made.append(1) or "v") == "v"
    assert cache.get_or_set("k", lambda: made.append(1) or "w") == "v"
    assert made == [1]
    cache.pop("k")
    assert cache.get("k") is None


def test_the_default_timer_is_the_one_the_tests_clock_moves(clock):
    cache = TTLCache(ttl=2)
    cache.set("a", 1)
    clock.advance(1.9)
    assert cache.get("a") == 1
    clock.advance(0.2)
    assert cache.get("a") is None
