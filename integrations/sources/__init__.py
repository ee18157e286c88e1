"""Inbound sources: Segment-compatible endpoints and webhook URLs, the inbox of received messages,
mappings with triggers, and the worker that turns messages into usage events, customers and contacts.

A Django app of its own (label `sources`) inside the `integrations` package, so its models and
migrations stay apart from the outbound integrations beside it.
"""
