"""ServiceAccounts: every active namespace gets a `default` ServiceAccount (and gets it back if deleted)."""

from __future__ import annotations

from typing import Any

from pocketkube.api import errors
from pocketkube.client.informer import Informer
from pocketkube.client.rest import APIClient
from pocketkube.controllers.base import Controller

Obj = dict[str, Any]


class ServiceAccountController(Controller):
    name = "serviceaccount"

    def __init__(self, client: APIClient) -> None:
        super().__init__()
        self.client = client
        self.namespaces = Informer(client.core("namespaces"))
        self.accounts = Informer(client.core("serviceaccounts"), field_selector="metadata.name=default")
        self.namespaces.add_handler(self.enqueue_handler)
        self.accounts.add_handler(self._account_changed)
        self.informers = [self.namespaces, self.accounts]

    def _account_changed(self, old: Obj | None, new: Obj | None) -> None:
        if new is None and old is not None:
            self.queue.add(old["metadata"]["namespace"])

    async def sync(self, key: str) -> None:
        ns = self.namespaces.get(key)
        if ns is None or ns.get("metadata", {}).get("deletionTimestamp") or \
                (ns.get("status") or {}).get("phase") == "Terminating":
            return
        if self.accounts.get(f"{key}/default") is not None:
            return
        try:
            await self.client.core("serviceaccounts").create(
                {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": key}},
                key, field_manager="serviceaccount-controller")
        except (errors.AlreadyExists, errors.Forbidden, errors.NotFound):
            pass
