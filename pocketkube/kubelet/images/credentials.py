"""Registry credentials: docker config JSON parsing and lookup by registry host.

The kubelet turns a pod's imagePullSecrets (`kubernetes.io/dockerconfigjson` or the older
`kubernetes.io/dockercfg`) into a `Credentials` mapping with `credentials_from_dockerconfigjson`;
the puller picks the entry for the image's registry with `lookup_credentials`, which accepts the
spellings docker config keys come in (`https://index.docker.io/v1/`, `host:port`, `*.example.com`).
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
from collections.abc import Mapping
from urllib.parse import urlsplit

import orjson

from pocketkube.kubelet.images.errors import ImageError

Credentials = Mapping[str, tuple[str, str]]
"""Registry host (as in an image reference: `docker.io`, `127.0.0.1:5000`) → (username, password)."""

_DOCKER_HUB_ALIASES = ("index.docker.io", "registry-1.docker.io", "registry.hub.docker.com", "docker.io")


def normalize_registry_key(key: str) -> str:
    """`https://index.docker.io/v1/` → `docker.io`; `http://h:5000/x` → `h:5000`."""
    key = key.strip()
    if "://" in key:
        key = urlsplit(key).netloc
    key = key.split("/", 1)[0].lower()
    return "docker.io" if key in _DOCKER_HUB_ALIASES else key


def credentials_from_dockerconfigjson(data: bytes) -> dict[str, tuple[str, str]]:
    """Parse `{"auths": {host: {"auth": b64("user:pass")} | {"username", "password"}}}`.

    The legacy `.dockercfg` shape (hosts at the top level) is accepted too. Entries without
    usable credentials are skipped; malformed JSON raises ImageError.
    """
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise ImageError(f"invalid docker config JSON: {e}") from e
    if not isinstance(doc, dict):
        raise ImageError("invalid docker config JSON: not an object")
    auths = doc.get("auths", doc)
    if not isinstance(auths, dict):
        raise ImageError("invalid docker config JSON: auths is not an object")
    out: dict[str, tuple[str, str]] = {}
    for host, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        user, password = entry.get("username"), entry.get("password")
        auth = entry.get("auth")
        if isinstance(auth, str) and auth:
            try:
                decoded = base64.b64decode(auth, validate=False).decode()
            except (binascii.Error, UnicodeDecodeError) as e:
                raise ImageError(f"invalid docker config JSON: bad auth for {host!r}") from e
            user, sep, password = decoded.partition(":")
            if not sep:
                raise ImageError(f"invalid docker config JSON: auth for {host!r} is not user:password")
        if isinstance(user, str) and isinstance(password, str) and (user or password):
            out[normalize_registry_key(str(host))] = (user, password)
    return out


def lookup_credentials(credentials: Credentials | None, registry: str) -> tuple[str, str] | None:
    """The credentials for `registry` (exact host:port first, then a `*.domain` glob, then host only)."""
    if not credentials:
        return None
    wanted = normalize_registry_key(registry)
    table = {normalize_registry_key(k): v for k, v in credentials.items()}
    if wanted in table:
        return table[wanted]
    host = wanted.split(":", 1)[0] if not wanted.startswith("[") else wanted
    for key, value in table.items():
        if "*" in key and fnmatch.fnmatchcase(wanted, key):
            return value
    return table.get(host)
