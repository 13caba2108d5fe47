"""Manifests, indexes and image configs of the OCI image spec and Docker's schema 2.

Pure parsing: bytes in, frozen dataclasses out. Every digest read from a document is checked
against `sha256:<64 hex>` here, because the store turns digests into file names.
"""

from __future__ import annotations

import hashlib
import platform as host
from dataclasses import dataclass, field
from typing import Any

import orjson

from pocketkube.kubelet.images.errors import ImageError
from pocketkube.kubelet.images.reference import is_digest

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_SCHEMA1 = ("application/vnd.docker.distribution.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v1+prettyjws")

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
# Always offer the OCI types: distribution 2.8 answers 404 to an OCI manifest asked for with
# only Docker types (reference/platform.md §5).
MANIFEST_ACCEPT = ", ".join((OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST))

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm",
         "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64", "i686": "386"}


def host_platform() -> tuple[str, str]:
    """(os, architecture) in OCI words for this machine: ("linux", "amd64")."""
    return "linux", _ARCH.get(host.machine(), host.machine())


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_digest(value: Any, what: str) -> str:
    if not isinstance(value, str) or not is_digest(value):
        raise ImageError(f"invalid or unsupported digest {value!r} in {what}")
    return value


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, raw: Any, what: str) -> Descriptor:
        if not isinstance(raw, dict):
            raise ImageError(f"invalid descriptor in {what}")
        size = raw.get("size", 0)
        annotations = raw.get("annotations") or {}
        plat = raw.get("platform")
        return cls(media_type=str(raw.get("mediaType", "")), digest=check_digest(raw.get("digest"), what),
                   size=size if isinstance(size, int) else 0,
                   platform=plat if isinstance(plat, dict) else None,
                   annotations={str(k): str(v) for k, v in annotations.items()} if isinstance(annotations, dict) else {})


@dataclass(frozen=True)
class Manifest:
    """One image: a config and its layers, bottom first."""

    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]


@dataclass(frozen=True)
class Index:
    """A manifest list (Docker) or image index (OCI): one manifest per platform."""

    media_type: str
    manifests: tuple[Descriptor, ...]


def _load_json(data: bytes, what: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise ImageError(f"{what} is not valid JSON: {e}") from e
    if not isinstance(doc, dict):
        raise ImageError(f"{what} is not a JSON object")
    return doc


def parse_manifest_document(data: bytes, content_type: str | None = None) -> Manifest | Index:
    """Parse a manifest or index; the media type comes from the document, else the HTTP header."""
    doc = _load_json(data, "manifest")
    media_type = doc.get("mediaType") or (content_type or "").split(";")[0].strip()
    if media_type in DOCKER_SCHEMA1 or doc.get("schemaVersion") == 1:
        raise ImageError("unsupported manifest: Docker schema 1 images are not supported")
    if not media_type:
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    if media_type in INDEX_TYPES:
        entries = doc.get("manifests") or []
        if not isinstance(entries, list):
            raise ImageError("invalid index: manifests is not a list")
        return Index(media_type, tuple(Descriptor.from_json(m, "index") for m in entries))
    if media_type in MANIFEST_TYPES:
        layers = doc.get("layers") or []
        if not isinstance(layers, list):
            raise ImageError("invalid manifest: layers is not a list")
        return Manifest(media_type, Descriptor.from_json(doc.get("config"), "manifest config"),
                        tuple(Descriptor.from_json(layer, "manifest layers") for layer in layers))
    raise ImageError(f"unsupported manifest media type {media_type!r}")


def select_platform(index: Index, os_name: str, architecture: str, variant: str | None = None) -> Descriptor:
    """The index entry for os/architecture; an entry without platform is taken as a last resort."""
    candidates: list[Descriptor] = []
    for desc in index.manifests:
        plat = desc.platform
        if plat is None:
            continue
        if plat.get("os") == os_name and plat.get("architecture") == architecture:
            if variant is None or plat.get("variant") in (None, variant):
                candidates.append(desc)
    if candidates:
        return candidates[0]
    bare = [d for d in index.manifests if d.platform is None and d.media_type in MANIFEST_TYPES]
    if len(bare) == 1:
        return bare[0]
    raise ImageError(f"no matching manifest for {os_name}/{architecture} in the manifest list entries")


def _str_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    if isinstance(value, str):
        return (value,)
    return ()


@dataclass(frozen=True)
class ImageConfig:
    """What the runtime needs from an image config (`config` section + rootfs.diff_ids)."""

    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    volumes: tuple[str, ...] = ()
    os: str = ""
    architecture: str = ""
    diff_ids: tuple[str, ...] = ()

    def env_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for item in self.env:
            key, _, value = item.partition("=")
            out[key] = value
        return out


def parse_image_config(data: bytes) -> ImageConfig:
    doc = _load_json(data, "image config")
    conf = doc.get("config") or doc.get("container_config") or {}
    if not isinstance(conf, dict):
        conf = {}
    rootfs = doc.get("rootfs") or {}
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    labels = conf.get("Labels") or {}
    return ImageConfig(
        env=_str_list(conf.get("Env")),
        entrypoint=_str_list(conf.get("Entrypoint")),
        cmd=_str_list(conf.get("Cmd")),
        working_dir=str(conf.get("WorkingDir") or ""),
        user=str(conf.get("User") or ""),
        exposed_ports=tuple(sorted(conf.get("ExposedPorts") or {})),
        labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
        stop_signal=str(conf.get("StopSignal") or ""),
        volumes=tuple(sorted(conf.get("Volumes") or {})),
        os=str(doc.get("os") or ""),
        architecture=str(doc.get("architecture") or ""),
        diff_ids=tuple(check_digest(d, "image config rootfs.diff_ids") for d in (diff_ids or [])),
    )
