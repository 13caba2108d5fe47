"""Build the node's runtime for the kubelet: bridge and CNI on the node's podCIDR, the image
store, conmon+runc, and the tarballs to import at start (air-gapped images, as k3s does)."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import ipaddress
import logging
import os
from dataclasses import dataclass, field

from pocketkube.client.rest import APIClient
from pocketkube.kubelet.images.credentials import credentials_from_dockerconfigjson
from pocketkube.kubelet.images.store import ImageStore
from pocketkube.kubelet.network import node_net
from pocketkube.kubelet.network.cni import CNI
from pocketkube.kubelet.network.sandbox import SandboxNetwork
from pocketkube.kubelet.runtime.container_runtime import ContainerRuntime
from pocketkube.kubelet.runtime_runc import RuncRuntimeService

log = logging.getLogger(__name__)


@dataclass
class NodeRuntimeConfig:
    node_name: str
    data_dir: str
    node_ip: str
    bridge: str = "cbr0"
    cni_bin_dir: str = "/usr/lib/cni"
    cluster_cidr: str = "10.42.0.0/16"
    service_cidr: str = "10.43.0.0/16"
    node_netns: str | None = None
    insecure_registries: list[str] = field(default_factory=list)
    import_dirs: list[str] = field(default_factory=list)
    pod_routes: list[str] | None = None


def default_pod_routes(config: NodeRuntimeConfig) -> list[str]:
    """A node that is a namespace has no route out, so its pods get a default route (kubenet's):
    they reach node IPs, NodePorts and LoadBalancer addresses on other nodes, and what NodePort
    traffic brings them can be answered. A node on a real host keeps its pods to the cluster and
    service CIDRs, so their traffic never leaves by an uplink by accident."""
    if config.node_netns:
        return ["0.0.0.0/0"]
    return [config.cluster_cidr, config.service_cidr]


async def wait_pod_cidr(client: APIClient, node_name: str, timeout: float = 60.0) -> str:
    nodes = client.core("nodes")
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        node = await nodes.get(node_name)
        cidr = (node.get("spec") or {}).get("podCIDR")
        if cidr:
            return str(cidr)
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"node {node_name} got no podCIDR (is the controller-manager running?)")
        await asyncio.sleep(0.2)


async def build(client: APIClient, config: NodeRuntimeConfig) -> RuncRuntimeService:
    pod_cidr = await wait_pod_cidr(client, config.node_name)
    net = ipaddress.ip_network(pod_cidr)
    gateway = f"{net.network_address + 1}/{net.prefixlen}"
    await node_net.ensure_forwarding()
    await node_net.ensure_bridge(config.bridge, gateway)
    routes = config.pod_routes if config.pod_routes is not None else default_pod_routes(config)
    cni = CNI(bin_dir=config.cni_bin_dir, ipam_dir=os.path.join(config.data_dir, "cni", "ipam"),
              cache_dir=os.path.join(config.data_dir, "cni", "cache"), bridge=config.bridge, subnet=pod_cidr,
              pod_routes=routes)
    network = SandboxNetwork(cni, node_ip=config.node_ip, node_netns=config.node_netns)
    images = ImageStore(os.path.join(config.data_dir, "images"), insecure_registries=config.insecure_registries)
    for d in config.import_dirs:
        for path in sorted(glob.glob(os.path.join(d, "*.tar")) + glob.glob(os.path.join(d, "*.tar.gz"))):
            try:
                refs = await images.import_archive(path)
                log.info("imported %s: %s", path, ", ".join(refs))
            except Exception as e:
                log.warning("could not import %s: %s", path, e)
    runtime = ContainerRuntime(os.path.join(config.data_dir, "conmon"),
                               os.path.join("/run/pocketkube", config.node_name, "runc"),
                               os.path.join(config.data_dir, "exits"))
    secrets = client.core("secrets")

    async def credentials(pod: dict[str, object]) -> dict[str, tuple[str, str]] | None:
        """imagePullSecrets of the pod (kubernetes.io/dockerconfigjson secrets in its namespace)."""
        spec = pod.get("spec") or {}
        md = pod.get("metadata") or {}
        assert isinstance(spec, dict) and isinstance(md, dict)
        out: dict[str, tuple[str, str]] = {}
        for ref in spec.get("imagePullSecrets") or []:
            try:
                secret = await secrets.get(ref.get("name", ""), str(md.get("namespace", "")))
            except Exception:
                continue
            raw = (secret.get("data") or {}).get(".dockerconfigjson")
            if raw:
                import base64

                with contextlib.suppress(Exception):
                    out.update(credentials_from_dockerconfigjson(base64.b64decode(raw)))
        return out or None

    return RuncRuntimeService(data_dir=config.data_dir, images=images, network=network, runtime=runtime,
                              cgroup_root=f"/pocketkube/{config.node_name}", credentials=credentials)
