"""The inbound endpoints (integrations/sources/endpoints.py) in the OpenAPI schema.

They are plain Django views, so drf-spectacular does not see them; this hook describes them as they
really answer (the fuzzer, tests/test_api_fuzz.py, checks every answer against it): Segment's
tracking API, the webhook URL, Metronome's and Kable's ingest. Limits are read from the settings
when the schema is generated.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from .formats.segment import MAX_MESSAGE_ID, REQUIRED_BY_TYPE, TYPES

# RFC 3339 as the endpoints take it; dates of 1970-2029 only, so that generated examples are mostly
# real days (the endpoints refuse impossible dates and more than 24 h in the future with a 400).
_RFC3339 = (
    r"^(19[7-9][0-9]|20[0-2][0-9])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
)

_REF = "#/components/schemas/"

_SECURITY_SCHEMES = {
    "SegmentWriteKey": {
        "type": "http",
        "scheme": "basic",
        "description": "A source's write key as the Basic-auth user, empty password (or `writeKey` in "
        "the body).",
    },
    "KableClientId": {
        "type": "apiKey",
        "in": "header",
        "name": "KABLE-CLIENT-ID",
        "description": "The app id.",
    },
    "KableClientSecret": {
        "type": "apiKey",
        "in": "header",
        "name": "KABLE-CLIENT-SECRET",
        "description": "An API key of the app.",
    },
}


def _schemas() -> dict[str, dict]:
    text = {"type": "string"}
    required_text = {"type": "string", "pattern": r"\S", "description": "Not blank."}
    rfc3339 = {"type": "string", "pattern": _RFC3339, "description": "RFC 3339, with Z or an offset."}
    anything: dict = {}
    message_id = {**required_text, "maxLength": MAX_MESSAGE_ID - 1, "description": "Made when absent."}
    schemas: dict[str, dict] = {
        "SegmentMessage": {
            "type": "object",
            "description": "A Segment spec message; `type` is the endpoint's own on /segment/v1/<type>. "
            "`userId` or `anonymousId` is required.",
            "properties": {
                "type": {"type": "string", "enum": list(TYPES)},
                "messageId": message_id,
                "userId": required_text,
                "anonymousId": required_text,
                "event": required_text,
                "name": text,
                "groupId": required_text,
                "previousId": required_text,
                "timestamp": text,
                "sentAt": text,
                "originalTimestamp": text,
                "properties": {"type": "object"},
                "traits": {"type": "object"},
                "context": {"type": "object"},
                "integrations": {"type": "object"},
                "writeKey": {"type": "string", "description": "The write key, when not in Authorization."},
            },
            "anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}],
        },
        "SegmentBatch": {
            "type": "object",
            "required": ["batch"],
            "properties": {
                "batch": {
                    "type": "array",
                    "items": {"allOf": [{"$ref": _REF + "SegmentMessage"}, {"required": ["type"]}]},
                    "maxItems": settings.HUB_SOURCE_BATCH_MAX_MESSAGES,
                },
                "context": {"type": "object", "description": "Defaults merged into each message."},
                "integrations": {"type": "object"},
                "writeKey": text,
            },
        },
        "ChartMogulPayload": {
            "type": "object",
            "description": "What Segment's ChartMogul (Actions) destination posts.",
            "required": ["type"],
            "properties": {
                "type": {"type": "string", "enum": ["Send Contact", "Send Customer"]},
                "message_id": message_id,
                "timestamp": text,
                "sent_at": text,
                "user_id": text,
                "anonymous_id": text,
                "group_id": text,
                "email": text,
                "name": text,
                "company": {"type": "object"},
                "address": {"type": "object"},
            },
        },
        "WebhookPayload": {
            "description": "One message (Segment's or ChartMogul's), or an array of them.",
            "anyOf": [
                {"$ref": _REF + "SegmentMessage"},
                {"$ref": _REF + "ChartMogulPayload"},
                {
                    "type": "array",
                    "items": {
                        "anyOf": [{"$ref": _REF + "SegmentMessage"}, {"$ref": _REF + "ChartMogulPayload"}]
                    },
                    "maxItems": settings.HUB_SOURCE_BATCH_MAX_MESSAGES,
                },
            ],
        },
        "SourceReceipt": {
            "type": "object",
            "required": ["success", "accepted"],
            "properties": {
                "success": {"type": "boolean"},
                "accepted": {"type": "integer", "minimum": 0},
                "rejected": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["index", "messageId", "reason"],
                        "properties": {
                            "index": {"type": "integer", "minimum": 0},
                            "messageId": text,
                            "reason": text,
                        },
                    },
                },
            },
        },
        "SourceError": {
            "type": "object",
            "description": "`error`; a refused single message also carries the receipt.",
            "required": ["error"],
            "properties": {
                "error": text,
                "success": {"type": "boolean"},
                "accepted": {"type": "integer", "minimum": 0},
                "rejected": {"type": "array"},
            },
        },
        "MetronomeEvent": {
            "type": "object",
            "required": ["transaction_id", "customer_id", "timestamp", "event_type"],
            "properties": {
                "transaction_id": required_text,
                "customer_id": required_text,
                "timestamp": rfc3339,
                "event_type": required_text,
                "properties": {"type": "object"},
            },
        },
        "KableEvent": {
            "type": "object",
            "required": ["clientId", "timestamp", "transactionId"],
            "properties": {
                "clientId": required_text,
                "timestamp": rfc3339,
                "transactionId": required_text,
                "data": {"type": "object", "description": "Properties; `eventName` names the event."},
            },
        },
        "KableReceipt": {
            "type": "object",
            "required": ["success", "accepted", "duplicates"],
            "properties": {
                "success": {"type": "boolean"},
                "accepted": {"type": "integer", "minimum": 0},
                "duplicates": {"type": "integer", "minimum": 0},
            },
        },
        "VendorError": {
            "type": "object",
            "description": "The vendor's `{message}` (with `errors` per event); the hub's body-size and "
            "Content-Length checks, before the endpoint, answer `{error}`.",
            "properties": {"message": text, "error": text, "errors": {"type": "array", "items": anything}},
            "anyOf": [{"required": ["message"]}, {"required": ["error"]}],
        },
    }
    for kind in TYPES:
        message = {"$ref": _REF + "SegmentMessage"}
        if kind in REQUIRED_BY_TYPE:
            message = {"allOf": [message, {"required": [REQUIRED_BY_TYPE[kind]]}]}
        schemas[f"Segment{kind.title()}"] = message
    return schemas


def _json_content(schema: str) -> dict:
    return {"application/json": {"schema": {"$ref": _REF + schema}}}


def _responses(ok: dict, error: str) -> dict[str, dict]:
    def err(description: str) -> dict:
        return {"description": description, "content": _json_content(error)}

    return {
        "200": ok,
        "400": err("The body is not JSON or not what the endpoint takes (a refused single message)."),
        "401": err("Missing or invalid credentials."),
        "413": err("The body is over the size limit."),
        "429": {
            **err("Over the rate limit; see the Retry-After header."),
            "headers": {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds."}},
        },
    }


def _operation(
    operation_id: str, summary: str, body: dict, responses: dict, security: list, tag: str, **extra: Any
) -> dict:
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "tags": [tag],
            "security": security,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": responses,
            **extra,
        }
    }


def _paths() -> dict[str, dict]:
    receipt = {
        "description": "Kept (each refused message listed).",
        "content": _json_content("SourceReceipt"),
    }
    paths: dict[str, dict] = {}
    for kind in TYPES:
        paths[f"/segment/v1/{kind}"] = _operation(
            f"segment_{kind}",
            f"Segment tracking API: {kind}",
            {"$ref": _REF + f"Segment{kind.title()}"},
            _responses(receipt, "SourceError"),
            [{"SegmentWriteKey": []}],
            "Segment-compatible",
        )
    paths["/segment/v1/batch"] = _operation(
        "segment_batch",
        "Segment tracking API: batch",
        {"$ref": _REF + "SegmentBatch"},
        _responses(receipt, "SourceError"),
        [{"SegmentWriteKey": []}],
        "Segment-compatible",
    )
    paths["/hooks/{token}"] = _operation(
        "source_webhook",
        "A source's webhook URL (the token in the path is the credential)",
        {"$ref": _REF + "WebhookPayload"},
        _responses(receipt, "SourceError"),
        [],
        "Webhooks",
        parameters=[
            {"name": "token", "in": "path", "required": True, "schema": {"type": "string"}},
            {
                "name": "X-Signature",
                "in": "header",
                "required": False,
                "schema": {"type": "string"},
                "description": "Hex HMAC-SHA1 of the body, required when the source has a shared secret.",
            },
        ],
    )
    paths["/metronome/v1/ingest"] = _operation(
        "metronome_ingest",
        "Metronome-compatible ingest",
        {"type": "array", "items": {"$ref": _REF + "MetronomeEvent"}, "minItems": 1, "maxItems": 100},
        _responses({"description": "Stored (an empty body)."}, "VendorError"),
        [{"BearerApiKey": []}],
        "Metronome-compatible",
    )
    paths["/kable/api/v1/events/create"] = _operation(
        "kable_events_create",
        "Kable-compatible ingest",
        {"anyOf": [{"$ref": _REF + "KableEvent"}, {"type": "array", "items": {"$ref": _REF + "KableEvent"}}]},
        _responses({"description": "Stored.", "content": _json_content("KableReceipt")}, "VendorError"),
        [{"KableClientId": [], "KableClientSecret": []}],
        "Kable-compatible",
    )
    return paths


def document_inbound_endpoints(result: dict, generator, request, public) -> dict:
    """drf-spectacular hook: add the Segment, webhook, Metronome and Kable endpoints to the schema."""
    components = result.setdefault("components", {})
    for name, schema in _schemas().items():
        components.setdefault("schemas", {}).setdefault(name, schema)
    for name, scheme in _SECURITY_SCHEMES.items():
        components.setdefault("securitySchemes", {}).setdefault(name, scheme)
    components["securitySchemes"].setdefault("BearerApiKey", {"type": "http", "scheme": "bearer"})
    result.setdefault("paths", {}).update(_paths())
    return result
