"""Host plumbing of a `cluster up` cluster: the switch bridge, one network namespace per node.

The seed's picture (reference/platform.md §4): a host bridge `pk<name>sw` is the L3 "switch";
the host holds 172.31.<x>.1/24 on it (reachable only through that bridge), where the API server
listens. Node i is the namespace `pk<name>-node<i>` with a veth `pk<name>v<i>` whose peer is its
`eth0` (172.31.<x>.<10+i>/24), ip_forward on, and NO default route: nothing a node or pod sends
can leave the machine. The host routes the cluster CIDR via the master node (which routes every
pod subnet), so the host's replies to pods stay on the switch too.

Namespaces are created from the host mount namespace (`ip netns add`), and commands inside one
run under `nsenter --net=`, never `ip netns exec` (which remounts /sys; runc then finds no
cgroups). The bridge has `nf_call_iptables 0`: traffic between nodes is switched, never filtered
by the host's firewall.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence

NETNS_DIR = "/run/netns"
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,8}$")


class ClusterNetworkError(Exception):
    """The host plumbing of a cluster could not be made."""


def run(argv: Sequence[str], *, check: bool = True, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False,
                            stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise ClusterNetworkError(f"{' '.join(argv)}: {result.stderr.strip() or result.stdout.strip()}")
    return result


def in_netns(netns: str, argv: Sequence[str]) -> list[str]:
    return ["nsenter", f"--net={os.path.join(NETNS_DIR, netns)}", "--", *argv]


def bridge_name(name: str) -> str:
    return f"pk{name}sw"


def netns_name(name: str, index: int) -> str:
    return f"pk{name}-node{index}"


def veth_name(name: str, index: int) -> str:
    return f"pk{name}v{index}"


def used_ipv4_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 destination the host routes or holds an address in (all tables)."""
    out: list[ipaddress.IPv4Network] = []
    text = run(["ip", "-4", "route", "show", "table", "all"], check=False).stdout
    text += run(["ip", "-4", "-o", "addr", "show"], check=False).stdout
    for token in re.findall(r"\b(\d+\.\d+\.\d+\.\d+(?:/\d+)?)\b", text):
        with contextlib.suppress(ValueError):
            net = ipaddress.ip_network(token, strict=False)
            if isinstance(net, ipaddress.IPv4Network) and not net.is_loopback and net.prefixlen > 0:
                out.append(net)
    return out


def pick_switch_octet(name: str, taken: Iterable[int] = ()) -> int:
    """A third octet x such that 172.31.x.0/24 is unused on this host (start from a hash of the
    name so concurrent clusters seldom race for the same one)."""
    used = used_ipv4_networks()
    skip = set(taken)
    start = sum(name.encode()) * 7 % 200
    for k in range(200):
        x = 20 + (start + k) % 200
        net = ipaddress.ip_network(f"172.31.{x}.0/24")
        if x not in skip and not any(net.overlaps(u) for u in used):
            return x
    raise ClusterNetworkError("no free 172.31.x.0/24 for the cluster switch")


def create_switch(bridge: str, host_cidr: str) -> None:
    if not os.path.exists(f"/sys/class/net/{bridge}"):
        run(["ip", "link", "add", bridge, "type", "bridge", "nf_call_iptables", "0", "nf_call_ip6tables", "0",
             "nf_call_arptables", "0"])
    run(["ip", "addr", "replace", host_cidr, "dev", bridge])
    run(["ip", "link", "set", bridge, "up"])


def create_node(bridge: str, netns: str, veth: str, cidr: str) -> None:
    """The node's namespace, with `eth0` (`cidr`) plugged into the switch, lo up, forwarding on."""
    path = os.path.join(NETNS_DIR, netns)
    if not os.path.exists(path):
        run(["ip", "netns", "add", netns])
    if not os.path.exists(f"/sys/class/net/{veth}"):
        run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", path])
    run(["ip", "link", "set", veth, "master", bridge, "up"])
    run(in_netns(netns, ["ip", "addr", "replace", cidr, "dev", "eth0"]))
    run(in_netns(netns, ["ip", "link", "set", "eth0", "up"]))
    run(in_netns(netns, ["ip", "link", "set", "lo", "up"]))
    run(in_netns(netns, ["sysctl", "-qw", "net.ipv4.ip_forward=1"]))


def check_cluster_cidr(cluster_cidr: str) -> None:
    """Refuse a cluster CIDR the host already routes or holds addresses in (another cluster's, a
    real network's): the host route to it must not hijack anybody's traffic."""
    net = ipaddress.ip_network(cluster_cidr)
    clash = sorted({str(u) for u in used_ipv4_networks() if net.overlaps(u)})
    if clash:
        raise ClusterNetworkError(f"cluster CIDR {cluster_cidr} overlaps {', '.join(clash)} on this host; "
                                  "pick another with --cluster-cidr")


def route_cluster_cidr(cluster_cidr: str, via: str, bridge: str) -> None:
    run(["ip", "route", "add", cluster_cidr, "via", via, "dev", bridge])


def pids_with_arg(fragment: str) -> list[int]:
    """Processes whose command line contains `fragment` (a cluster's unique data dir)."""
    out = []
    needle = fragment.encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry}/cmdline", "rb") as f:
            if needle in f.read():
                out.append(int(entry))
    return out


# ---- teardown ----------------------------------------------------------------------------------

def netns_inode(netns: str) -> int | None:
    try:
        return os.stat(os.path.join(NETNS_DIR, netns)).st_ino
    except OSError:
        return None


def pids_in_netns(inodes: set[int]) -> list[int]:
    """Processes whose network namespace is one of `inodes` (nsfs inode numbers)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/{entry}/ns/net").st_ino in inodes:
                out.append(int(entry))
    return out


def descendants(pid: int) -> list[int]:
    """All live descendants of `pid` (walking parent links in /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{entry}/stat") as f:
                parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
    out: list[int] = []
    frontier = [pid]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parents.items() if pp == p]
        out.extend(kids)
        frontier.extend(kids)
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def signal_pids(pids: Iterable[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def wait_gone(pids: Iterable[int], timeout: float) -> list[int]:
    """Wait until none of `pids` is alive; the ones still alive after `timeout`."""
    pids = list(pids)
    deadline = time.monotonic() + timeout
    while True:
        left = [p for p in pids if alive(p)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


def terminate(pids: Iterable[int], grace: float = 10.0) -> None:
    """SIGTERM `pids`, then SIGKILL whoever is left after `grace` seconds."""
    pids = [p for p in pids if alive(p)]
    signal_pids(pids, signal.SIGTERM)
    left = wait_gone(pids, grace)
    signal_pids(left, signal.SIGKILL)
    wait_gone(left, 5.0)


def remove_cgroups(node: str) -> None:
    """Kill what is left in the node's cgroups (/pocketkube/<node>) and remove them, leaves first."""
    root = "/sys/fs/cgroup"
    for ctrl in sorted(os.listdir(root)):
        for path in (os.path.join(root, ctrl, "pocketkube", node), os.path.join(root, "pocketkube", node)):
            if not os.path.isdir(path):
                continue
            for dirpath, _dirs, files in os.walk(path):
                if "cgroup.procs" in files:
                    with contextlib.suppress(OSError, ValueError), open(os.path.join(dirpath, "cgroup.procs")) as f:
                        signal_pids([int(x) for x in f.read().split()], signal.SIGKILL)
            for dirpath, dirs, _files in os.walk(path, topdown=False):
                for d in dirs:
                    with contextlib.suppress(OSError):
                        os.rmdir(os.path.join(dirpath, d))
            with contextlib.suppress(OSError):
                os.rmdir(path)


def delete_link(name: str) -> None:
    if os.path.exists(f"/sys/class/net/{name}"):
        run(["ip", "link", "delete", name], check=False)


def delete_netns(netns: str) -> None:
    if os.path.lexists(os.path.join(NETNS_DIR, netns)):
        run(["ip", "netns", "delete", netns], check=False)


def cluster_netns(name: str) -> list[str]:
    prefix = f"pk{name}-node"
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix) and n[len(prefix):].isdigit())
    except FileNotFoundError:
        return []


def cluster_links(name: str) -> list[str]:
    pattern = re.compile(rf"^pk{re.escape(name)}(v\d+|sw)$")
    return sorted(n for n in os.listdir("/sys/class/net") if pattern.match(n))


def delete_nft_tables(name: str) -> None:
    """Host nftables tables named for this cluster (`pk<name>…`), if any were made."""
    out = run(["nft", "list", "tables"], check=False).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "table" and parts[2].startswith(f"pk{name}"):
            run(["nft", "delete", "table", parts[1], parts[2]], check=False)


def unmount_under(path: str) -> None:
    """Lazily unmount everything mounted under `path` (deepest first)."""
    path = os.path.realpath(path).rstrip("/") + "/"
    with open("/proc/self/mounts") as f:
        points = [line.split()[1].encode().decode("unicode_escape") for line in f]
    for point in sorted((p for p in points if (p + "/").startswith(path)), key=len, reverse=True):
        run(["umount", "-l", point], check=False)
