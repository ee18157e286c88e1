"""The screens' date-time inputs (hub.timestamps.parse_datetime_local)."""

from datetime import UTC, datetime

import pytest

from hub.timestamps import parse_datetime_local


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-03-01T12:30", datetime(2026, 3, 1, 12, 30, tzinfo=UTC)),  # a datetime-local input: UTC
        ("2026-03-01T12:30:00+02:00", datetime(2026, 3, 1, 10, 30, tzinfo=UTC)),
        ("0001-01-01T00:30:00+01:00", None),  # before year 1 in UTC
        ("2026-02-30T12:00", None),  # looks like one, is no date
        ("yesterday", None),
        ("", None),
        (None, None),
    ],
)
def test_a_date_time_input_is_read_as_utc_or_ignored(value, expected):
    assert parse_datetime_local(value) == expected
