"""Signed webhooks (the Standard Webhooks spec), out only: the connector in `connector.py`."""

from __future__ import annotations

from .. import Vendor, vendor_register
from .connector import WebhookConnector

vendor_register(Vendor(key="webhook", label="Webhook", connector=WebhookConnector()))
