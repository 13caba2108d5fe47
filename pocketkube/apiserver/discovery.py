"""API discovery documents, legacy and aggregated, built from the resource table.

kubectl asks `/api` and `/apis` for aggregated discovery (apidiscovery.k8s.io/v2
APIGroupDiscoveryList) first and falls back to the legacy APIVersions / APIGroupList /
APIResourceList documents; both are served, each cached per table generation.
"""

from __future__ import annotations

from typing import Any

import orjson

from pocketkube.api.resources import ResourceInfo, ResourceTable

AGGREGATED_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGGREGATED_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"

# Preferred order of groups in /apis, as kube-apiserver lists them (others follow, sorted).
_GROUP_ORDER = ["apps", "events.k8s.io", "authentication.k8s.io", "authorization.k8s.io", "autoscaling",
                "batch", "certificates.k8s.io", "networking.k8s.io", "policy", "rbac.authorization.k8s.io",
                "storage.k8s.io", "admissionregistration.k8s.io", "apiextensions.k8s.io", "scheduling.k8s.io",
                "coordination.k8s.io", "node.k8s.io", "discovery.k8s.io", "flowcontrol.apiserver.k8s.io"]


def _group_key(group: str) -> tuple[int, str]:
    return (_GROUP_ORDER.index(group), "") if group in _GROUP_ORDER else (len(_GROUP_ORDER), group)


def _sub_kind(info: ResourceInfo, sub_kind: str, sub_group: str, sub_version: str) -> dict[str, Any]:
    return {"group": sub_group, "version": sub_version or info.version, "kind": sub_kind}


def _legacy_resources(infos: list[ResourceInfo]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for info in sorted(infos, key=lambda i: i.plural):
        entry: dict[str, Any] = {
            "name": info.plural,
            "singularName": info.singular,
            "namespaced": info.namespaced,
            "kind": info.kind,
            "verbs": list(info.verbs),
        }
        if info.short_names:
            entry["shortNames"] = list(info.short_names)
        if info.categories:
            entry["categories"] = list(info.categories)
        out.append(entry)
        for sub in info.subresources:
            s: dict[str, Any] = {
                "name": f"{info.plural}/{sub.name}",
                "singularName": "",
                "namespaced": info.namespaced,
                "kind": sub.kind,
                "verbs": list(sub.verbs),
            }
            if sub.group:
                s["group"] = sub.group
                s["version"] = sub.version
            out.append(s)
    return out


class Discovery:
    def __init__(self, table: ResourceTable) -> None:
        self.table = table
        self._generation = -1
        self._cache: dict[str, bytes] = {}

    def _docs(self) -> dict[str, bytes]:
        if self._generation != self.table.generation:
            self._cache = self._build()
            self._generation = self.table.generation
        return self._cache

    def get(self, path: str) -> bytes | None:
        return self._docs().get(path)

    def _build(self) -> dict[str, bytes]:
        docs: dict[str, bytes] = {}
        groups = self.table.groups()
        docs["/api"] = orjson.dumps({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
        })
        group_docs: list[dict[str, Any]] = []
        for group in sorted((g for g in groups if g), key=_group_key):
            gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in groups[group]]
            gdoc = {"name": group, "versions": gvs, "preferredVersion": gvs[0]}
            group_docs.append(gdoc)
            docs[f"/apis/{group}"] = orjson.dumps({"kind": "APIGroup", "apiVersion": "v1", **gdoc})
        docs["/apis"] = orjson.dumps({"kind": "APIGroupList", "apiVersion": "v1", "groups": group_docs})
        for group, served in groups.items():
            for version in served:
                infos = self.table.in_group_version(group, version)
                gv = f"{group}/{version}" if group else version
                path = f"/apis/{gv}" if group else f"/api/{version}"
                docs[path] = orjson.dumps({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                                           "resources": _legacy_resources(infos)})
        docs["aggregated:/api"] = orjson.dumps(self._aggregated([""]))
        docs["aggregated:/apis"] = orjson.dumps(
            self._aggregated(sorted((g for g in groups if g), key=_group_key)))
        return docs

    def _aggregated(self, group_names: list[str]) -> dict[str, Any]:
        groups = self.table.groups()
        items: list[dict[str, Any]] = []
        for group in group_names:
            versions = []
            for version in groups.get(group, []):
                resources = []
                for info in sorted(self.table.in_group_version(group, version), key=lambda i: i.plural):
                    r: dict[str, Any] = {
                        "resource": info.plural,
                        "responseKind": {"group": group, "version": version, "kind": info.kind},
                        "scope": "Namespaced" if info.namespaced else "Cluster",
                        "singularResource": info.singular,
                        "verbs": list(info.verbs),
                    }
                    if info.short_names:
                        r["shortNames"] = list(info.short_names)
                    if info.categories:
                        r["categories"] = list(info.categories)
                    if info.subresources:
                        r["subresources"] = [
                            {"subresource": s.name,
                             "responseKind": _sub_kind(info, s.kind, s.group or group, s.version),
                             "verbs": list(s.verbs)}
                            for s in info.subresources
                        ]
                    resources.append(r)
                versions.append({"version": version, "resources": resources, "freshness": "Current"})
            items.append({"metadata": {"name": group, "creationTimestamp": None}, "versions": versions})
        return {"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {},
                "items": items}
