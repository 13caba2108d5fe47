"""Which strategy serves which resource."""

from __future__ import annotations

import base64
from typing import Any

from pocketkube.api.errors import FieldError
from pocketkube.api.resources import ResourceInfo
from pocketkube.api.validation_network import validate_load_balancer_status
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
    """kube's dropTypeDependentFields: switching type away from NodePort/LoadBalancer drops the
    node ports, traffic policy and balancer fields the user left as they were (they were filled
    in for the old type), and a Service that is no longer a LoadBalancer loses its balancer status."""

    return_deleted_object = True

    def prepare_for_update(self, new: dict[str, Any], old: dict[str, Any]) -> None:
        super().prepare_for_update(new, old)
        spec, old_spec = new.setdefault("spec", {}), old.get("spec") or {}
        new_type, old_type = spec.get("type") or "ClusterIP", old_spec.get("type") or "ClusterIP"
        external = ("NodePort", "LoadBalancer")
        if old_type in external and new_type not in external:
            old_ports = {p.get("nodePort") for p in old_spec.get("ports") or [] if p.get("nodePort")}
            if {p.get("nodePort") for p in spec.get("ports") or [] if p.get("nodePort")} <= old_ports:
                for p in spec.get("ports") or []:
                    p.pop("nodePort", None)
            if spec.get("externalTrafficPolicy") == old_spec.get("externalTrafficPolicy"):
                spec.pop("externalTrafficPolicy", None)
        if old_type == "LoadBalancer" and new_type != "LoadBalancer":
            for field in ("loadBalancerClass", "allocateLoadBalancerNodePorts"):
                if spec.get(field) == old_spec.get(field):
                    spec.pop(field, None)
            if spec.get("healthCheckNodePort") == old_spec.get("healthCheckNodePort"):
                spec.pop("healthCheckNodePort", None)
        if new_type != "LoadBalancer" and isinstance(new.get("status"), dict):
            new["status"]["loadBalancer"] = {}

    def validate_status_update(self, new: dict[str, Any], old: dict[str, Any]) -> list[FieldError]:
        return validate_load_balancer_status((new.get("status") or {}).get("loadBalancer"))


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
