"""Request path parsing follows kube's RequestInfoFactory, quirks included."""

import pytest

from pocketkube.apiserver.request_info import parse_request


@pytest.mark.parametrize(
    ("method", "path", "query", "expect"),
    [
        ("GET", "/api/v1/namespaces/default/pods", {}, ("list", "", "default", "pods", "", "")),
        ("GET", "/api/v1/namespaces/default/pods", {"watch": "true"}, ("watch", "", "default", "pods", "", "")),
        ("GET", "/api/v1/namespaces/default", {}, ("get", "", "", "namespaces", "default", "")),
        ("PUT", "/api/v1/namespaces/x/finalize", {}, ("update", "", "", "namespaces", "x", "finalize")),
        ("PUT", "/api/v1/namespaces/x/status", {}, ("update", "", "", "namespaces", "x", "status")),
        ("PATCH", "/apis/apps/v1/namespaces/d/deployments/web/scale", {},
         ("patch", "apps", "d", "deployments", "web", "scale")),
        ("GET", "/api/v1/nodes/n1", {}, ("get", "", "", "nodes", "n1", "")),
        ("DELETE", "/api/v1/namespaces/d/configmaps", {}, ("deletecollection", "", "d", "configmaps", "", "")),
        ("GET", "/api/v1/watch/namespaces/d/pods", {}, ("watch", "", "d", "pods", "", "")),
        ("POST", "/api/v1/namespaces/d/pods/p/binding", {}, ("create", "", "d", "pods", "p", "binding")),
    ],
)
def test_parse(method: str, path: str, query: dict[str, str], expect: tuple[str, ...]) -> None:
    ri = parse_request(method, path, query)
    assert ri.is_resource
    assert (ri.verb, ri.group, ri.namespace, ri.resource, ri.name, ri.subresource) == expect


def test_non_resource() -> None:
    assert not parse_request("GET", "/api", {}).is_resource
    assert not parse_request("GET", "/apis/apps/v1", {}).is_resource
    assert not parse_request("GET", "/version", {}).is_resource
