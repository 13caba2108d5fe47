"""Which strategy serves which resource."""

from __future__ import annotations

import base64

from pocketkube.api.resources import ResourceInfo
from pocketkube.apiserver.registry.namespaces import NamespaceStrategy
from pocketkube.apiserver.registry.pods import PodStrategy
from pocketkube.apiserver.registry.strategy import Strategy

_BY_RESOURCE: dict[tuple[str, str], type[Strategy]] = {
    ("", "pods"): PodStrategy,
    ("", "namespaces"): NamespaceStrategy,
}


class NodeStrategy(Strategy):
    """Nodes may be created with their status (a kubelet registers with it), as in kube."""

    def prepare_for_create(self, obj: dict[str, object]) -> None:
        status = obj.get("status")
        super().prepare_for_create(obj)
        if status is not None:
            obj["status"] = status


_BY_RESOURCE[("", "nodes")] = NodeStrategy


class ServiceStrategy(Strategy):
    return_deleted_object = True


_BY_RESOURCE[("", "services")] = ServiceStrategy


class SecretStrategy(Strategy):
    """stringData is write-only: merged into data (base64) on every write, never stored or returned."""

    def default(self, obj: dict[str, object]) -> None:
        super().default(obj)
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict) and string_data:
            data = obj.get("data")
            merged = dict(data) if isinstance(data, dict) else {}
            for key, value in string_data.items():
                merged[key] = base64.b64encode(str(value).encode()).decode()
            obj["data"] = merged


_BY_RESOURCE[("", "secrets")] = SecretStrategy


class CustomResourceStrategy(Strategy):
    """Custom resources: status subresource only when the CRD version declares one."""

    def __init__(self, info: ResourceInfo) -> None:
        super().__init__(info)
        self.has_status = info.subresource("status") is not None
        self.keeps_generation = True

    def default(self, obj: dict[str, object]) -> None:
        return None


def strategy_for(info: ResourceInfo) -> Strategy:
    if info.custom:
        return CustomResourceStrategy(info)
    cls = _BY_RESOURCE.get((info.group, info.plural), Strategy)
    return cls(info)


class CRDStrategy(Strategy):
    """CRDs carry the cleanup finalizer, so their objects are deleted before the CRD goes."""

    def prepare_for_create(self, obj: dict[str, object]) -> None:
        super().prepare_for_create(obj)
        md = obj["metadata"]
        assert isinstance(md, dict)
        finalizers = list(md.get("finalizers") or [])
        if "customresourcecleanup.apiextensions.k8s.io" not in finalizers:
            finalizers.append("customresourcecleanup.apiextensions.k8s.io")
        md["finalizers"] = finalizers


_BY_RESOURCE[("apiextensions.k8s.io", "customresourcedefinitions")] = CRDStrategy
