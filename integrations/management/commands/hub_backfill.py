import time
from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from hub.errors import HubError
from integrations import delivery
from integrations.backfill import backfill_run, backfill_start
from integrations.models import Backfill, Integration


def _when(text: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"not an ISO-8601 date or time: {text!r}") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Send a destination the stored usage events of a time range, or (--items customers) the customers "
        "the hub got in it with their contacts (a backfill), printing progress. "
        "By default a worker runs it; --inline runs and sends it in this process."
    )

    def add_arguments(self, parser):
        parser.add_argument("--workspace", required=True, help="the workspace's slug")
        parser.add_argument("--destination", required=True, help="the destination's name")
        parser.add_argument("--since", required=True, help="start (ISO-8601, UTC unless an offset is given)")
        parser.add_argument("--until", default="", help="end, exclusive (default: now)")
        parser.add_argument("--inline", action="store_true", help="run it here instead of in a worker")
        parser.add_argument(
            "--items", choices=Backfill.Items.values, default=Backfill.Items.USAGE_EVENTS,
            help="what to send: usage events (default) or customers and their contacts",
        )  # fmt: skip

    def handle(self, *args, workspace, destination, since, until, inline, items, **options):
        integration = Integration.objects.filter(workspace__slug=workspace, name__iexact=destination).first()
        if integration is None:
            raise CommandError(f"no destination {destination!r} in workspace {workspace!r}")
        try:
            backfill = backfill_start(
                integration=integration,
                since=_when(since),
                until=_when(until) if until else timezone.now(),
                by="manage.py hub_backfill",
                enqueue=not inline,
                items=items,
            )
        except HubError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"backfill {backfill.pk}: {backfill.total} {backfill.noun} of {integration.name}")
        if inline:

            def send(created):
                if created:
                    delivery.deliveries_send(integration_id=integration.pk)

            while backfill_run(backfill_id=backfill.pk, budget_seconds=5, on_chunk=send):
                self._progress(backfill.pk)
            delivery.deliveries_send(integration_id=integration.pk)
        else:
            while Backfill.objects.filter(pk=backfill.pk, status=Backfill.Status.RUNNING).exists():
                self._progress(backfill.pk)
                time.sleep(1)
        self._progress(backfill.pk)

    def _progress(self, pk: int) -> None:
        b = Backfill.objects.get(pk=pk)
        self.stdout.write(f"{b.status}: {b.done} of {b.total} {b.noun} walked, {b.queued} deliveries queued")
