"""Usage data: the event store, ingest services and metrics."""
