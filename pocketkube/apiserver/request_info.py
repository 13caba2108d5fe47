"""Turn a request path into what it addresses: group, version, namespace, resource, name, verb.

Follows k8s.io/apiserver/pkg/endpoints/request/requestinfo.go, including its quirks:
`/api/v1/namespaces/NAME/status|finalize` are subresources of the namespace, and the legacy
`/watch/` path segment turns a list into a watch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote

_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_METHOD_VERBS = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
                 "DELETE": "delete"}


@dataclass(slots=True)
class RequestInfo:
    is_resource: bool
    path: str
    verb: str = ""
    api_prefix: str = ""  # "api" or "apis"
    group: str = ""
    version: str = ""
    namespace: str = ""
    resource: str = ""
    name: str = ""
    subresource: str = ""
    parts: tuple[str, ...] = ()


def parse_request(method: str, path: str, query: Mapping[str, str]) -> RequestInfo:
    if "%" in path:
        parts = [unquote(p) for p in path.strip("/").split("/") if p]
    else:
        parts = [p for p in path.strip("/").split("/") if p]
    info = RequestInfo(is_resource=False, path=path, parts=tuple(parts))
    method_verb = _METHOD_VERBS.get(method) or method.lower()
    info.verb = method_verb
    if not parts or parts[0] not in ("api", "apis"):
        return info
    info.api_prefix = parts[0]
    rest = parts[1:]
    if info.api_prefix == "api":
        if not rest:
            return info
        info.version = rest[0]
        rest = rest[1:]
    else:
        if len(rest) < 2:
            if rest:
                info.group = rest[0]
            return info
        info.group, info.version = rest[0], rest[1]
        rest = rest[2:]
    if not rest:
        return info
    info.is_resource = True
    watch_path = False
    if rest[0] == "watch":
        watch_path = True
        rest = rest[1:]
    if rest and rest[0] == "namespaces":
        if len(rest) > 1:
            info.namespace = rest[1]
            if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
                rest = rest[2:]
    if rest:
        info.resource = rest[0]
    if len(rest) > 1:
        info.name = rest[1]
    if len(rest) > 2:
        info.subresource = rest[2]
    if info.resource == "namespaces" and len(rest) >= 2 and not info.name:
        info.name = rest[1]
    if info.resource == "namespaces":
        info.namespace = ""
    if len(rest) > 3:
        info.subresource = "/".join(rest[2:])  # e.g. proxy paths; rejected later as unknown
    if method_verb == "get" and not info.name:
        info.verb = "watch" if watch_path or query.get("watch") in ("1", "true", "True") else "list"
    elif method_verb == "get" and watch_path:
        info.verb = "watch"
    elif method_verb == "delete" and not info.name:
        info.verb = "deletecollection"
    return info
