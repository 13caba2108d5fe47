"""Content negotiation: decode request bodies, pick the response form, build list and meta objects.

Requests may be JSON or YAML (patches in their own media types); protobuf is refused with 415 so
clients fall back to JSON. Responses are JSON: a plain object, a `<Kind>List`, a
`meta.k8s.io/v1 Table` (what kubectl get asks for) or PartialObjectMetadata(List).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
import yaml

from pocketkube.api import errors

MAX_BODY_BYTES = 3 * 1024 * 1024

JSON = "application/json"
YAML = "application/yaml"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PROTOBUF = "application/vnd.kubernetes.protobuf"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH, APPLY_PATCH)

_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # LibYAML is ~10x faster


class _YamlLoader(_BaseLoader):  # type: ignore[misc]
    """Safe YAML without timestamp resolution: Kubernetes keeps `2024-01-01T00:00:00Z` a string."""


_YamlLoader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


def _stringify_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {("true" if k is True else "false" if k is False else str(k)) if not isinstance(k, str) else k:
                _stringify_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_keys(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class Accept:
    form: str  # "object", "table", "partial"
    include_object: str = "Metadata"


_ACCEPT_OBJECT = Accept("object")
_accept_cache: dict[str, Accept] = {}


def parse_accept(header: str) -> Accept:
    """Pick the first acceptable form from the Accept header, in the client's order.

    Clients send the same few headers on every request, so answers are remembered (bounded).
    """
    if not header:
        return _ACCEPT_OBJECT
    accept = _accept_cache.get(header)
    if accept is None:
        if len(_accept_cache) >= 256:
            _accept_cache.clear()
        accept = _accept_cache[header] = _parse_accept(header)
    return accept


def _parse_accept(header: str) -> Accept:
    for part in header.split(","):
        params = [p.strip() for p in part.split(";")]
        media = params[0].lower()
        kv = dict(p.split("=", 1) for p in params[1:] if "=" in p)
        as_ = kv.get("as", "")
        if media not in ("application/json", "*/*", "application/*", "application/yaml"):
            continue
        if as_ == "Table" and kv.get("g") == "meta.k8s.io" and kv.get("v") in ("v1", "v1beta1"):
            return Accept("table")
        if as_ in ("PartialObjectMetadata", "PartialObjectMetadataList") and kv.get("g") == "meta.k8s.io":
            return Accept("partial")
        if not as_:
            return Accept("object")
    return Accept("object")


def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def decode_body(body: bytes, content_type: str) -> Any:
    """Decode a JSON or YAML request body; 400 with the parser's words when malformed."""
    mt = media_type(content_type) or JSON
    if len(body) > MAX_BODY_BYTES:
        raise errors.RequestEntityTooLarge(f"Request entity too large: limit is {MAX_BODY_BYTES}")
    if mt == PROTOBUF:
        from pocketkube.api.protobuf import decode_k8s_protobuf

        return decode_k8s_protobuf(body)
    if "protobuf" in mt:
        raise errors.UnsupportedMediaType(f'the body of the request was in an unknown format - accepted media '
                                          f'types include: application/json, application/yaml, {PROTOBUF} ({mt})')
    if not body.strip():
        raise errors.BadRequest("the body of the request was empty")
    if mt in (JSON, JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH) or mt.endswith("+json"):
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise errors.BadRequest(f"error decoding JSON body: {e}") from e
    if mt in (YAML, APPLY_PATCH, "application/x-yaml", "text/yaml"):
        try:
            return _stringify_keys(yaml.load(body, Loader=_YamlLoader))
        except yaml.YAMLError as e:
            raise errors.BadRequest(f"error converting YAML to JSON: {e}") from e
    raise errors.UnsupportedMediaType(f"the body of the request was in an unknown format - accepted media types "
                                      f"include: application/json, application/yaml, {', '.join(PATCH_TYPES)} "
                                      f"(got {mt})")


def decode_object(body: bytes, content_type: str) -> dict[str, Any]:
    obj = decode_body(body, content_type)
    if not isinstance(obj, dict):
        raise errors.BadRequest("Object 'Kind' is missing in the body: it is not a JSON object")
    return obj


def partial_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj.get("metadata", {})}


def success_status(details: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}
