"""What operators see: request ids that follow a request into its tasks (`request_id`), JSON log
lines (`logging_json`), and the Prometheus endpoint (`prometheus`, with the figures read from
PostgreSQL and the broker at scrape time in `figures`). See docs/operations.md."""
