"""Keeping credentials out of the logs: a logging filter every handler in LOGGING carries.

It rewrites a record's message, traceback and stack in place, so whatever handler comes after
sees the redacted text too. Covered: the hub's API keys and customer tokens wherever they
appear, the values of the credential headers (Authorization, X-Mantle-App-Api-Key,
X-Mantle-Customer-Api-Token) in any of their spellings, HTTP Basic credentials (Segment write
keys travel that way), `writeKey` fields, credentials inside URLs, the sources' write keys
(`wk_…`) and webhook tokens (`wh_…`) wherever they appear, whatever follows `/hooks/` in a path (a
webhook URL's token, even a wrong one), and query parameters named like a credential (`token=`,
`key=`, `api_key=`, `secret=`, `password=`, `signature=`, ...). gunicorn's logs go through the
same `redact` (hub.gunicorn_logger).
"""

from __future__ import annotations

import functools
import logging
import re

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

REDACTED = "[REDACTED]"

_CUSTOMER_TOKEN = re.compile(r"hub_ct_[A-Za-z0-9_\-]+")
# integrations.sources.services' WRITE_KEY_PREFIX and WEBHOOK_TOKEN_PREFIX (a test checks they
# agree). Real values have 32 characters after the prefix; asking 16 spares names like `wh_token`.
_SOURCE_CREDENTIAL = re.compile(r"(?<![A-Za-z0-9])(wk_|wh_)[A-Za-z0-9_\-]{16,}")
_HEADER = re.compile(
    r"""((?:HTTP_)?(?:authorization|x[-_]mantle[-_]app[-_]api[-_]key|x[-_]mantle[-_]customer[-_]api[-_]token)"""
    r"""['"]?\s*[:=]\s*['"]?)((?:bearer|basic|token)\s+)?+(?!\[REDACTED\])[^'"\s,;}\]]+""",
    re.IGNORECASE,
)
# Basic credentials outside a header line; the lookahead spares prose such as "basic authentication".
_BASIC = re.compile(r"\b(basic\s+)(?=(?-i:[A-Za-z0-9+/]*[A-Z0-9+/]))[A-Za-z0-9+/]{12,}={0,2}", re.IGNORECASE)
_WRITE_KEY = re.compile(
    r"""(write[_-]?key['"]?\s*[:=]\s*['"]?)(?!\[REDACTED\])[^'"\s,;}\]]+""", re.IGNORECASE
)
_URL_CREDENTIALS = re.compile(r"([a-z][a-z0-9+.\-]*://)[^/\s@]+@", re.IGNORECASE)
# The segment after /hooks/ is a webhook token (integrations/sources/urls.py), valid or not; a
# source credential's prefix is kept, which tells a webhook token from a misplaced write key.
_WEBHOOK_PATH = re.compile(r"(/hooks/(?:wh_|wk_)?)(?!\[REDACTED\])[^/?#\s\"']+")
# A query parameter (or form field) whose name ends like a credential's: its value, up to & ; # or a space.
_CREDENTIAL_PARAM = re.compile(
    r"""([?&;][\w.%\-]*(?:token|key|secret|password|passwd|signature|auth)=)(?!\[REDACTED\])[^&;#\s"']+""",
    re.IGNORECASE,
)


def _configured_api_key_prefix() -> str:
    try:
        return settings.HUB_API_KEY_PREFIX
    except ImproperlyConfigured:  # gunicorn's master process logs without Django's settings
        return ""


@functools.lru_cache(maxsize=4)
def _api_key_pattern(prefix: str) -> re.Pattern:
    prefixes = sorted({prefix, "hub_live_"} - {""}, key=len, reverse=True)
    return re.compile("(" + "|".join(map(re.escape, prefixes)) + r")[A-Za-z0-9_\-]+")


def redact(text: str) -> str:
    """`text` with every credential the hub knows how to spot replaced by [REDACTED] (idempotent)."""
    text = _HEADER.sub(lambda m: m[1] + (m[2] or "") + REDACTED, text)
    text = _WRITE_KEY.sub(r"\1" + REDACTED, text)
    text = _URL_CREDENTIALS.sub(r"\1" + REDACTED + "@", text)
    text = _WEBHOOK_PATH.sub(r"\1" + REDACTED, text)
    text = _CREDENTIAL_PARAM.sub(r"\1" + REDACTED, text)
    text = _BASIC.sub(r"\1" + REDACTED, text)
    text = _api_key_pattern(_configured_api_key_prefix()).sub(r"\1" + REDACTED, text)
    text = _SOURCE_CREDENTIAL.sub(r"\1" + REDACTED, text)
    return _CUSTOMER_TOKEN.sub("hub_ct_" + REDACTED, text)


class SecretRedactionFilter(logging.Filter):
    """Redact credentials from the record's message, traceback and stack (never drops a record)."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: let the handler report it as it would
            return True
        record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
