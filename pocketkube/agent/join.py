"""Joining a cluster: trust the server's CA only if it matches the hash in the join token.

The token reads `pk1::<sha256 of the CA certificate PEM>::<secret>` (the idea of k3s's K10
tokens): the agent fetches /cacerts without verification, checks the hash, and from then on
talks TLS with that CA and the token as bearer credentials.
"""

from __future__ import annotations

import hashlib
import ssl

import aiohttp

from pocketkube.client.rest import ClientConfig


class JoinError(Exception):
    pass


def parse_token(token: str) -> tuple[str, str]:
    parts = token.strip().split("::")
    if len(parts) != 3 or parts[0] != "pk1" or len(parts[1]) != 64:
        raise JoinError("the join token is malformed: expected pk1::<ca-hash>::<secret> (see <data-dir>/token)")
    return parts[1], token.strip()


async def fetch_ca(server: str, ca_hash: str) -> bytes:
    insecure = ssl.create_default_context()
    insecure.check_hostname = False
    insecure.verify_mode = ssl.CERT_NONE
    async with aiohttp.ClientSession() as session, session.get(f"{server}/cacerts", ssl=insecure,
                                                               timeout=aiohttp.ClientTimeout(total=10)) as resp:
        if resp.status != 200:
            raise JoinError(f"{server}/cacerts answered {resp.status}")
        pem = await resp.read()
    if hashlib.sha256(pem).hexdigest() != ca_hash:
        raise JoinError(f"the CA served by {server} does not match the join token: refusing to trust it")
    return pem


async def client_config(server: str, token: str, *, user_agent: str) -> ClientConfig:
    ca_hash, bearer = parse_token(token)
    ca = await fetch_ca(server.rstrip("/"), ca_hash)
    return ClientConfig(server=server.rstrip("/"), ca_pem=ca, token=bearer, user_agent=user_agent)
