"""Pod sandbox networking against the real CNI plugins, kernel bridges and namespaces (root).

Every test builds throwaway "nodes" as network namespaces named `pkt<rand>-…` with no route out
(reference/platform.md §4), so pods may have a default route and nothing can reach a real
interface. Pods are plain namespaces with busybox processes entered through nsenter (no runc).
The `lab` fixture removes every namespace, link, process and directory it made, then asserts
that nothing named after the test's prefix is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from pocketkube.api.meta import Obj
from pocketkube.kubelet.network import node_net
from pocketkube.kubelet.network.cni import CNI, CNIError, PortMapping
from pocketkube.kubelet.network.netns import (
    create_netns,
    delete_netns,
    is_netns,
    list_netns,
    netns_path,
    nsenter_argv,
    run_in_netns,
)
from pocketkube.kubelet.network.sandbox import SandboxNetwork, pod_hostname

CNI_BIN = "/usr/lib/cni"
BUSYBOX = shutil.which("busybox") or "/bin/busybox"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(not os.path.exists(f"{CNI_BIN}/bridge"), reason="needs containernetworking-plugins"),
]


@dataclass
class Node:
    name: str
    netns: str
    ip: str
    cni: CNI
    sandbox: SandboxNetwork


@dataclass
class Lab:
    """One test's world: a unique prefix, a scratch dir, and what to clean up."""

    tag: str
    tmp: str
    subnet_octet: int
    procs: list[asyncio.subprocess.Process] = field(default_factory=list)

    def subnet(self, index: int) -> str:
        return f"10.244.{self.subnet_octet + index}.0/24"

    async def node(self, index: int, *, uplink_ip: str) -> Node:
        """A node namespace with lo up, forwarding on, its pod bridge, and a CNI bound to it."""
        name = f"{self.tag}-node{index}"
        path = await create_netns(name)
        await node_net.ensure_link_up("lo", netns=path)
        await node_net.ensure_forwarding(path)
        subnet = ipaddress.ip_network(self.subnet(index))
        bridge = f"{self.tag}br"
        await node_net.ensure_bridge(bridge, f"{subnet.network_address + 1}/{subnet.prefixlen}", netns=path)
        cni = CNI(bin_dir=CNI_BIN, ipam_dir=f"{self.tmp}/n{index}/ipam", cache_dir=f"{self.tmp}/n{index}/cache",
                  bridge=bridge, subnet=str(subnet), node_netns=path, network_name=f"{self.tag}net")
        sandbox = SandboxNetwork(cni, node_ip=uplink_ip, netns_prefix=f"{self.tag}-p{index}-")
        return Node(name, path, uplink_ip, cni, sandbox)

    async def httpd(self, netns: str, *, port: int = 80, body: str = "hello") -> str:
        """busybox httpd in `netns` serving `body` at / and the client address at /cgi-bin/ip."""
        root = write_docroot(self.tmp, body)
        proc = await asyncio.create_subprocess_exec(
            *nsenter_argv(netns, [BUSYBOX, "httpd", "-f", "-p", str(port), "-h", root]),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return root


def write_docroot(parent: str, body: str) -> str:
    root = tempfile.mkdtemp(prefix="www", dir=parent)
    with open(f"{root}/index.html", "w") as f:
        f.write(body)
    os.mkdir(f"{root}/cgi-bin")
    with open(f"{root}/cgi-bin/ip", "w") as f:
        f.write('#!/bin/sh\necho "Content-Type: text/plain"\necho\necho "$REMOTE_ADDR"\n')
    os.chmod(f"{root}/cgi-bin/ip", 0o755)
    return root


def exists(path: str) -> bool:
    return os.path.lexists(path)


def allocated_ips(cni: CNI) -> list[str]:
    """host-local's allocations: one file per IP under <dataDir>/<network>/."""
    ipam = f"{cni.ipam_dir}/{cni.network_name}"
    return sorted(f for f in os.listdir(ipam) if f[0].isdigit()) if os.path.isdir(ipam) else []


def host_links(tag: str) -> list[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    return [n for n in names if n.startswith(tag)]


def make_placeholder(path: str) -> None:
    open(path, "w").close()


async def sh(netns: str | None, *argv: str) -> str:
    res = await run_in_netns(netns, list(argv), timeout=15)
    assert res.ok, f"{argv} in {netns}: rc {res.returncode} {res.stderr.decode(errors='replace')}"
    return res.stdout.decode()


async def wget(netns: str, url: str, *, attempts: int = 30) -> str:
    """Fetch from inside `netns` (busybox `wget -T` segfaults, so `timeout` bounds it)."""
    last = ""
    for _ in range(attempts):
        res = await run_in_netns(netns, ["timeout", "5", BUSYBOX, "wget", "-qO-", url], timeout=10)
        if res.ok:
            return res.stdout.decode()
        last = res.stderr.decode(errors="replace")
        await asyncio.sleep(0.1)
    raise AssertionError(f"wget {url} from {netns} failed: {last}")


def leftovers(tag: str) -> list[str]:
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line for line in (links + names).splitlines() if tag in line] + list_netns(tag)


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    tag = f"pkt{secrets.token_hex(3)}"
    tmp = tempfile.mkdtemp(prefix=f"{tag}-")
    lab = Lab(tag, tmp, subnet_octet=2 * secrets.randbelow(100) + 20)
    try:
        yield lab
    finally:
        for proc in lab.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            await proc.wait()
        # Pods before nodes: a pod namespace keeps its veth (and so the node's bridge port) alive.
        for name in sorted(list_netns(tag), key=lambda n: "-node" in n):
            await delete_netns(name)
        for ifname in host_links(tag):
            await node_net.delete_link(ifname)
        shutil.rmtree(tmp, ignore_errors=True)
        assert leftovers(tag) == []


def pod(name: str, uid: str, *, host_port: int | None = None, host_network: bool = False) -> Obj:
    port: dict[str, object] = {"containerPort": 80}
    if host_port:
        port["hostPort"] = host_port
    spec: dict[str, object] = {"containers": [{"name": "web", "image": "busybox", "ports": [port]}]}
    if host_network:
        spec["hostNetwork"] = True
    return {"metadata": {"name": name, "namespace": "default", "uid": uid}, "spec": spec}


async def test_pods_on_one_node(lab: Lab) -> None:
    node = await lab.node(1, uplink_ip="172.31.254.11")
    web = pod("web", secrets.token_hex(16), host_port=18080)
    client = pod("client", secrets.token_hex(16))

    web_ns, web_net = await node.sandbox.setup(web)
    client_ns, client_net = await node.sandbox.setup(client)
    assert web_ns and client_ns and is_netns(web_ns) and is_netns(client_ns)
    subnet = ipaddress.ip_network(lab.subnet(1))
    assert ipaddress.ip_address(web_net.ip) in subnet and ipaddress.ip_address(client_net.ip) in subnet
    assert web_net.ip != client_net.ip
    assert web_net.gateway == str(subnet.network_address + 1) and web_net.interface == "eth0"
    assert web_net.prefix_len == 24 and web_net.mac and web_net.host_veth
    assert await node.sandbox.setup(web) == (web_ns, web_net)  # idempotent: no second ADD
    assert pod_hostname(web, "n1") == "web"
    await node.cni.check(web["metadata"]["uid"])

    await lab.httpd(web_ns, body="from-web")
    assert await wget(client_ns, f"http://{web_net.ip}/") == "from-web"
    # hostPort through portmap, from the node itself (its bridge address is local).
    assert await wget(node.netns, f"http://{web_net.gateway}:18080/") == "from-web"

    # A restarted agent: fresh objects, same dirs, tears down from the cached result alone.
    restarted = SandboxNetwork(
        CNI(bin_dir=CNI_BIN, ipam_dir=node.cni.ipam_dir, cache_dir=node.cni.cache_dir, bridge=node.cni.bridge,
            subnet=node.cni.subnet, node_netns=node.netns, network_name=node.cni.network_name),
        node_ip=node.ip, netns_prefix=node.sandbox.netns_prefix)
    assert sorted(restarted.attached_uids()) == sorted([web["metadata"]["uid"], client["metadata"]["uid"]])
    assert allocated_ips(node.cni) == sorted([web_net.ip, client_net.ip])
    await restarted.teardown(web)
    assert allocated_ips(node.cni) == [client_net.ip], "DEL must release the IP"
    assert web_net.host_veth not in await node_net.link_names(netns=node.netns)
    assert not is_netns(web_ns)
    nat = await sh(node.netns, "iptables-save", "-t", "nat")
    assert "18080" not in nat, "portmap DEL must remove the hostPort rules"
    await restarted.teardown(web)  # twice is fine
    await node.sandbox.teardown(client)
    assert node.cni.cached_pod_ids() == []

    # hostNetwork: no namespace of its own, the node's address.
    host_ns, host_net = await node.sandbox.setup(pod("hn", secrets.token_hex(16), host_network=True))
    assert host_ns == node.netns and host_net.ip == node.ip


async def test_pods_across_nodes_keep_source_ip(lab: Lab) -> None:
    n1 = await lab.node(1, uplink_ip="172.31.254.11")
    n2 = await lab.node(2, uplink_ip="172.31.254.12")
    # The "wire" between the nodes: one veth pair, eth0 in each, created inside node1.
    await sh(n1.netns, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", n2.netns)
    for node in (n1, n2):
        await sh(node.netns, "ip", "addr", "add", f"{node.ip}/24", "dev", "eth0")
        await sh(node.netns, "ip", "link", "set", "eth0", "up")
    await node_net.set_routes({lab.subnet(2): n2.ip, "10.250.0.0/24": n2.ip}, n1.netns)
    await node_net.set_routes({lab.subnet(2): n2.ip}, n1.netns)  # drops the stale one
    assert await node_net.get_routes(netns=n1.netns) == {lab.subnet(2): n2.ip}
    await node_net.set_routes({lab.subnet(1): n1.ip}, n2.netns)
    await node_net.set_routes({lab.subnet(1): n1.ip}, n2.netns)  # idempotent
    assert await node_net.get_routes(netns=n2.netns) == {lab.subnet(1): n1.ip}

    client_ns, client_net = await n1.sandbox.setup(pod("client", secrets.token_hex(16)))
    server_ns, server_net = await n2.sandbox.setup(pod("server", secrets.token_hex(16)))
    assert client_ns and server_ns
    assert ipaddress.ip_address(server_net.ip) in ipaddress.ip_network(lab.subnet(2))
    await lab.httpd(server_ns, body="from-node2")
    assert await wget(client_ns, f"http://{server_net.ip}/") == "from-node2"
    seen = (await wget(client_ns, f"http://{server_net.ip}/cgi-bin/ip")).strip()
    seen = seen.removeprefix("[").removesuffix("]").removeprefix("::ffff:")  # httpd listens dual-stack
    assert seen == client_net.ip, "no overlay, no NAT: the source IP is preserved"


async def test_namespace_lost_under_cached_attachment(lab: Lab) -> None:
    """A node reboot empties /run/netns but keeps the CNI cache and host-local's files."""
    node = await lab.node(1, uplink_ip="172.31.254.11")
    p = pod("p", secrets.token_hex(16))
    path, first = await node.sandbox.setup(p)
    assert path
    await delete_netns(node.sandbox.netns_name(p))
    again_path, again = await node.sandbox.setup(p)  # stale attachment released, then ADD
    assert again_path == path and is_netns(path)
    assert allocated_ips(node.cni) == [again.ip]
    await delete_netns(node.sandbox.netns_name(p))
    await node.sandbox.teardown(p)  # DEL with the namespace gone still releases the IP
    assert allocated_ips(node.cni) == [] and node.cni.cached_pod_ids() == []
    # The kernel tears a deleted namespace's veth pair down asynchronously (cleanup_net runs in a
    # workqueue), so give it a moment before calling the host end a leak.
    for _ in range(50):
        leftover = [n for n in await node_net.link_names(netns=node.netns) if n.startswith("veth")]
        if not leftover:
            break
        await asyncio.sleep(0.1)
    assert leftover == []
    assert first.ip


async def test_concurrent_setup_gets_distinct_ips(lab: Lab) -> None:
    node = await lab.node(1, uplink_ip="172.31.254.11")
    pods = [pod(f"p{i}", secrets.token_hex(16)) for i in range(6)]
    results = await asyncio.gather(*(node.sandbox.setup(p) for p in pods))
    ips = [net.ip for _, net in results]
    assert len(set(ips)) == len(pods)
    assert allocated_ips(node.cni) == sorted(ips)
    await asyncio.gather(*(node.sandbox.teardown(p) for p in pods))
    assert allocated_ips(node.cni) == []


async def test_on_host_with_test_bridge_and_test_routes(lab: Lab) -> None:
    """node_netns=None: plugins run in the host namespace, on a uniquely named bridge, and the
    pod gets only an explicit test CIDR route (never a default route on the real host)."""
    subnet = ipaddress.ip_network(lab.subnet(1))
    other = lab.subnet(3)
    bridge = f"{lab.tag}hb"
    await node_net.ensure_bridge(bridge, f"{subnet.network_address + 1}/24")
    cni = CNI(bin_dir=CNI_BIN, ipam_dir=f"{lab.tmp}/host/ipam", cache_dir=f"{lab.tmp}/host/cache",
              bridge=bridge, subnet=str(subnet), pod_routes=[other], network_name=f"{lab.tag}net")
    sandbox = SandboxNetwork(cni, node_ip="127.0.0.1", netns_prefix=f"{lab.tag}-h-")
    p = pod("p", secrets.token_hex(16))
    path, net = await sandbox.setup(p)
    assert path
    routes = await sh(path, "ip", "-4", "route")
    assert "default" not in routes and f"{other} via {net.gateway}" in routes
    await lab.httpd(path, body="on-host")
    assert await wget(path, "http://127.0.0.1/") == "on-host"
    res = await run_in_netns(None, ["timeout", "5", BUSYBOX, "wget", "-qO-", f"http://{net.ip}/"], timeout=10)
    assert res.stdout.decode() == "on-host", res.stderr  # host -> pod over the test bridge only
    await sandbox.teardown(p)
    await sandbox.teardown(p)
    assert net.host_veth not in await node_net.link_names()
    await node_net.delete_link(bridge)


async def test_plugin_error_is_typed_and_leaks_nothing(lab: Lab) -> None:
    node = await lab.node(1, uplink_ip="172.31.254.11")
    missing = netns_path(f"{lab.tag}-missing")
    with pytest.raises(CNIError) as err:
        await node.cni.add("nope", missing, port_mappings=[PortMapping(18081, 80)])
    assert err.value.plugin == "loopback" and err.value.command == "ADD"
    assert err.value.msg and err.value.code != 0
    assert node.cni.cached_pod_ids() == []
    assert allocated_ips(node.cni) == []
    await node.cni.delete("nope", missing)  # DEL of something never added is fine


async def test_netns_create_delete_idempotent(lab: Lab) -> None:
    name = f"{lab.tag}-solo"
    path = await create_netns(name)
    assert await create_netns(name) == path and is_netns(path)
    # A placeholder file (what `ip netns add` inside `ip netns exec` leaves) is repaired.
    await delete_netns(name)
    make_placeholder(path)
    assert not is_netns(path)
    assert await create_netns(name) == path and is_netns(path)
    await delete_netns(name)
    await delete_netns(name)
    assert not exists(path)


async def test_namespace_hook_runs_beside_the_add(lab: Lab) -> None:
    """`with_namespace` (the pause container) starts once the namespace exists, before the ADD is done."""
    node = await lab.node(1, uplink_ip="172.31.254.11")
    uid = secrets.token_hex(16)
    p = pod("p", uid)
    seen: list[tuple[str | None, bool, object]] = []

    async def hook(path: str | None) -> None:
        assert path is not None
        seen.append((path, is_netns(path), node.cni.cached(uid)))

    path, net = await node.sandbox.setup(p, with_namespace=hook)
    assert seen == [(path, True, None)]  # the namespace is there, the attachment not yet cached
    assert node.cni.cached(uid) is not None and net.ip

    # The hook fails: raised after the ADD, which stays cached; the retry reuses it and runs the hook again.
    uid2 = secrets.token_hex(16)
    p2 = pod("p2", uid2)

    async def broken(path: str | None) -> None:
        raise RuntimeError("pause failed")

    with pytest.raises(RuntimeError, match="pause failed"):
        await node.sandbox.setup(p2, with_namespace=broken)
    assert uid2 in node.cni.cached_pod_ids()
    calls: list[str | None] = []

    async def ok(path: str | None) -> None:
        calls.append(path)

    path2, net2 = await node.sandbox.setup(p2, with_namespace=ok)
    assert calls == [path2] and len(allocated_ips(node.cni)) == 2 and net2.ip != net.ip

    # The ADD fails: the namespace the hook was given is removed again, no IP is kept.
    uid3 = secrets.token_hex(16)
    p3 = pod("p3", uid3)
    given: list[str | None] = []

    async def remember(path: str | None) -> None:
        given.append(path)

    good_bin = node.cni.bin_dir
    node.cni.bin_dir = tempfile.mkdtemp(prefix="nobin", dir=lab.tmp)
    try:
        with pytest.raises(CNIError):
            await node.sandbox.setup(p3, with_namespace=remember)
    finally:
        node.cni.bin_dir = good_bin
    assert given and given[0] is not None and not exists(given[0])
    assert uid3 not in node.cni.cached_pod_ids() and len(allocated_ips(node.cni)) == 2

    # hostNetwork: the hook gets the node's namespace, no ADD.
    host: list[str | None] = []

    async def on_host(path: str | None) -> None:
        host.append(path)

    await node.sandbox.setup(pod("hn", secrets.token_hex(16), host_network=True), with_namespace=on_host)
    assert host == [node.sandbox.node_netns]
    await node.sandbox.teardown(p)
    await node.sandbox.teardown(p2)
    assert allocated_ips(node.cni) == []
