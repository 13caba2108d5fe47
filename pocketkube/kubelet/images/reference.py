"""Image references, parsed and normalized the way docker and containerd do it.

`busybox` → `docker.io/library/busybox:latest`; `example.com:5000/a/b@sha256:…` keeps its digest.
The normalized string is the key of the store's reference index, so two spellings of one image
always meet. Grammar from distribution/reference (reference.go, normalize.go).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pocketkube.kubelet.images.errors import InvalidReferenceError

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*"
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_ANY_DIGEST_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$")
_IMAGE_ID_RE = re.compile(r"^(?:sha256:)?[0-9a-f]{64}$")


def is_digest(value: str) -> bool:
    """Whether `value` is a sha256 digest this store can address (`sha256:` + 64 lowercase hex)."""
    return bool(_DIGEST_RE.match(value))


def is_image_id(value: str) -> bool:
    """Whether `value` names an image by its ID (config digest), with or without `sha256:`."""
    return bool(_IMAGE_ID_RE.match(value))


@dataclass(frozen=True)
class ImageReference:
    """A normalized reference: `domain/path[:tag][@digest]`, always with a tag or a digest."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def repository(self) -> str:
        """`docker.io/library/busybox`."""
        return f"{self.domain}/{self.path}"

    @property
    def identifier(self) -> str:
        """What the registry's manifest endpoint is asked for: the digest if any, else the tag."""
        return self.digest or self.tag or DEFAULT_TAG

    @property
    def familiar(self) -> str:
        """The short form docker prints: `busybox:1.36`, `quay.io/a/b:1`."""
        name = self.path
        if self.domain == DEFAULT_DOMAIN:
            if name.startswith(OFFICIAL_REPO_PREFIX) and "/" not in name[len(OFFICIAL_REPO_PREFIX):]:
                name = name[len(OFFICIAL_REPO_PREFIX):]
        else:
            name = f"{self.domain}/{name}"
        return name + self._suffix()

    def with_digest(self, digest: str) -> ImageReference:
        """The `repository@digest` form recorded as a repo digest."""
        return ImageReference(self.domain, self.path, None, digest)

    def _suffix(self) -> str:
        out = f":{self.tag}" if self.tag else ""
        return out + (f"@{self.digest}" if self.digest else "")

    def __str__(self) -> str:
        return self.repository + self._suffix()


def _split_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    first = name[:i]
    if i == -1 or (not any(c in first for c in ".:") and first != "localhost" and first.lower() == first):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, name[i + 1:]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse_reference(ref: str, *, default_tag: bool = True) -> ImageReference:
    """Parse and normalize `ref`; adds the `latest` tag when neither tag nor digest is given.

    Raises InvalidReferenceError with docker's wording for what is wrong.
    """
    if not ref or ref != ref.strip():
        raise InvalidReferenceError(f"invalid reference format: {ref!r}")
    name, digest = ref, None
    if "@" in ref:
        name, digest = ref.split("@", 1)
        if not _ANY_DIGEST_RE.match(digest):
            raise InvalidReferenceError(f"invalid reference format: invalid digest in {ref!r}")
        if not _DIGEST_RE.match(digest):
            raise InvalidReferenceError(f"unsupported digest algorithm or format in {ref!r}")
    tag = None
    colon, slash = name.rfind(":"), name.rfind("/")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG_RE.match(tag):
            raise InvalidReferenceError(f"invalid reference format: invalid tag in {ref!r}")
    if not name:
        raise InvalidReferenceError(f"invalid reference format: {ref!r}")
    domain, path = _split_domain(name)
    if not _DOMAIN_RE.match(domain):
        raise InvalidReferenceError(f"invalid reference format: invalid registry in {ref!r}")
    if not _PATH_RE.match(path):
        if path.lower() != path and _PATH_RE.match(path.lower()):
            raise InvalidReferenceError(f"invalid reference format: repository name must be lowercase: {ref!r}")
        raise InvalidReferenceError(f"invalid reference format: {ref!r}")
    if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidReferenceError(f"invalid reference format: repository name must not be more than "
                                    f"{NAME_TOTAL_LENGTH_MAX} characters: {ref!r}")
    if default_tag and tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageReference(domain, path, tag, digest)


def normalize_reference(ref: str) -> str:
    """`busybox` → `docker.io/library/busybox:latest`."""
    return str(parse_reference(ref))


def registry_host(domain: str) -> str:
    """The host serving the distribution API of `domain` (Docker Hub's API lives elsewhere)."""
    return "registry-1.docker.io" if domain == DEFAULT_DOMAIN else domain
