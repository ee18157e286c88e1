"""Timestamps as the APIs send them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

# Epoch milliseconds outside years 1970..2200 are almost surely seconds or garbage.
_MS_MIN, _MS_MAX = 0, 7_258_118_400_000


def parse_timestamp(value: Any, *, now: datetime) -> datetime:
    """Epoch milliseconds (number or digits) or an ISO-8601 string; naive means UTC."""
    if value is None:
        return now
    if isinstance(value, bool):
        raise ValueError("must be epoch milliseconds or an ISO-8601 string")
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if isinstance(value, int | float):
        if not (_MS_MIN <= value <= _MS_MAX):
            raise ValueError("epoch milliseconds out of range")
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError("is not epoch milliseconds or an ISO-8601 timestamp") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed
    raise ValueError("must be epoch milliseconds or an ISO-8601 string")
