"""OpenAPI schema post-processing: the error answers every API operation can give, documented once."""

from __future__ import annotations

_ERROR = {"$ref": "#/components/schemas/Error"}
_ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}

# Status -> why any operation may answer it (the layer that does, not the endpoint).
_EVERY_OPERATION = {
    "401": "Missing, invalid or revoked credentials (hub.authentication).",
    "429": "Over the API key's rate limit; see the Retry-After header (hub.throttling).",
}
_WITH_A_BODY = {
    "400": "The body is not valid JSON, or not what the operation takes.",
    "413": "The body is over the size limit (hub.middleware, or the operation's own).",
    "415": "The body is not application/json.",
}


def document_common_errors(result: dict, generator, request, public) -> dict:
    """drf-spectacular hook: add 401/429 (and 400/413/415 with a body) where the operation lacks them."""
    result.setdefault("components", {}).setdefault("schemas", {}).setdefault("Error", _ERROR_SCHEMA)
    for path, operations in result.get("paths", {}).items():
        if not path.startswith("/v1/"):
            continue
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            statuses = dict(_EVERY_OPERATION)
            if "requestBody" in operation:
                statuses.update(_WITH_A_BODY)
            for status, description in statuses.items():
                operation["responses"].setdefault(
                    status, {"description": description, "content": {"application/json": {"schema": _ERROR}}}
                )
    return result
