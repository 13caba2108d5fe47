"""ControllerRevision history for DaemonSets and StatefulSets (kubernetes pkg/controller/history).

Each distinct pod template of an owner is snapshotted once as an apps/v1 ControllerRevision named
`<owner>-<hash>` whose `data` is the patch `{"spec": {"template": {..., "$patch": "replace"}}}`
and whose `revision` number orders them. Rolling back to an older template reuses its snapshot
and gives it the next number. Pods carry the hash (DaemonSet) or the revision name (StatefulSet)
in the `controller-revision-hash` label; history beyond revisionHistoryLimit is pruned, never a
revision some live pod still uses.
"""

from __future__ import annotations

import copy
from typing import Any

import orjson

from pocketkube.api import errors
from pocketkube.client.rest import ResourceClient
from pocketkube.controllers.deployment_util import template_hash
from pocketkube.controllers.pod_util import controller_ref, owner_reference

Obj = dict[str, Any]
HASH_LABEL = "controller-revision-hash"


def revision_data(template: Obj) -> Obj:
    t = copy.deepcopy(template)
    t["$patch"] = "replace"
    return {"spec": {"template": t}}


def template_of(revision: Obj) -> Obj:
    t = copy.deepcopy(((revision.get("data") or {}).get("spec") or {}).get("template") or {})
    t.pop("$patch", None)
    return dict(t)


def number(revision: Obj) -> int:
    return int(revision.get("revision") or 0)


def _canonical(data: Any) -> bytes:
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def owned_revisions(revisions: list[Obj], owner: Obj) -> list[Obj]:
    ns, uid = owner["metadata"].get("namespace"), owner["metadata"].get("uid")
    out = [r for r in revisions if r["metadata"].get("namespace") == ns
           and (controller_ref(r) or {}).get("uid") == uid]
    return sorted(out, key=lambda r: (number(r), r["metadata"].get("name", "")))


async def ensure_revision(client: ResourceClient, owner: Obj, template: Obj, revisions: list[Obj], *,
                          field_manager: str) -> Obj:
    """The revision snapshotting `template` (created, or renumbered as newest if it is old)."""
    data = revision_data(template)
    want = _canonical(data)
    ns = owner["metadata"]["namespace"]
    top = max((number(r) for r in revisions), default=0)
    same = [r for r in revisions if _canonical(r.get("data")) == want]
    if same:
        current = same[-1]
        if number(current) < top:
            current = await client.patch(current["metadata"]["name"], {"revision": top + 1}, ns,
                                         field_manager=field_manager)
        return current
    collision = int((owner.get("status") or {}).get("collisionCount") or 0)
    for _ in range(8):
        h = template_hash(data, collision)
        labels = dict(((template.get("metadata") or {}).get("labels")) or {})
        labels[HASH_LABEL] = h
        body: Obj = {"apiVersion": "apps/v1", "kind": "ControllerRevision",
                     "metadata": {"name": f"{owner['metadata']['name']}-{h}", "namespace": ns, "labels": labels,
                                  "ownerReferences": [owner_reference(owner)]},
                     "data": data, "revision": top + 1}
        try:
            return await client.create(body, ns, field_manager=field_manager)
        except errors.AlreadyExists:
            existing = await client.get(body["metadata"]["name"], ns)
            if (_canonical(existing.get("data")) == want
                    and (controller_ref(existing) or {}).get("uid") == owner["metadata"]["uid"]):
                return existing
            collision += 1  # a different template hashed to the same name
    raise errors.Conflict(f"could not name a ControllerRevision for {owner['metadata']['name']}")


def revision_hash(revision: Obj) -> str:
    labels = (revision.get("metadata") or {}).get("labels") or {}
    return str(labels.get(HASH_LABEL) or "")


async def truncate_history(client: ResourceClient, owner: Obj, revisions: list[Obj], live: set[str]) -> None:
    """Delete the oldest revisions no live pod uses, keeping revisionHistoryLimit of them."""
    limit = int((owner.get("spec") or {}).get("revisionHistoryLimit", 10) or 0)
    idle = [r for r in revisions if r["metadata"]["name"] not in live and revision_hash(r) not in live]
    for r in idle[:max(len(idle) - limit, 0)]:
        try:
            await client.delete(r["metadata"]["name"], r["metadata"]["namespace"], uid=r["metadata"].get("uid"))
        except (errors.NotFound, errors.Conflict):
            pass
