"""An event recorder for control loops: core/v1 Events about objects, de-duplicated by count.

Repeated identical events (same object, reason and message) bump `count` and `lastTimestamp` of
the existing Event instead of creating a new one, like client-go's EventCorrelator does.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from pocketkube.api import errors, meta
from pocketkube.client.rest import APIClient

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class EventRecorder:
    def __init__(self, client: APIClient, component: str, *, host: str = "") -> None:
        self.events = client.core("events")
        self.component = component
        self.host = host
        self._seen: dict[str, tuple[str, int]] = {}  # key -> (event name, count)

    async def event(self, obj: Obj, event_type: str, reason: str, message: str) -> None:
        md = obj.get("metadata") or {}
        ns = md.get("namespace") or "default"
        involved = {"kind": obj.get("kind", ""), "namespace": md.get("namespace", ""), "name": md.get("name", ""),
                    "uid": md.get("uid", ""), "apiVersion": obj.get("apiVersion", ""),
                    "resourceVersion": md.get("resourceVersion", "")}
        key = hashlib.sha1(f"{md.get('uid')}|{reason}|{message}|{event_type}".encode()).hexdigest()
        now = meta.now_rfc3339()
        try:
            seen = self._seen.get(key)
            if seen is not None:
                name, count = seen
                try:
                    await self.events.patch(name, {"count": count + 1, "lastTimestamp": now}, ns,
                                            field_manager=self.component)
                    self._seen[key] = (name, count + 1)
                    return
                except errors.NotFound:
                    pass
            name = f"{md.get('name', 'unknown')}.{hashlib.sha1((key + now).encode()).hexdigest()[:16]}"
            body = {"apiVersion": "v1", "kind": "Event",
                    "metadata": {"name": name, "namespace": ns},
                    "involvedObject": involved, "reason": reason, "message": message, "type": event_type,
                    "source": {"component": self.component, **({"host": self.host} if self.host else {})},
                    "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                    "reportingComponent": self.component, "reportingInstance": self.host or self.component}
            await self.events.create(body, ns, field_manager=self.component)
            self._seen[key] = (name, 1)
            if len(self._seen) > 4096:
                self._seen.pop(next(iter(self._seen)))
        except errors.StatusError as e:
            log.debug("could not record event %s on %s: %s", reason, md.get("name"), e)
