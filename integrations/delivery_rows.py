"""The delivery engine's rows and the interface of its tables (`DeliveryStore`): what the fan-out
makes (`NewDelivery`), what a claim returns (`Claimed`), retry marks, ids derived from
(integration, message id), and the helpers both stores share (`integrations.delivery_store_pg`,
`integrations.delivery_store_orm`; chosen in `integrations.delivery_store`)."""

from __future__ import annotations

import hashlib
import uuid
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from hub.locks import xact_lock_first_free
from hub.models import Activity
from hub.raw_cursor import raw_cursor

from .models import Attempt, Delivery


def iso_ms(dt: datetime) -> str:
    """A time as Segment's messages carry it: UTC, milliseconds, `Z`."""
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class ActivityRow:
    """An undispatched activity with what its messages are rendered from (as it was then).

    Ids are text and the time is its ISO form (`iso_ms`): the fan-out renders them as such.
    Not frozen: a frozen dataclass sets each field through `object.__setattr__`, and the fan-out
    makes one per activity.
    """

    id: str
    app_id: int
    kind: str
    timestamp: str
    properties: dict
    customer_public_id: str
    customer_fields: dict

    @property
    def occurred_at(self) -> datetime:
        return datetime.fromisoformat(self.timestamp.replace("Z", "+00:00"))


# uuid.UUID(bytes=digest, version=4), in two integer operations: the version and variant bits.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (4 << 76) | (0x8000 << 48)


_new_object = object.__new__
_set_attribute = object.__setattr__
_SAFE_UNKNOWN = uuid.SafeUUID.unknown


def delivery_id_for(integration_id: int, message_id: str) -> uuid.UUID:
    """A delivery's id, derived from what makes it unique (one message id per integration): the
    primary key itself keeps a fan-out that runs twice from creating a second delivery."""
    digest = hashlib.blake2b(f"{integration_id}:{message_id}".encode(), digest_size=16).digest()
    # uuid.UUID(int=...) checks its arguments, which cost more than the hash (1.3 against 0.7 µs,
    # once per delivery): the value is in range by construction, so it is set as UUID itself does.
    value = _new_object(uuid.UUID)
    _set_attribute(value, "int", (int.from_bytes(digest) & _UUID4_CLEAR) | _UUID4_SET)
    _set_attribute(value, "is_safe", _SAFE_UNKNOWN)
    return value


@dataclass(slots=True)
class NewDelivery:
    """A delivery as the fan-out inserts it: pending, or already in its final state when the
    fan-out sent it at once."""

    integration_id: int
    item_kind: str
    item_id: str
    action: str
    message_id: str
    message: str  # the exact JSON text every attempt sends
    activity_id: str | None = None
    status: str = "pending"
    attempts: int = 0
    next_attempt_at: datetime | None = None  # pending: None means now
    delivered_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str = ""
    last_attempt_id: int | None = None
    id: uuid.UUID | None = None
    raw: bytes = b""

    def __post_init__(self) -> None:
        if self.id is None:
            self.id = delivery_id_for(self.integration_id, self.message_id)
        if not self.raw:  # given by a maker that has the bytes already
            self.raw = self.message.encode()


def activity_delivery(integration_id: int, activity_id: str, raw: bytes) -> NewDelivery:
    """An activity's new delivery (its message id is the activity's id), made by position: the
    dataclass's keyword call cost the fan-out 1.1 µs more a delivery (1.4 against 0.3 µs, its id
    aside). Keep the order of `NewDelivery`'s fields."""
    return NewDelivery(
        integration_id, _ACTIVITY, activity_id, "", activity_id, raw.decode(), activity_id,
        "pending", 0, None, None, None, "", None, None, raw,
    )  # fmt: skip


_ACTIVITY = str(Delivery.ItemKind.ACTIVITY)


@dataclass(frozen=True)
class Claimed:
    id: uuid.UUID
    message: bytes
    action: str = ""  # the connector action that made it (its request may depend on it)


@dataclass(frozen=True)
class RetryState:
    attempts: int
    retry_window_start: datetime
    item_kind: str


@dataclass(frozen=True)
class RetryMark:
    id: uuid.UUID
    status: str  # pending (with next_attempt_at), failed or dead
    next_attempt_at: datetime | None
    error: str


def retry_states(ids: list) -> dict:
    """What a retry is scheduled from, for claimed deliveries (read only when a send failed)."""
    rows = Delivery.objects.filter(pk__in=ids).values_list(
        "pk", "attempts", "retry_window_start", "item_kind"
    )
    return {r[0]: RetryState(r[1], r[2], r[3]) for r in rows}


class DeliveryStore(Protocol):
    def send_slot(
        self, *, integration_id: int, slots: int, wait: float = 0.0
    ) -> AbstractContextManager[bool]: ...
    def fanout_slot(self, *, slots: int) -> AbstractContextManager[bool]: ...
    def request_slot(
        self, *, integration_id: int, slots: int, wait: float = 0.0
    ) -> AbstractContextManager[bool]: ...
    def probe_slot(self, *, integration_id: int) -> AbstractContextManager[bool]: ...
    def activities_claim(self, *, ids: list[str] | None, limit: int, now: datetime) -> list[ActivityRow]: ...
    def activities_waiting(self, *, limit: int) -> int: ...
    def deliveries_insert(
        self, *, rows: list[NewDelivery], now: datetime, may_exist: bool = False
    ) -> dict[int, int]:
        """Insert the rows whose id is not there yet ({integration id: rows inserted}); with
        `may_exist`, some may well be (a backfill's), else rarely."""
        ...

    def claim(
        self, *, integration_id: int, limit: int, due_by: datetime | None, only: list | None
    ) -> list[Claimed]: ...
    def pending_any(self, *, ids: list) -> bool: ...
    def attempt_insert(self, *, attempt: Attempt) -> int: ...
    def mark_delivered(
        self, *, ids: list, attempt_id: int, status_code: int | None, now: datetime
    ) -> None: ...
    def mark_failed(
        self, *, ids: list, attempt_id: int, status_code: int | None, error: str, now: datetime
    ) -> None: ...
    def mark_retry(
        self, *, marks: list[RetryMark], attempt_id: int, status_code: int | None, now: datetime
    ) -> None: ...


def activity_row(activity: Activity) -> ActivityRow:
    """An activity (with its customer) as the fan-out renders it."""
    return ActivityRow(
        id=str(activity.pk),
        app_id=activity.app_id,
        kind=activity.kind,
        timestamp=iso_ms(activity.occurred_at),
        properties=activity.properties or {},
        customer_public_id=str(activity.customer.public_id),
        customer_fields=activity.customer_fields or activity.customer.custom_fields or {},
    )


def uuid_list(ids: list) -> list[uuid.UUID]:
    """Ids as UUIDs (sent in binary: no text form made and parsed per id)."""
    return [x if isinstance(x, uuid.UUID) else uuid.UUID(str(x)) for x in ids]


SEND_SLOTS = 0x48554253  # the advisory-lock class of "requests in flight to an integration"
PROBE_SLOT = 0x48554250  # the advisory-lock class of "the integration's probe is out"
FANOUT_SLOTS = 0x48554246  # the advisory-lock class of "a fan-out of a backlog is running"


def xact_lock_any(lock_class: int, keys: list[int], wait: float) -> bool:
    """Take the first free transaction-level advisory lock of `keys`; with `wait`, poll for up to
    that many seconds while none is free (`hub.locks.xact_lock_first_free`)."""
    with raw_cursor() as cursor:
        return xact_lock_first_free(cursor, lock_class, keys, wait) is not None
