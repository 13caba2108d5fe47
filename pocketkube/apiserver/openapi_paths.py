"""The `paths` of an /openapi/v3 group-version document, generated from the resource table.

For every resource: the collection and item paths (plus the all-namespaces list for namespaced
ones) and each subresource, with the operations its verbs allow. Every operation carries
`x-kubernetes-group-version-kind` and `x-kubernetes-action`, and writes declare `dryRun`,
`fieldManager` and `fieldValidation` inline — kubectl's default `--validate=strict` looks for
exactly a PATCH operation with the object's GVK and a `fieldValidation` parameter
(cli-runtime queryParamVerifierV3) before it will send `fieldValidation=Strict`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pocketkube.api.resources import ResourceInfo, Subresource
from pocketkube.apiserver.openapi_schemas import COMPONENTS_PREFIX

Operation = dict[str, Any]
# (group, version, kind) -> component name, or None when the document has no schema for it.
ComponentLookup = Callable[[str, str, str], "str | None"]

DELETE_OPTIONS = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"
STATUS = "io.k8s.apimachinery.pkg.apis.meta.v1.Status"
PATCH = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch"
WATCH_EVENT = "io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent"

_RESPONSE_TYPES = ("application/json", "application/yaml")
_PATCH_TYPES = (
    "application/apply-patch+yaml",
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
)


def _param(name: str, where: str, description: str, type_: str = "string", **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": type_, "uniqueItems": True}
    out: dict[str, Any] = {"description": description, "in": where, "name": name, "schema": schema, **extra}
    return out


P_NAME = _param("name", "path", "name of the resource", required=True)
P_NAMESPACE = _param("namespace", "path", "object name and auth scope, such as for teams and projects",
                     required=True)
P_PRETTY = _param("pretty", "query", "If 'true', then the output is pretty printed.")
P_DRY_RUN = _param("dryRun", "query", "When present, indicates that modifications should not be persisted. "
                   "Valid values are: - All: all dry run stages will be processed")
P_FIELD_MANAGER = _param("fieldManager", "query", "fieldManager is a name associated with the actor or "
                         "entity that is making these changes.")
P_FIELD_VALIDATION = _param(
    "fieldValidation", "query",
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) "
    "containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown "
    "fields that are silently dropped from the object, and will ignore all but the last duplicate field "
    "that the decoder encounters. - Warn: This will send a warning via the standard warning response "
    "header for each unknown field that is dropped from the object, and for each duplicate field that is "
    "encountered. - Strict: This will fail the request with a BadRequest error if any unknown fields "
    "would be dropped from the object, or if any duplicate fields are present. The error returned from "
    "the server will contain all unknown and duplicate fields encountered.")
P_FORCE = _param("force", "query", "Force is going to \"force\" Apply requests. It means user will "
                 "re-acquire conflicting fields owned by other people.", "boolean")
_WRITE = [P_DRY_RUN, P_FIELD_MANAGER, P_FIELD_VALIDATION]
_LIST = [
    _param("allowWatchBookmarks", "query", "allowWatchBookmarks requests watch events with type "
           "\"BOOKMARK\".", "boolean"),
    _param("continue", "query", "The continue option should be set when retrieving more results from "
           "the server."),
    _param("fieldSelector", "query", "A selector to restrict the list of returned objects by their fields."),
    _param("labelSelector", "query", "A selector to restrict the list of returned objects by their labels."),
    _param("limit", "query", "limit is a maximum number of responses to return for a list call.", "integer"),
    _param("resourceVersion", "query", "resourceVersion sets a constraint on what resource versions a "
           "request may be served from."),
    _param("resourceVersionMatch", "query", "resourceVersionMatch determines how resourceVersion is "
           "applied to list calls."),
    _param("sendInitialEvents", "query", "`sendInitialEvents=true` may be set together with `watch=true`.",
           "boolean"),
    _param("timeoutSeconds", "query", "Timeout for the list/watch call.", "integer"),
    _param("watch", "query", "Watch for changes to the described resources and return them as a stream "
           "of add, update, and remove notifications.", "boolean"),
]
_DELETE = [
    P_DRY_RUN,
    _param("gracePeriodSeconds", "query", "The duration in seconds before the object should be deleted.",
           "integer"),
    _param("orphanDependents", "query", "Deprecated: please use the PropagationPolicy.", "boolean"),
    _param("propagationPolicy", "query", "Whether and how garbage collection will be performed."),
]
_LOG = [
    _param("container", "query", "The container for which to stream logs."),
    _param("follow", "query", "Follow the log stream of the pod.", "boolean"),
    _param("insecureSkipTLSVerifyBackend", "query", "Skip verifying the kubelet's serving certificate.",
           "boolean"),
    _param("limitBytes", "query", "The number of bytes to read from the server before terminating.",
           "integer"),
    _param("previous", "query", "Return previous terminated container logs.", "boolean"),
    _param("sinceSeconds", "query", "A relative time in seconds before the current time.", "integer"),
    _param("tailLines", "query", "The number of lines from the end of the logs to show.", "integer"),
    _param("timestamps", "query", "Add an RFC3339 timestamp at the beginning of every line.", "boolean"),
]
_STREAMS = [
    _param("container", "query", "The container in which to execute the command."),
    _param("stderr", "query", "Redirect the standard error stream of the pod.", "boolean"),
    _param("stdin", "query", "Redirect the standard input stream of the pod.", "boolean"),
    _param("stdout", "query", "Redirect the standard output stream of the pod.", "boolean"),
    _param("tty", "query", "TTY if true indicates that a tty will be allocated.", "boolean"),
]
_CONNECT_PARAMS: dict[str, list[dict[str, Any]]] = {
    "exec": [_param("command", "query", "Command is the remote command to execute."), *_STREAMS],
    "attach": _STREAMS,
    "portforward": [_param("ports", "query", "List of ports to forward.", "integer")],
}


def _content(ref: str | None, types: tuple[str, ...] = _RESPONSE_TYPES) -> dict[str, Any]:
    schema: dict[str, Any] = {"$ref": COMPONENTS_PREFIX + ref} if ref else {"type": "string"}
    return {t: {"schema": schema} for t in types}


def _responses(ref: str | None, *codes: str) -> dict[str, Any]:
    out: dict[str, Any] = {c: {"description": _CODE_TEXT[c], "content": _content(ref)} for c in codes}
    out["401"] = {"description": "Unauthorized"}
    return out


_CODE_TEXT = {"200": "OK", "201": "Created", "202": "Accepted"}


_VERB_TEXT = {
    "list": "list or watch objects of kind {kind}",
    "create": "create {what}",
    "delete": "delete {what}",
    "read": "read the specified {what}",
    "replace": "replace the specified {what}",
    "patch": "partially update the specified {what}",
    "connectGet": "connect GET requests to {what}",
    "connectPost": "connect POST requests to {what}",
}


def _describe(verb: str, kind: str, name: str) -> str:
    if name.startswith("Collection"):
        return f"delete collection of {kind}"
    sub = name.removeprefix("Namespaced").removeprefix(kind).removesuffix("ForAllNamespaces")
    what = f"{sub.lower()} of {kind}" if sub else kind
    return _VERB_TEXT.get(verb, "{what}").format(kind=kind, what=what)


def operation_prefix(group: str, version: str) -> str:
    """kube's operationId infix: "" → CoreV1, rbac.authorization.k8s.io → RbacAuthorizationV1."""
    if not group:
        return "Core" + version.capitalize()
    name = group.removesuffix(".k8s.io")
    return "".join(p[:1].upper() + p[1:] for p in name.replace("-", ".").split(".")) + version.capitalize()


def _tag(group: str, version: str) -> str:
    if not group:
        return f"core_{version}"
    parts = group.removesuffix(".k8s.io").split(".")
    return parts[0] + "".join(p.capitalize() for p in parts[1:]) + f"_{version}"


class _PathBuilder:
    def __init__(self, info: ResourceInfo, lookup: ComponentLookup) -> None:
        self.info = info
        self.lookup = lookup
        self.prefix = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
        self.op_prefix = operation_prefix(info.group, info.version)
        self.tag = _tag(info.group, info.version)
        self.paths: dict[str, dict[str, Any]] = {}

    def _op(self, verb: str, name: str, action: str, gvk: tuple[str, str, str], **body: Any) -> Operation:
        op: Operation = {
            "description": _describe(verb, self.info.kind, name),
            "operationId": f"{verb}{self.op_prefix}{name}",
            "tags": [self.tag],
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": {"group": gvk[0], "kind": gvk[2], "version": gvk[1]},
        }
        op.update(body)
        return op

    def build(self) -> dict[str, dict[str, Any]]:
        info = self.info
        gvk = (info.group, info.version, info.kind)
        obj = self.lookup(*gvk)
        lst = self.lookup(info.group, info.version, info.list_kind_name)
        verbs = set(info.verbs)
        scope = "Namespaced" if info.namespaced else ""
        coll_params = [P_NAMESPACE, P_PRETTY] if info.namespaced else [P_PRETTY]
        base = f"{self.prefix}/namespaces/{{namespace}}/{info.plural}" if info.namespaced \
            else f"{self.prefix}/{info.plural}"
        kind = info.kind
        coll: dict[str, Any] = {}
        if "list" in verbs:
            coll["get"] = self._op("list", f"{scope}{kind}", "list", gvk, parameters=_LIST,
                                   responses=_responses(lst, "200"))
        if "create" in verbs:
            coll["post"] = self._op("create", f"{scope}{kind}", "post", gvk, parameters=_WRITE,
                                    requestBody=self._body(obj), responses=_responses(obj, "200", "201", "202"))
        if "deletecollection" in verbs:
            coll["delete"] = self._op("delete", f"Collection{scope}{kind}", "deletecollection", gvk,
                                      parameters=[*_DELETE, *_LIST], requestBody=self._body(DELETE_OPTIONS),
                                      responses=_responses(STATUS, "200"))
        if coll:
            coll["parameters"] = coll_params
            self.paths[base] = coll
        if info.namespaced and "list" in verbs:
            self.paths[f"{self.prefix}/{info.plural}"] = {
                "get": self._op("list", f"{kind}ForAllNamespaces", "list", gvk, parameters=_LIST,
                                responses=_responses(lst, "200")),
                "parameters": [P_PRETTY],
            }
        item_params = [P_NAME, *coll_params]
        item = self._item(f"{scope}{kind}", gvk, obj, verbs)
        if item:
            item["parameters"] = item_params
            self.paths[f"{base}/{{name}}"] = item
        for sub in info.subresources:
            ops = self._subresource(sub, f"{scope}{kind}")
            if ops:
                ops["parameters"] = item_params
                self.paths[f"{base}/{{name}}/{sub.name}"] = ops
        return self.paths

    def _body(self, ref: str | None, types: tuple[str, ...] = ("*/*",)) -> dict[str, Any]:
        return {"content": _content(ref, types), "required": True}

    def _item(self, name: str, gvk: tuple[str, str, str], ref: str | None, verbs: set[str]) -> dict[str, Any]:
        ops: dict[str, Any] = {}
        if "get" in verbs:
            ops["get"] = self._op("read", name, "get", gvk, responses=_responses(ref, "200"))
        if "update" in verbs:
            ops["put"] = self._op("replace", name, "put", gvk, parameters=_WRITE, requestBody=self._body(ref),
                                  responses=_responses(ref, "200", "201"))
        if "patch" in verbs:
            types = _PATCH_TYPES if not self.info.custom else tuple(
                t for t in _PATCH_TYPES if "strategic" not in t)
            ops["patch"] = self._op("patch", name, "patch", gvk, parameters=[*_WRITE, P_FORCE],
                                    requestBody=self._body(PATCH, types),
                                    responses=_responses(ref, "200", "201"))
        if "delete" in verbs:
            ops["delete"] = self._op("delete", name, "delete", gvk, parameters=_DELETE,
                                     requestBody=self._body(DELETE_OPTIONS),
                                     responses=_responses(ref if ref else STATUS, "200", "202"))
        return ops

    def _subresource(self, sub: Subresource, name: str) -> dict[str, Any]:
        info = self.info
        gvk = (sub.group or info.group, sub.version or info.version, sub.kind)
        title = sub.name.capitalize()
        if sub.name in _CONNECT_PARAMS:
            ops: dict[str, Any] = {}
            for method, verb in (("get", "Get"), ("post", "Post")):
                ops[method] = self._op(f"connect{verb}", f"{name}{title}", "connect", gvk,
                                       parameters=_CONNECT_PARAMS[sub.name],
                                       responses=_responses(None, "200"))
            return ops
        if sub.name == "log":
            return {"get": self._op("read", f"{name}Log", "get", gvk, parameters=_LOG,
                                    responses={"200": {"description": "OK", "content": _content(
                                        None, ("text/plain", "application/json"))},
                                        "401": {"description": "Unauthorized"}})}
        ref = self.lookup(*gvk)
        verbs = set(sub.verbs)
        if verbs == {"create"}:
            return {"post": self._op("create", f"{name}{title}", "post", gvk, parameters=_WRITE,
                                     requestBody=self._body(ref),
                                     responses=_responses(ref, "200", "201", "202"))}
        return self._item(f"{name}{title}", gvk, ref, verbs)


def resource_paths(info: ResourceInfo, lookup: ComponentLookup) -> dict[str, dict[str, Any]]:
    """All paths (with their operations) that serve `info`, keyed like kube's OpenAPI."""
    return _PathBuilder(info, lookup).build()
