"""The network half of a pod sandbox: the pod's namespace, its CNI attachment, its hostname.

The kubelet's pod worker calls `SandboxNetwork.setup(pod)` before starting the pause container and
`teardown(pod)` after the last container is gone. The pause process (catatonit `-P`, a runc
container started by `kubelet/runtime/`) only needs what `setup` returns — the namespace path to
put in its OCI spec (`{"type": "network", "path": ...}`) — and `pod_hostname()`. Namespaces are
named `pk-<pod uid prefix>` and the CNI container id is the full pod uid, so a restarted agent can
tear a pod down from its uid alone (`teardown_uid`), with the cached CNI result.

hostNetwork pods get no namespace of their own: on a real host the runtime omits the network
namespace entry; on a node that is itself a namespace they join the node's (platform.md §4: an
explicit path, so `runc exec` lands there too). Either way their IP is the node IP.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

from pocketkube.api.meta import Obj
from pocketkube.kubelet.network.cni import CNI, PodNetwork, PortMapping
from pocketkube.kubelet.network.netns import create_netns, delete_netns, is_netns, netns_path
from pocketkube.kubelet.startup_trace import span

NamespaceHook = Callable[[str | None], Awaitable[None]]
POD_NETNS_PREFIX = "pk-"
_UID_PREFIX_LEN = 16
_HOSTNAME_MAX = 63


def pod_uid(pod: Obj) -> str:
    uid = (pod.get("metadata") or {}).get("uid")
    if not uid:
        raise ValueError("pod has no metadata.uid")
    return str(uid)


def is_host_network(pod: Obj) -> bool:
    return bool((pod.get("spec") or {}).get("hostNetwork"))


def pod_hostname(pod: Obj, node_name: str) -> str:
    """The UTS hostname: the node's for hostNetwork pods, else spec.hostname or the pod name
    (truncated to 63 characters without a trailing '-' or '.', as the kubelet does)."""
    if is_host_network(pod):
        return node_name
    spec: dict[str, Any] = pod.get("spec") or {}
    name = str(spec.get("hostname") or (pod.get("metadata") or {}).get("name") or "")
    return name[:_HOSTNAME_MAX].rstrip("-.")


def host_port_mappings(pod: Obj) -> list[PortMapping]:
    """The pod's containers' hostPorts as CNI portmap entries (none for hostNetwork pods)."""
    if is_host_network(pod):
        return []
    out: list[PortMapping] = []
    spec: dict[str, Any] = pod.get("spec") or {}
    for container in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]:
        for port in container.get("ports") or []:
            host_port = port.get("hostPort")
            if host_port:
                out.append(PortMapping(host_port=int(host_port), container_port=int(port["containerPort"]),
                                       protocol=str(port.get("protocol") or "TCP").lower(),
                                       host_ip=str(port.get("hostIP") or "")))
    return out


def netns_name_for_uid(uid: str, prefix: str = POD_NETNS_PREFIX) -> str:
    return prefix + re.sub(r"[^a-z0-9]", "", uid.lower())[:_UID_PREFIX_LEN]


async def _nothing() -> None:
    return None


class SandboxNetwork:
    """Creates and removes pod network namespaces and their CNI attachments on one node."""

    def __init__(self, cni: CNI, *, node_ip: str, node_netns: str | None = None,
                 netns_prefix: str = POD_NETNS_PREFIX) -> None:
        self.cni = cni
        self.node_ip = node_ip
        # Where hostNetwork pods live: the node's namespace when the node is one, else the host.
        self.node_netns = node_netns if node_netns is not None else cni.node_netns
        self.netns_prefix = netns_prefix

    def netns_name(self, pod: Obj) -> str:
        return netns_name_for_uid(pod_uid(pod), self.netns_prefix)

    def netns_path(self, pod: Obj) -> str | None:
        """The namespace path the pause container joins (None: the host's, for hostNetwork)."""
        if is_host_network(pod):
            return self.node_netns
        return netns_path(self.netns_name(pod))

    async def setup(self, pod: Obj, *, with_namespace: NamespaceHook | None = None,
                    ) -> tuple[str | None, PodNetwork]:
        """Create the pod's namespace and attach it; returns (netns path, network). Idempotent:
        an attachment already cached for a live namespace is returned without a second ADD, a
        stale one (its namespace gone) is deleted first. On CNI failure the namespace is removed
        again.

        `with_namespace(path)` runs as soon as the namespace exists, concurrently with the CNI
        ADD (the pause container joins the namespace while it is being wired: nothing in it
        needs the addresses). Both are awaited before this returns or raises; the hook's own
        failure is raised after a successful ADD, which stays cached for the retry.
        """
        if is_host_network(pod):
            if with_namespace is not None:
                await with_namespace(self.node_netns)
            return self.node_netns, PodNetwork(ip=self.node_ip, gateway="", interface="", mac="")
        uid = pod_uid(pod)
        name = self.netns_name(pod)
        path = netns_path(name)
        cached = self.cni.cached(uid)
        if cached is not None:
            if cached.netns == path and is_netns(path):
                if with_namespace is not None:
                    await with_namespace(path)
                return path, PodNetwork.from_result(cached.result, ifname=cached.ifname)
            # The namespace went away under a cached attachment (node reboot: /run/netns is a
            # tmpfs, the cache and host-local's files are not). host-local refuses a second IP
            # for the same container id, so release the stale one first.
            await self.cni.delete(uid, path)
        with span("netns"):
            await create_netns(name)
        hook = with_namespace(path) if with_namespace is not None else _nothing()
        attached, hooked = await asyncio.gather(
            self.cni.add(uid, path, port_mappings=host_port_mappings(pod)), hook, return_exceptions=True)
        if isinstance(attached, BaseException):
            await delete_netns(name)
            raise attached
        if isinstance(hooked, BaseException):
            raise hooked
        return path, attached

    async def teardown(self, pod: Obj) -> None:
        """Detach and remove the pod's namespace. Idempotent; nothing to do for hostNetwork."""
        if is_host_network(pod):
            return
        await self.teardown_uid(pod_uid(pod))

    async def teardown_uid(self, uid: str) -> None:
        """Teardown by uid alone (a restarted agent, or a pod object already deleted)."""
        name = netns_name_for_uid(uid, self.netns_prefix)
        await self.cni.delete(uid, netns_path(name))
        await delete_netns(name)

    def attached_uids(self) -> list[str]:
        """Pod uids with a cached CNI attachment: what to reconcile against the pods that should
        exist after an agent restart."""
        return self.cni.cached_pod_ids()
