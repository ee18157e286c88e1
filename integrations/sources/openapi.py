"""The inbound endpoints (each platform's, in `integrations/vendors/`) in the OpenAPI schema.

They are plain Django views, so drf-spectacular does not see them; this hook adds each vendor's
fragment (its schemas, security schemes and paths), describing the endpoints as they really answer
(the fuzzer, tests/test_api_fuzz.py, checks every answer against it), and the pieces they share:
the inbox's receipt and error, the vendors' error shape, and the helpers the fragments are written
with. Limits are read from the settings when the schema is generated.
"""

from __future__ import annotations

from typing import Any

from integrations.vendors import vendors_all

# RFC 3339 as the endpoints take it; dates of 1970-2029 only, so that generated examples are mostly
# real days (the endpoints refuse impossible dates and more than 24 h in the future with a 400).
_RFC3339 = (
    r"^(19[7-9][0-9]|20[0-2][0-9])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$"
)

REF = "#/components/schemas/"
TEXT = {"type": "string"}
REQUIRED_TEXT = {"type": "string", "pattern": r"\S", "description": "Not blank."}
RFC3339 = {"type": "string", "pattern": _RFC3339, "description": "RFC 3339, with Z or an offset."}


def _shared_schemas() -> dict[str, dict]:
    return {
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
                            "messageId": TEXT,
                            "reason": TEXT,
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
                "error": TEXT,
                "success": {"type": "boolean"},
                "accepted": {"type": "integer", "minimum": 0},
                "rejected": {"type": "array"},
            },
        },
        "VendorError": {
            "type": "object",
            "description": "The vendor's `{message}` (with `errors` per event); the hub's body-size and "
            "Content-Length checks, before the endpoint, answer `{error}`.",
            "properties": {"message": TEXT, "error": TEXT, "errors": {"type": "array", "items": {}}},
            "anyOf": [{"required": ["message"]}, {"required": ["error"]}],
        },
    }


def json_content(schema: str) -> dict:
    """A JSON body of the named component schema."""
    return {"application/json": {"schema": {"$ref": REF + schema}}}


def responses(ok: dict, error: str) -> dict[str, dict]:
    """An inbound endpoint's answers: `ok`, and its errors in the `error` schema."""

    def err(description: str) -> dict:
        return {"description": description, "content": json_content(error)}

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


def operation(
    operation_id: str, summary: str, body: dict, answers: dict, security: list, tag: str, **extra: Any
) -> dict:
    """The path item of a POST endpoint taking a JSON body."""
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "tags": [tag],
            "security": security,
            "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
            "responses": answers,
            **extra,
        }
    }


def webhook_item_schemas() -> list[str]:
    """The schemas of the items a source's webhook URL takes, one per format, in vendor order."""
    return [name for vendor in vendors_all() if vendor.openapi for name in vendor.openapi.webhook_items]


def document_inbound_endpoints(result: dict, generator, request, public) -> dict:
    """drf-spectacular hook: add every vendor's inbound endpoints to the schema."""
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemes = components.setdefault("securitySchemes", {})
    for name, schema in _shared_schemas().items():
        schemas.setdefault(name, schema)
    paths = result.setdefault("paths", {})
    for vendor in vendors_all():
        if vendor.openapi is None:
            continue
        for name, schema in vendor.openapi.schemas().items():
            schemas.setdefault(name, schema)
        for name, scheme in vendor.openapi.security_schemes.items():
            schemes.setdefault(name, scheme)
        paths.update(vendor.openapi.paths())
    schemes.setdefault("BearerApiKey", {"type": "http", "scheme": "bearer"})
    return result
