"""The built-in LoadBalancer (k3s's ServiceLB, without its per-Service DaemonSet of forwarders).

Every `type: LoadBalancer` Service with no `spec.loadBalancerClass` (or pocketkube's own,
`LB_CLASS`) gets addresses in `status.loadBalancer.ingress` (ipMode VIP); each node's proxy
already DNATs those addresses (proxy/model.py), so nothing else has to forward them.

* Node mode (the default, as k3s ServiceLB): the IPs of the nodes a svclb pod could run on —
  Ready, not cordoned (k3s's pods would outlive a cordon; here a node being drained leaves the
  balancer), no NoSchedule/NoExecute taint but the control-plane ones svclb tolerates,
  not labelled `node.kubernetes.io/exclude-from-external-load-balancers`, and, once any node has
  the `ENABLE_LABEL` label, only the nodes where it is "true". ExternalIPs win over InternalIPs
  if any chosen node has one (k3s `podIPs`); with `externalTrafficPolicy: Local` only nodes with
  a ready endpoint count. Two Services cannot both own a port on the node IPs: as with k3s's
  hostPorts, the older Service keeps it and the younger stays pending with a Warning event.
* Pool mode (`--service-lb-pool CIDR`): one address per Service from the pool
  (service_lb_pool.py), `spec.loadBalancerIP` honoured when it is in the pool and free.

A Service that stops being a LoadBalancer loses its ingress status (and its pool address), as the
cloud service controller does; a deleted one returns its address. Addresses update as nodes come
and go. Events say what changed, as k3s's do (UpdatedLoadBalancer, UnAvailableLoadBalancer).
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from pocketkube.client.events import EventRecorder
from pocketkube.client.informer import Informer, object_key
from pocketkube.client.rest import APIClient
from pocketkube.controllers.base import Controller
from pocketkube.controllers.pod_util import condition
from pocketkube.controllers.service_lb_pool import AddressPool, NoAddress

log = logging.getLogger(__name__)

Obj = dict[str, Any]
LB_CLASS = "pocketkube.io/service-lb"
ENABLE_LABEL = "svccontroller.pocketkube.io/enablelb"
EXCLUDE_LABEL = "node.kubernetes.io/exclude-from-external-load-balancers"
TOLERATED_TAINTS = frozenset({"node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master",
                              "CriticalAddonsOnly"})
MANAGER = "service-lb-controller"


def is_managed(svc: Obj) -> bool:
    """A LoadBalancer Service this controller answers for."""
    spec = svc.get("spec") or {}
    return spec.get("type") == "LoadBalancer" and spec.get("loadBalancerClass") in (None, "", LB_CLASS)


def ingress_ips(svc: Obj) -> list[str]:
    ingress = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [str(i["ip"]) for i in ingress if isinstance(i, dict) and i.get("ip")]


def node_eligible(node: Obj) -> bool:
    """Could a svclb pod run here (k3s: DaemonSet tolerating only the control-plane taints)?"""
    md, spec = node.get("metadata") or {}, node.get("spec") or {}
    if md.get("deletionTimestamp") or spec.get("unschedulable"):
        return False
    if EXCLUDE_LABEL in (md.get("labels") or {}):
        return False
    ready = condition(node, "Ready")
    if not ready or ready.get("status") != "True":
        return False
    return not any(t.get("effect") in ("NoSchedule", "NoExecute") and t.get("key") not in TOLERATED_TAINTS
                   for t in spec.get("taints") or [])


def node_ips(node: Obj, kind: str) -> list[str]:
    """The node's IPv4 addresses of `kind` (InternalIP / ExternalIP), loopback left out: nobody
    outside the node could reach it, and the proxy does not DNAT 127/8."""
    out = []
    for addr in (node.get("status") or {}).get("addresses") or []:
        if addr.get("type") != kind:
            continue
        try:
            ip = ipaddress.ip_address(str(addr.get("address") or ""))
        except ValueError:
            continue
        if ip.version == 4 and not ip.is_loopback and not ip.is_unspecified:
            out.append(str(ip))
    return out


def node_addresses(nodes: list[Obj], *, only: set[str] | None = None) -> list[str]:
    """k3s `podIPs`: ExternalIPs of the eligible nodes if any has one, else their InternalIPs."""
    labelled = any(ENABLE_LABEL in ((n.get("metadata") or {}).get("labels") or {}) for n in nodes)
    chosen = [n for n in nodes if node_eligible(n)
              and (not labelled or ((n.get("metadata") or {}).get("labels") or {}).get(ENABLE_LABEL) == "true")
              and (only is None or (n.get("metadata") or {}).get("name") in only)]
    external = {ip for n in chosen for ip in node_ips(n, "ExternalIP")}
    ips = external or {ip for n in chosen for ip in node_ips(n, "InternalIP")}
    return sorted(ips, key=lambda ip: int(ipaddress.IPv4Address(ip)))


def ready_endpoint_nodes(slices: list[Obj]) -> set[str]:
    return {str(ep["nodeName"]) for s in slices for ep in s.get("endpoints") or []
            if ep.get("nodeName") and (ep.get("conditions") or {}).get("ready") is not False
            and ((ep.get("targetRef") or {}).get("kind") in (None, "Pod"))}


def service_ports(svc: Obj) -> set[tuple[str, int]]:
    return {(str(p.get("protocol") or "TCP"), int(p.get("port") or 0)) for p in (svc.get("spec") or {}).get("ports") or []}


def _age_key(svc: Obj) -> tuple[str, str, str]:
    md = svc.get("metadata") or {}
    return str(md.get("creationTimestamp") or ""), str(md.get("namespace") or ""), str(md.get("name") or "")


class ServiceLBController(Controller):
    name = "service-lb"
    workers = 4  # pool operations are synchronous (atomic between awaits); the time is in API round trips

    def __init__(self, client: APIClient, *, pool: list[str] | None = None) -> None:
        super().__init__()
        self.client = client
        self.pool = AddressPool(pool) if pool else None
        self.recorder = EventRecorder(client, MANAGER)
        self.services = Informer(client.core("services"))
        self.services.add_handler(self._service_changed)
        self.informers = [self.services]
        self.nodes: Informer | None = None
        self.slices: Informer | None = None
        if self.pool is None:
            self.nodes = Informer(client.core("nodes"))
            self.nodes.add_handler(self._node_changed)
            self.slices = Informer(client.resource("discovery.k8s.io", "v1", "endpointslices"))
            self.slices.add_handler(self._slice_changed)
            self.informers += [self.nodes, self.slices]
        self._pending: set[str] = set()  # managed Services without an address: retried when one frees
        self._reported: dict[str, str] = {}  # key -> last problem reported, so events are not repeated

    # ---- event handlers: record what is held, enqueue keys ----

    def _service_changed(self, old: Obj | None, new: Obj | None) -> None:
        if new is not None and self.pool is not None and is_managed(new):
            for ip in ingress_ips(new)[:1]:
                self.pool.observe(object_key(new), ip)
        self.enqueue(new if new is not None else old)
        if old is not None and is_managed(old) and (
                new is None or not is_managed(new) or service_ports(new) != service_ports(old)):
            self._retry_pending()  # an address or a port may have been freed

    def _node_changed(self, old: Obj | None, new: Obj | None) -> None:
        def view(n: Obj | None) -> object:
            if n is None:
                return None
            return (node_eligible(n), node_ips(n, "InternalIP"), node_ips(n, "ExternalIP"),
                    ((n.get("metadata") or {}).get("labels") or {}).get(ENABLE_LABEL))
        if view(old) != view(new):
            for svc in self.services.list():
                if is_managed(svc):
                    self.enqueue(svc)

    def _slice_changed(self, old: Obj | None, new: Obj | None) -> None:
        obj = new if new is not None else old
        assert obj is not None
        md = obj.get("metadata") or {}
        name = (md.get("labels") or {}).get("kubernetes.io/service-name")
        if name:
            key = f"{md.get('namespace')}/{name}"
            svc = self.services.get(key)
            if svc is not None and is_managed(svc) and (svc.get("spec") or {}).get("externalTrafficPolicy") == "Local":
                self.queue.add(key)

    def _retry_pending(self) -> None:
        for key in list(self._pending):
            self.queue.add(key)

    # ---- sync ----

    async def sync(self, key: str) -> None:
        svc = self.services.get(key)
        if svc is None or (svc.get("metadata") or {}).get("deletionTimestamp"):
            self._forget(key)
            return
        if not is_managed(svc):
            self._forget(key)
            if (svc.get("spec") or {}).get("type") != "LoadBalancer" and ingress_ips(svc):
                await self._write(svc, [])  # no longer a LoadBalancer: its ingress goes
            return
        try:
            ips = self.wanted(key, svc)
            problem = "" if ips else "There are no available nodes for LoadBalancer"
        except NoAddress as e:
            ips, problem = [], str(e)
            if self.pool is not None and self.pool.release(key) is not None:
                self._retry_pending()
        if ips:
            self._pending.discard(key)
        else:
            self._pending.add(key)
        await self._write(svc, ips)
        if problem and self._reported.get(key) != problem:
            reason = "AllocationFailed" if self.pool is not None else "UnAvailableLoadBalancer"
            await self.recorder.event(_as_service(svc), "Warning", reason, problem)
        self._reported[key] = problem

    def wanted(self, key: str, svc: Obj) -> list[str]:
        """The ingress IPs the Service should show (raises NoAddress when it can get none)."""
        spec = svc.get("spec") or {}
        if self.pool is not None:
            current = ingress_ips(svc)
            if current and self.pool.holder(current[0]) in (None, key) and self.pool.held_by(key) is None:
                self.pool.observe(key, current[0])
            requested = str(spec.get("loadBalancerIP") or "")
            return [self.pool.allocate(key, requested)]
        assert self.nodes is not None and self.slices is not None
        clash = self.port_clash(key, svc)
        if clash:
            raise NoAddress(clash)
        only = None
        if spec.get("externalTrafficPolicy") == "Local":
            ns, name = key.split("/", 1)
            only = ready_endpoint_nodes([s for s in self.slices.list()
                                         if (s.get("metadata") or {}).get("namespace") == ns
                                         and ((s.get("metadata") or {}).get("labels") or {})
                                         .get("kubernetes.io/service-name") == name])
        return node_addresses(self.nodes.list(), only=only)

    def port_clash(self, key: str, svc: Obj) -> str:
        """Node mode: the older managed Service already holding one of this one's ports, if any."""
        mine = service_ports(svc)
        me = _age_key(svc)
        for other in self.services.list():
            okey = object_key(other)
            if okey == key or not is_managed(other) or (other.get("metadata") or {}).get("deletionTimestamp"):
                continue
            shared = mine & service_ports(other)
            if shared and _age_key(other) < me:
                proto, port = sorted(shared)[0]
                return f"port {port}/{proto} on the node addresses is already used by LoadBalancer {okey}"
        return ""

    def _forget(self, key: str) -> None:
        self._pending.discard(key)
        self._reported.pop(key, None)
        if self.pool is not None and self.pool.release(key) is not None:
            self._retry_pending()

    async def _write(self, svc: Obj, ips: list[str]) -> None:
        want = [{"ip": ip, "ipMode": "VIP"} for ip in ips]
        current = ((svc.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
        if current == want:
            return
        md = svc["metadata"]
        await self.client.core("services").patch(
            md["name"], {"status": {"loadBalancer": {"ingress": want or None}}}, md["namespace"],
            subresource="status", field_manager=MANAGER)
        log.info("service %s/%s: load balancer ingress %s -> %s", md["namespace"], md["name"],
                 ingress_ips(svc) or "none", ips or "none")
        if ips and is_managed(svc):
            await self.recorder.event(_as_service(svc), "Normal", "UpdatedLoadBalancer",
                                      f"Updated LoadBalancer with new IPs: {ingress_ips(svc)} -> {ips}")


def _as_service(svc: Obj) -> Obj:
    return {**svc, "kind": "Service", "apiVersion": "v1"}
