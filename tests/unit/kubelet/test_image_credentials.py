"""Docker config JSON parsing, credential lookup, registry error wording and auth challenges."""

from __future__ import annotations

import base64
import json

import pytest

from pocketkube.kubelet.images import ImageError, credentials_from_dockerconfigjson, lookup_credentials
from pocketkube.kubelet.images.puller import registry_base_url
from pocketkube.kubelet.images.registry_client import parse_challenge, registry_error_message


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_dockerconfigjson_shapes() -> None:
    data = json.dumps({"auths": {
        "https://index.docker.io/v1/": {"auth": _b64("hub:pw:with:colons")},
        "http://127.0.0.1:5000": {"username": "u", "password": "p"},
        "*.example.com": {"auth": _b64("wild:card")},
        "empty.io": {},
    }}).encode()
    creds = credentials_from_dockerconfigjson(data)
    assert creds == {"docker.io": ("hub", "pw:with:colons"), "127.0.0.1:5000": ("u", "p"),
                     "*.example.com": ("wild", "card")}
    legacy = json.dumps({"quay.io": {"auth": _b64("q:r"), "email": "x@y"}}).encode()
    assert credentials_from_dockerconfigjson(legacy) == {"quay.io": ("q", "r")}
    with pytest.raises(ImageError, match="invalid docker config JSON"):
        credentials_from_dockerconfigjson(b"{not json")
    with pytest.raises(ImageError, match="not user:password"):
        credentials_from_dockerconfigjson(json.dumps({"auths": {"a.io": {"auth": _b64("nocolon")}}}).encode())


def test_lookup() -> None:
    creds = {"docker.io": ("hub", "1"), "127.0.0.1:5000": ("local", "2"), "*.example.com": ("wild", "3"),
             "plain.io": ("host", "4")}
    assert lookup_credentials(creds, "docker.io") == ("hub", "1")
    assert lookup_credentials(creds, "127.0.0.1:5000") == ("local", "2")
    assert lookup_credentials(creds, "127.0.0.1:5001") is None
    assert lookup_credentials(creds, "reg.example.com") == ("wild", "3")
    assert lookup_credentials(creds, "plain.io:443") == ("host", "4")
    assert lookup_credentials(None, "docker.io") is None


def test_registry_error_wording() -> None:
    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{"Tag":"1"}}]}'
    assert registry_error_message(404, body) == ("manifest unknown", "MANIFEST_UNKNOWN")
    body = b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}'
    assert registry_error_message(401, body) == ("unauthorized: authentication required", "UNAUTHORIZED")
    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"OCI manifest found, but accept header does not support OCI manifests"}]}'
    assert registry_error_message(404, body)[0] == (
        "manifest unknown: OCI manifest found, but accept header does not support OCI manifests")
    assert registry_error_message(401, b"") == ("unauthorized: authentication required", "UNAUTHORIZED")
    assert registry_error_message(502, b"bad gateway")[0] == "unexpected status 502: bad gateway"


def test_challenges_and_schemes() -> None:
    scheme, params = parse_challenge(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"')
    assert scheme == "bearer"
    assert params == {"realm": "https://auth.docker.io/token", "service": "registry.docker.io",
                      "scope": "repository:library/busybox:pull"}
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})
    assert registry_base_url("127.0.0.1:5000", ()) == "http://127.0.0.1:5000"
    assert registry_base_url("localhost:5000", ()) == "http://localhost:5000"
    assert registry_base_url("docker.io", ()) == "https://registry-1.docker.io"
    assert registry_base_url("reg.lan:5000", ("reg.lan:5000",)) == "http://reg.lan:5000"
    assert registry_base_url("reg.lan", ("reg.lan",)) == "http://reg.lan"
