"""The delivery engine's tables through the ORM, for databases other than PostgreSQL (SQLite
under `make run`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from hub.models import ActivityOutbox

from .delivery_rows import ActivityRow, Claimed, NewDelivery, RetryMark, activity_row
from .models import Attempt, Delivery


class OrmStore:
    """The same operations through the ORM (SQLite: its transactions hold the write lock, so the
    claims need no row locks)."""

    @contextmanager
    def send_slot(self, *, integration_id: int, slots: int, wait: float = 0.0) -> Iterator[bool]:
        yield True  # one writer at a time already

    @contextmanager
    def fanout_slot(self, *, slots: int) -> Iterator[bool]:
        yield True  # one writer at a time already

    @contextmanager
    def request_slot(self, *, integration_id: int, slots: int, wait: float = 0.0) -> Iterator[bool]:
        yield True  # one writer at a time already

    @contextmanager
    def probe_slot(self, *, integration_id: int) -> Iterator[bool]:
        yield True  # one writer at a time already

    def activities_waiting(self, *, limit: int) -> int:
        return ActivityOutbox.objects.all()[:limit].count()

    def activities_claim(self, *, ids: list[str] | None, limit: int, now: datetime) -> list[ActivityRow]:
        queued = ActivityOutbox.objects.select_related("activity__customer")
        if ids is not None:
            queued = queued.filter(activity_id__in=ids)
        picked = list(queued.order_by("id")[:limit])
        ActivityOutbox.objects.filter(pk__in=[q.pk for q in picked]).delete()
        return [activity_row(q.activity) for q in picked]

    def deliveries_insert(
        self, *, rows: list[NewDelivery], now: datetime, may_exist: bool = False
    ) -> dict[int, int]:
        created: dict[int, int] = {}
        for r in rows:
            _, new = Delivery.objects.get_or_create(
                id=r.id,
                defaults={
                    "integration_id": r.integration_id,
                    "message_id": r.message_id,
                    "activity_id": r.activity_id,
                    "item_kind": r.item_kind,
                    "item_id": r.item_id,
                    "action": r.action,
                    "message": r.message,
                    "status": r.status,
                    "attempts": r.attempts,
                    "next_attempt_at": (r.next_attempt_at or now) if r.status == "pending" else None,
                    "delivered_at": r.delivered_at,
                    "last_status_code": r.last_status_code,
                    "last_error": r.last_error,
                    "last_attempt_id": r.last_attempt_id,
                    "retry_window_start": now,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            if new:
                created[r.integration_id] = created.get(r.integration_id, 0) + 1
        return created

    def claim(
        self, *, integration_id: int, limit: int, due_by: datetime | None, only: list | None
    ) -> list[Claimed]:
        qs = Delivery.objects.filter(integration_id=integration_id, status=Delivery.Status.PENDING)
        if only is not None:
            qs = qs.filter(pk__in=only)
        elif due_by is not None:
            qs = qs.filter(next_attempt_at__lte=due_by)
        rows = qs.order_by("next_attempt_at").values_list("id", "message", "action")[:limit]
        return [Claimed(r[0], r[1].encode(), r[2]) for r in rows]

    def pending_any(self, *, ids: list) -> bool:
        return Delivery.objects.filter(pk__in=ids, status=Delivery.Status.PENDING).exists()

    def attempt_insert(self, *, attempt: Attempt) -> int:
        attempt.delivery_ids = [str(i) for i in attempt.delivery_ids]  # ids may be UUIDs
        attempt.save()
        return attempt.pk

    def mark_delivered(self, *, ids: list, attempt_id: int, status_code: int | None, now: datetime) -> None:
        from django.db.models import F

        Delivery.objects.filter(pk__in=ids).update(
            status=Delivery.Status.DELIVERED,
            attempts=F("attempts") + 1,
            delivered_at=now,
            next_attempt_at=None,
            last_error="",
            last_status_code=status_code,
            last_attempt_id=attempt_id,
            updated_at=now,
        )

    def mark_failed(
        self, *, ids: list, attempt_id: int, status_code: int | None, error: str, now: datetime
    ) -> None:
        from django.db.models import F

        Delivery.objects.filter(pk__in=ids).update(
            status=Delivery.Status.FAILED,
            attempts=F("attempts") + 1,
            next_attempt_at=None,
            last_error=error,
            last_status_code=status_code,
            last_attempt_id=attempt_id,
            updated_at=now,
        )

    def mark_retry(
        self, *, marks: list[RetryMark], attempt_id: int, status_code: int | None, now: datetime
    ) -> None:
        from django.db.models import F

        for m in marks:
            Delivery.objects.filter(pk=m.id).update(
                status=m.status,
                attempts=F("attempts") + 1,
                next_attempt_at=m.next_attempt_at,
                last_error=m.error,
                last_status_code=status_code,
                last_attempt_id=attempt_id,
                updated_at=now,
            )
