"""Authentication: x509 client certificates and bearer tokens, as kube-apiserver does it.

A verified client certificate names the user (CN) and groups (O). Bearer tokens come from a static
table (the node join token, tokens issued to components). Anonymous requests may read only the
public health and version endpoints; everything else is 401.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from pocketkube.api import errors

PUBLIC_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version", "/version/", "/cacerts"})


@dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()


ANONYMOUS = User("system:anonymous", ("system:unauthenticated",))

# Where the middleware leaves the request's user. A typed key: aiohttp warns (once per request, at a
# cost) about plain string keys.
USER_KEY = web.RequestKey("user", User)


@dataclass
class Authenticator:
    tokens: dict[str, User] = field(default_factory=dict)

    def add_token(self, token: str, user: User) -> None:
        self.tokens[token] = user

    def authenticate(self, request: web.Request) -> User | None:
        transport = request.transport
        peer = transport.get_extra_info("peercert") if transport is not None else None
        if peer:
            # The TLS layer verified the chain at the handshake; the subject names the user. The
            # few subjects a server sees are remembered instead of walked on every request.
            subject = peer.get("subject")
            try:
                user = _cert_users.get(subject) if subject is not None else None
            except TypeError:  # not hashable: not the ssl module's tuples
                subject, user = None, None
            if user is None:
                user = _user_from_cert(peer)
                if user is not None and subject is not None:
                    if len(_cert_users) >= 1024:
                        _cert_users.clear()
                    _cert_users[subject] = user
            if user is not None:
                return user
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer ":
            token = auth[7:].strip()
            for known, user in self.tokens.items():
                if hmac.compare_digest(known, token):
                    return user
            raise errors.Unauthorized("Unauthorized")
        return None

    def require(self, request: web.Request) -> User:
        user = self.authenticate(request)
        if user is None:
            if request.path.rstrip("/") in PUBLIC_PATHS or request.path in PUBLIC_PATHS or any(
                    request.path.startswith(p + "/") for p in ("/healthz", "/livez", "/readyz")):
                return ANONYMOUS
            raise errors.Unauthorized("Unauthorized")
        return user


_cert_users: dict[Any, User] = {}


def _user_from_cert(peer: dict[str, Any]) -> User | None:
    cn = ""
    groups: list[str] = []
    for rdn in peer.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                groups.append(value)
    if not cn:
        return None
    return User(cn, (*groups, "system:authenticated"))
