"""One image pull: resolve the manifest (through an index to this node's platform), fetch the
config, download and unpack the missing layers concurrently, then record the image.

Every failure leaves as an ImagePullError naming the image as the user wrote it and carrying the
registry's reason (`manifest unknown`, `unauthorized: authentication required`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import aiohttp

from pocketkube.kubelet.images.credentials import Credentials, lookup_credentials
from pocketkube.kubelet.images.errors import ImageError, ImagePullError
from pocketkube.kubelet.images.manifest import (
    Descriptor,
    Index,
    Manifest,
    parse_image_config,
    parse_manifest_document,
    select_platform,
    sha256_digest,
)
from pocketkube.kubelet.images.reference import ImageReference, registry_host
from pocketkube.kubelet.images.registry_client import RegistryClient, RegistryError

if TYPE_CHECKING:
    from pocketkube.kubelet.images.store import Image, ImageStore

_LOOPBACK = ("localhost", "127.0.0.1", "[::1]", "::1")
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=15, sock_read=60)


def registry_base_url(domain: str, insecure_registries: tuple[str, ...]) -> str:
    """`http://` for loopback and listed insecure registries, `https://` for the rest."""
    host = registry_host(domain)
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    insecure = hostname in _LOOPBACK or host in insecure_registries or hostname in insecure_registries
    return f"{'http' if insecure else 'https'}://{host}"


async def pull_image(store: ImageStore, ref: ImageReference, original: str,
                     credentials: Credentials | None) -> Image:
    try:
        async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
            client = RegistryClient(session, registry_base_url(ref.domain, store.insecure_registries), ref.path,
                                    lookup_credentials(credentials, ref.domain))
            return await _pull(store, client, ref)
    except RegistryError as e:
        raise ImagePullError(original, e.message, code=e.code, http_status=e.http_status) from e
    except aiohttp.ClientError as e:
        raise ImagePullError(original, f"{ref.domain}: {e}") from e
    except TimeoutError as e:
        raise ImagePullError(original, f"{ref.domain}: timeout talking to the registry") from e
    except ImagePullError:
        raise
    except ImageError as e:
        raise ImagePullError(original, str(e)) from e


async def _fetch_manifest(client: RegistryClient, reference: str, expected: str | None) -> tuple[bytes, str, str]:
    body, content_type = await client.get_manifest(reference)
    digest = sha256_digest(body)
    if expected is not None and digest != expected:
        raise RegistryError(f"manifest digest mismatch: asked for {expected}, got {digest}")
    return body, content_type, digest


async def _pull(store: ImageStore, client: RegistryClient, ref: ImageReference) -> Image:
    body, content_type, top_digest = await _fetch_manifest(client, ref.identifier, ref.digest)
    doc = parse_manifest_document(body, content_type)
    index_body: bytes | None = None
    if isinstance(doc, Index):
        index_body = body
        chosen = select_platform(doc, *store.platform)
        body, content_type, _ = await _fetch_manifest(client, chosen.digest, chosen.digest)
        doc = parse_manifest_document(body, content_type)
    if not isinstance(doc, Manifest):
        raise ImageError("an index inside an index is not supported")
    config_body = store.read_blob_if_present(doc.config.digest) or await client.get_blob_bytes(doc.config.digest)
    config = parse_image_config(config_body)
    if len(config.diff_ids) != len(doc.layers):
        raise ImageError(f"image config lists {len(config.diff_ids)} layers, manifest {len(doc.layers)}")
    with store.pinned(config.diff_ids):
        limit = asyncio.Semaphore(store.max_concurrent_downloads)
        try:
            async with asyncio.TaskGroup() as tg:
                for desc, diff_id in zip(doc.layers, config.diff_ids, strict=True):
                    tg.create_task(_fetch_layer(store, client, desc, diff_id, limit))
        except BaseExceptionGroup as group:
            raise _first(group) from None
        size = doc.config.size + sum(d.size for d in doc.layers)
        refs = [ref]
        return await store.commit_image(refs=refs, manifest=body, manifest_media_type=doc.media_type,
                                        config=config_body, layers=config.diff_ids, size=size, index=index_body,
                                        repo_digests=[str(ref.with_digest(top_digest))])


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    exc: BaseException = group
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc


async def _fetch_layer(store: ImageStore, client: RegistryClient, desc: Descriptor, diff_id: str,
                       limit: asyncio.Semaphore) -> None:
    async def download(path: str) -> None:
        async with limit:
            await client.download_blob(desc.digest, path, size=desc.size)

    await store.ensure_layer(diff_id, download)
