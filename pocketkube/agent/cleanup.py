"""Remove everything a node agent left on the machine (like k3s-killall.sh), by its own records.

Used by `pocketkube agent --cleanup` (after the agent has stopped), by `cluster down` and by the
test fixtures: every container of this node is killed and deleted through runc's state dir for the
node, conmon monitors are ended by the pids in their pid files (checked to be conmon), overlay and
tmpfs mounts under the node's data dir are unmounted, pod network namespaces named in the CNI
cache are deleted, then the pod bridge, the node's cgroups and its run dir. Only things recorded
for this node are touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time

from pocketkube.kubelet.network.sandbox import netns_name_for_uid
from pocketkube.proxy.proxier import table_name

RUNC = "/usr/sbin/runc"


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL, timeout=30)


def _is_conmon(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip() == "conmon"
    except OSError:
        return False


def mounts_under(root: str) -> list[str]:
    root = os.path.realpath(root) + "/"
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            target = line.split()[4].replace("\\040", " ")
            if target.startswith(root):
                out.append(target)
    return sorted(out, key=len, reverse=True)  # deepest first


def cleanup_node(*, node_name: str, data_dir: str, bridge: str | None = None) -> list[str]:
    """Tear down what the agent of `node_name` with `data_dir` created; returns what was done."""
    done: list[str] = []
    runc_root = os.path.join("/run/pocketkube", node_name, "runc")
    if os.path.isdir(runc_root):
        listed = _run([RUNC, "--root", runc_root, "list", "-q"])
        for cid in listed.stdout.split():
            _run([RUNC, "--root", runc_root, "kill", "--all", cid, "KILL"])
            _run([RUNC, "--root", runc_root, "delete", "--force", cid])
            done.append(f"container {cid}")
    conmon_dir = os.path.join(data_dir, "conmon")
    if os.path.isdir(conmon_dir):
        for name in os.listdir(conmon_dir):
            with contextlib.suppress(OSError, ValueError):
                with open(os.path.join(conmon_dir, name, "conmon.pid")) as f:
                    pid = int(f.read().strip())
                if _is_conmon(pid):
                    os.kill(pid, signal.SIGKILL)
                    done.append(f"conmon {pid}")
    for target in mounts_under(data_dir):
        if _run(["umount", target]).returncode != 0:
            _run(["umount", "-l", target])
        done.append(f"mount {target}")
    cache_dir = os.path.join(data_dir, "cni", "cache")
    if os.path.isdir(cache_dir):
        for name in os.listdir(cache_dir):
            if name.endswith(".json") and "-" in name:
                uid = name[:-5].split("-", 1)[1]
                netns = netns_name_for_uid(uid)
                if os.path.exists(os.path.join("/run/netns", netns)):
                    _run(["ip", "netns", "delete", netns])
                    done.append(f"netns {netns}")
    table = table_name(node_name)  # the proxy's; deleting the bridge below takes its route along
    if f"table ip {table}" in _run(["nft", "list", "tables"]).stdout.splitlines():
        _run(["nft", "delete", "table", "ip", table])
        done.append(f"nftables table {table}")
    if bridge:
        if _run(["ip", "link", "delete", bridge]).returncode == 0:
            done.append(f"bridge {bridge}")
    base = "/sys/fs/cgroup"
    # Anything still running in this node's cgroups (a pause process whose runc state was lost,
    # say) is this node's: end it, or the cgroups and its network namespace stay busy.
    for root, _, files in os.walk(os.path.join(base, "pids", "pocketkube", node_name)):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError), open(os.path.join(root, "cgroup.procs")) as f:
                for line in f:
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(line), signal.SIGKILL)
                        done.append(f"process {line.strip()}")
    if any(d.startswith("process ") for d in done):
        time.sleep(0.5)  # let the killed processes leave their cgroups
    with contextlib.suppress(OSError):
        for ctrl in os.listdir(base):
            path = os.path.join(base, ctrl, "pocketkube", node_name)
            if os.path.isdir(path):
                for root, dirs, _ in os.walk(path, topdown=False):
                    for d in dirs:
                        with contextlib.suppress(OSError):
                            os.rmdir(os.path.join(root, d))
                with contextlib.suppress(OSError):
                    os.rmdir(path)
                done.append(f"cgroup {path}")
    shutil.rmtree(os.path.join("/run/pocketkube", node_name), ignore_errors=True)
    return done
