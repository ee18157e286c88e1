"""gunicorn's logger for the hub (gunicorn.conf.py): credentials never reach its access or error log.

The access log's atoms are the request line, path, query string, referer and headers as they
arrived: a webhook URL carries its token in the path, a Segment client sends its write key as the
Basic-auth user, and a careless client puts an API key in `?api_key=`. Every atom goes through
hub.log_redaction.redact (the one redaction the hub's own logs use), the user atom is never
filled in, credential headers are dropped whole, and both loggers also carry the hub's
SecretRedactionFilter, so a custom `access_log_format` or an error message (gunicorn's "Error
handling request /hooks/…") is redacted too.
"""

from __future__ import annotations

import re

from gunicorn.glogging import Logger

from .log_redaction import REDACTED, SecretRedactionFilter, redact

# Header (`{name}i`, `{name}o`) and environ (`{name}e`) atoms whose whole value is a credential.
_CREDENTIAL_ATOM = re.compile(r"^\{.*(authorization|token|secret|key|cookie|signature).*\}[ioe]$", re.I)
_FILTER = SecretRedactionFilter()


class RedactingLogger(Logger):
    """gunicorn's Logger with every access-log atom and every log record redacted."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for log in (self.error_log, self.access_log):
            log.addFilter(_FILTER)  # the same instance each time: a reload adds it once

    def atoms(self, resp, req, environ, request_time) -> dict:
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["u"] = "-"
        for name, value in atoms.items():
            if isinstance(value, str):
                atoms[name] = REDACTED if _CREDENTIAL_ATOM.match(name) else redact(value)
        return atoms
