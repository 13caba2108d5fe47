"""A client of the OCI distribution API: manifests and blobs over aiohttp, with auth.

One client per pull and repository. Auth follows the registry's challenge: anonymous first; on
401 with `Basic` the credentials are sent; with `Bearer realm=…,service=…,scope=…` a token is
fetched from the realm (with the credentials as basic auth when there are some) and reused for
the rest of the pull. Redirects (blob storage) are followed by hand so that the Authorization
header never goes to another host. Registry errors keep the registry's words.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp
import orjson

from pocketkube.kubelet.images.manifest import MANIFEST_ACCEPT

_CHALLENGE_PARAM = re.compile(r'(\w+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')
_MAX_REDIRECTS = 5
_CHUNK = 1 << 20


def basic_authorization(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class RegistryError(Exception):
    """A registry answer that ends the pull; `message` is what the user should read."""

    def __init__(self, message: str, *, code: str | None = None, http_status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.http_status = http_status


def registry_error_message(status: int, body: bytes) -> tuple[str, str | None]:
    """The registry's `{"errors": [{"code", "message"}]}` as docker prints it, and the first code.

    MANIFEST_UNKNOWN/"manifest unknown" → `manifest unknown`; UNAUTHORIZED/"authentication
    required" → `unauthorized: authentication required`.
    """
    try:
        doc: Any = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        doc = None
    errors = doc.get("errors") if isinstance(doc, dict) else None
    parts: list[str] = []
    first_code: str | None = None
    if isinstance(errors, list):
        for err in errors:
            if not isinstance(err, dict):
                continue
            code = str(err.get("code") or "")
            message = str(err.get("message") or "")
            first_code = first_code or code or None
            words = code.lower().replace("_", " ")
            if not message or message.lower() == words:
                parts.append(words or message)
            else:
                parts.append(f"{words}: {message}" if words else message)
    elif isinstance(doc, dict) and isinstance(doc.get("details") or doc.get("error"), str):
        parts.append(str(doc.get("details") or doc.get("error")))
    if parts:
        return "; ".join(parts), first_code
    if status == 401:
        return "unauthorized: authentication required", "UNAUTHORIZED"
    if status == 404:
        return "not found", "NOT_FOUND"
    text = body.decode("utf-8", "replace").strip()[:200]
    return f"unexpected status {status}" + (f": {text}" if text else ""), None


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="https://auth",service="reg",scope="repository:a:pull"` → ("bearer", {...})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3) or "")
              for m in _CHALLENGE_PARAM.finditer(rest)}
    return scheme.lower(), params


@dataclass
class RegistryClient:
    """Distribution API calls for one repository of one registry."""

    session: aiohttp.ClientSession
    base_url: str  # e.g. "http://127.0.0.1:5000"
    repository: str  # path inside the registry, e.g. "library/busybox"
    credentials: tuple[str, str] | None = None
    _authorization: str | None = None

    async def get_manifest(self, reference: str) -> tuple[bytes, str]:
        """(body, content type) of the manifest or index named by tag or digest."""
        url = f"{self.base_url}/v2/{self.repository}/manifests/{reference}"
        _, headers, body = await self._get_bytes(url, {"Accept": MANIFEST_ACCEPT})
        return body, headers.get("Content-Type", "")

    async def get_blob_bytes(self, digest: str, *, limit: int = 16 << 20) -> bytes:
        """A small blob (config) in memory, verified against its digest."""
        url = f"{self.base_url}/v2/{self.repository}/blobs/{digest}"
        _, _, body = await self._get_bytes(url, {}, limit=limit)
        actual = "sha256:" + hashlib.sha256(body).hexdigest()
        if actual != digest:
            raise RegistryError(f"digest mismatch for blob {digest}: got {actual}")
        return body

    async def download_blob(self, digest: str, dest: str, *, size: int | None = None) -> None:
        """Stream a blob to `dest` (created), verifying size and sha256; `dest` removed on failure."""
        url = f"{self.base_url}/v2/{self.repository}/blobs/{digest}"
        resp = await self._request(url, {})
        sha = hashlib.sha256()
        written = 0
        async with resp:
            if resp.status != 200:
                message, code = registry_error_message(resp.status, await resp.read())
                raise RegistryError(message, code=code, http_status=resp.status)
            # Opened inline, not in a thread: a cancellation while a thread opened it would leave
            # the file object unowned (and unclosed); creating an empty file is one quick syscall.
            out = open(dest, "xb")
            try:
                with out:
                    async for chunk in resp.content.iter_chunked(_CHUNK):
                        sha.update(chunk)
                        out.write(chunk)  # page-cache writes of 1 MiB chunks; cheaper than a thread hop
                        written += len(chunk)
            except BaseException:
                await asyncio.to_thread(_unlink, dest)
                raise
        actual = "sha256:" + sha.hexdigest()
        if actual != digest or (size is not None and size > 0 and written != size):
            await asyncio.to_thread(_unlink, dest)
            raise RegistryError(f"digest mismatch for blob {digest}: got {actual} ({written} bytes)")

    async def _get_bytes(self, url: str, headers: dict[str, str],
                         *, limit: int = 16 << 20) -> tuple[int, dict[str, str], bytes]:
        resp = await self._request(url, headers)
        async with resp:
            body = await resp.content.read(limit + 1)
            if len(body) > limit:
                raise RegistryError(f"response from {url} is larger than {limit} bytes")
            if resp.status != 200:
                message, code = registry_error_message(resp.status, body)
                raise RegistryError(message, code=code, http_status=resp.status)
            return resp.status, dict(resp.headers), body

    async def _request(self, url: str, headers: dict[str, str]) -> aiohttp.ClientResponse:
        """GET with auth and hand-followed redirects; the caller owns the response."""
        for attempt in range(2):
            resp = await self._get_following_redirects(url, headers)
            if resp.status != 401 or attempt == 1:
                return resp
            challenge = resp.headers.get("WWW-Authenticate", "")
            body = await resp.read()
            resp.release()
            if not await self._authenticate(challenge):
                message, code = registry_error_message(401, body)
                raise RegistryError(message, code=code or "UNAUTHORIZED", http_status=401)
        raise AssertionError("unreachable")

    async def _get_following_redirects(self, url: str, headers: dict[str, str]) -> aiohttp.ClientResponse:
        origin = urlsplit(url).netloc
        for _ in range(_MAX_REDIRECTS + 1):
            send = dict(headers)
            if self._authorization and urlsplit(url).netloc == origin:
                send["Authorization"] = self._authorization
            resp = await self.session.get(url, headers=send, allow_redirects=False)
            if resp.status in (301, 302, 303, 307, 308) and "Location" in resp.headers:
                url = urljoin(url, resp.headers["Location"])
                resp.release()
                continue
            return resp
        raise RegistryError(f"too many redirects fetching {url}")

    async def _authenticate(self, challenge: str) -> bool:
        """Answer a 401 challenge; False when there is nothing more to try."""
        scheme, params = parse_challenge(challenge)
        if scheme == "basic":
            if self.credentials is None or self._authorization is not None:
                return False
            self._authorization = basic_authorization(*self.credentials)
            return True
        if scheme == "bearer" and "realm" in params:
            token = await self._fetch_token(params)
            self._authorization = f"Bearer {token}"
            return True
        return False

    async def _fetch_token(self, params: dict[str, str]) -> str:
        query: dict[str, str] = {}
        if params.get("service"):
            query["service"] = params["service"]
        query["scope"] = params.get("scope") or f"repository:{self.repository}:pull"
        headers = {"Authorization": basic_authorization(*self.credentials)} if self.credentials else {}
        async with self.session.get(params["realm"], params=query, headers=headers) as resp:
            body = await resp.content.read(1 << 20)
            if resp.status != 200:
                message, code = registry_error_message(resp.status, body)
                if resp.status == 401 and not message.startswith("unauthorized"):
                    message = f"unauthorized: {message}"
                raise RegistryError(message, code=code or "UNAUTHORIZED", http_status=resp.status)
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise RegistryError(f"token endpoint {params['realm']} answered invalid JSON") from e
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"token endpoint {params['realm']} answered no token")
        return token
