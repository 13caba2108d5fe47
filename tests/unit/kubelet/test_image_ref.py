"""Image reference parsing and normalization, checked against what docker/containerd produce."""

from __future__ import annotations

import pytest

from pocketkube.kubelet.images import InvalidReferenceError, normalize_reference, parse_reference
from pocketkube.kubelet.images.reference import is_image_id, registry_host

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("ref", "normalized"), [
    ("busybox", "docker.io/library/busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36"),
    ("library/busybox:1.36", "docker.io/library/busybox:1.36"),
    ("docker.io/busybox", "docker.io/library/busybox:latest"),
    ("index.docker.io/library/busybox:1", "docker.io/library/busybox:1"),
    ("bitnami/nginx:1.25", "docker.io/bitnami/nginx:1.25"),
    ("a/b/c", "docker.io/a/b/c:latest"),
    ("quay.io/coreos/etcd:v3.5", "quay.io/coreos/etcd:v3.5"),
    ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
    ("localhost/foo", "localhost/foo:latest"),
    ("localhost:5000/foo:bar", "localhost:5000/foo:bar"),
    ("127.0.0.1:5000/nope:1", "127.0.0.1:5000/nope:1"),
    ("[::1]:5000/x/y:z", "[::1]:5000/x/y:z"),
    ("Example.COM/foo", "Example.COM/foo:latest"),
    (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}"),
    (f"busybox:1.36@{DIGEST}", f"docker.io/library/busybox:1.36@{DIGEST}"),
    (f"127.0.0.1:5000/a/b@{DIGEST}", f"127.0.0.1:5000/a/b@{DIGEST}"),
    ("foo_bar.baz-qux__x:Tag_1.0-rc", "docker.io/library/foo_bar.baz-qux__x:Tag_1.0-rc"),
])
def test_normalize(ref: str, normalized: str) -> None:
    assert normalize_reference(ref) == normalized
    assert normalize_reference(normalized) == normalized  # idempotent


def test_parts_and_familiar_form() -> None:
    ref = parse_reference("busybox:1.36")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("docker.io", "library/busybox", "1.36", None)
    assert ref.repository == "docker.io/library/busybox"
    assert ref.identifier == "1.36"
    assert ref.familiar == "busybox:1.36"
    assert parse_reference("bitnami/nginx").familiar == "bitnami/nginx:latest"
    assert parse_reference("quay.io/a/b:c").familiar == "quay.io/a/b:c"
    by_digest = parse_reference(f"busybox@{DIGEST}")
    assert (by_digest.tag, by_digest.identifier) == (None, DIGEST)
    assert str(parse_reference("busybox:1").with_digest(DIGEST)) == f"docker.io/library/busybox@{DIGEST}"
    assert parse_reference("busybox", default_tag=False).tag is None


@pytest.mark.parametrize(("ref", "why"), [
    ("", "invalid reference format"),
    (" busybox", "invalid reference format"),
    ("Busybox", "must be lowercase"),
    ("docker.io/Library/busybox", "must be lowercase"),
    ("busybox:", "invalid tag"),
    ("busybox:-x", "invalid tag"),
    ("busybox:" + "a" * 129, "invalid tag"),
    ("busybox@sha256:abc", "invalid digest"),
    ("busybox@md5:" + "a" * 32, "unsupported digest"),
    (f"busybox@sha256:{'AB' * 32}", "unsupported digest"),
    ("-busybox", "invalid reference format"),
    ("a//b", "invalid reference format"),
    ("a/b/", "invalid reference format"),
    ("bad host!/x", "invalid"),
    ("a:b:c", "invalid reference format"),
    ("x/" + "a" * 260, "must not be more than 255"),
])
def test_invalid(ref: str, why: str) -> None:
    with pytest.raises(InvalidReferenceError, match=why) as err:
        parse_reference(ref)
    assert err.value.reason == "InvalidImageName"


def test_image_ids_and_registry_hosts() -> None:
    assert is_image_id(DIGEST) and is_image_id("ab" * 32)
    assert not is_image_id("busybox") and not is_image_id("sha256:abc")
    assert registry_host("docker.io") == "registry-1.docker.io"
    assert registry_host("127.0.0.1:5000") == "127.0.0.1:5000"
