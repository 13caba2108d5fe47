"""build_container_spec: golden OCI configs for representative pods, plus the rules one by one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pocketkube.kubelet.runtime import Mount, SandboxRef, SpecError, build_container_spec
from pocketkube.kubelet.runtime.oci_defaults import DEFAULT_CAPABILITIES, MASKED_PATHS
from pocketkube.kubelet.runtime.oci_spec import cpu_quota, cpu_shares

Golden = Callable[[str, Any], None]
POD_META = {"name": "web", "namespace": "shop", "uid": "0b6f6a4e-1111-4222-8333-444455556666"}
NGINX_IMAGE = {
    "User": "", "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NGINX_VERSION=1.27"],
    "Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx", "-g", "daemon off;"], "WorkingDir": "",
}
SANDBOX = SandboxRef(netns_path="/run/netns/pk-0b6f6a4e", pause_pid=4242)


def build(container: dict[str, Any], *, pod_spec: dict[str, Any] | None = None, image: dict[str, Any] | None = None,
          sandbox: SandboxRef = SANDBOX, mounts: list[Mount] | None = None, env: list[str] | None = None,
          **kw: Any) -> dict[str, Any]:
    return build_container_spec(
        pod={"metadata": POD_META, "spec": {"containers": [container], **(pod_spec or {})}},
        container=container, image_config=image if image is not None else NGINX_IMAGE,
        rootfs="/var/lib/pocketkube/containers/c1/rootfs", sandbox=sandbox, mounts=mounts or [], env=env or [],
        cgroup_parent="/pocketkube/besteffort/pod0b6f6a4e", hostname="web", container_id="c1", **kw)


def test_golden_plain_container(golden: Golden) -> None:
    config = build({"name": "nginx", "image": "nginx:1.27"}, env=["MODE=prod"],
                   mounts=[Mount("/etc/hosts", "/var/lib/pocketkube/pods/u/etc-hosts"),
                           Mount("/dev/termination-log", "/var/lib/pocketkube/pods/u/containers/nginx/0")])
    golden("plain.json", config)


def test_golden_restricted_container(golden: Golden) -> None:
    container = {
        "name": "api", "image": "registry.local/api:2", "command": ["/app/server"], "args": ["--port=8080"],
        "workingDir": "/app",
        "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "128Mi"}},
        "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "runAsNonRoot": True,
                            "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
    }
    pod_spec = {"shareProcessNamespace": True,
                "securityContext": {"supplementalGroups": [4000], "fsGroup": 2000,
                                    "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}]}}
    mounts = [Mount("/data", "/var/lib/pocketkube/pods/u/volumes/data", read_only=True, propagation="HostToContainer"),
              Mount("/data/cache", "/var/lib/pocketkube/pods/u/volumes/cache"),
              Mount("/dev/shm", "/var/lib/pocketkube/pods/u/shm")]
    golden("restricted.json", build(container, pod_spec=pod_spec, mounts=mounts, env=["LOG_LEVEL=debug"],
                                    pids_limit=1024, oom_score_adj=1000))


def test_golden_privileged_host_network(golden: Golden) -> None:
    container = {"name": "agent", "image": "busybox", "command": ["sh", "-c", "sleep 1d"],
                 "securityContext": {"privileged": True}, "resources": {"limits": {"cpu": "2"}}}
    devices = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 438, "uid": 0, "gid": 0}]
    config = build(container, pod_spec={"hostNetwork": True, "hostPID": True, "hostIPC": True},
                   sandbox=SandboxRef(netns_path="/run/netns/pknode1", pause_pid=77, host_network=True),
                   image={"Env": ["PATH=/bin"]}, all_capabilities=["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_ADMIN"],
                   host_devices=devices)
    golden("privileged-hostnetwork.json", config)


def test_golden_sandbox_pause(golden: Golden) -> None:
    pause = {"name": "POD", "image": "pocketkube/pause"}
    config = build(pause, image={"Entrypoint": ["/catatonit", "-P"], "Env": ["PATH=/"]},
                   sandbox=SandboxRef(netns_path="/run/netns/pk-0b6f6a4e"), container_type="sandbox",
                   pod_spec={"securityContext": {"sysctls": [{"name": "net.ipv4.ping_group_range", "value": "0 2147483647"}]}})
    golden("sandbox.json", config)


@pytest.mark.parametrize(("container", "image", "expected"), [
    ({}, {"Entrypoint": ["e"], "Cmd": ["c1", "c2"]}, ["e", "c1", "c2"]),
    ({"command": ["x"]}, {"Entrypoint": ["e"], "Cmd": ["c"]}, ["x"]),
    ({"command": ["x"], "args": ["a"]}, {"Entrypoint": ["e"], "Cmd": ["c"]}, ["x", "a"]),
    ({"args": ["a", "b"]}, {"Entrypoint": ["e"], "Cmd": ["c"]}, ["e", "a", "b"]),
    ({"args": ["a"]}, {"Cmd": ["c"]}, ["a"]),
    ({}, {"Cmd": ["c"]}, ["c"]),
])
def test_command_and_args_over_entrypoint_and_cmd(container: dict[str, Any], image: dict[str, Any],
                                                  expected: list[str]) -> None:
    assert build({"name": "c", **container}, image=image)["process"]["args"] == expected


def test_no_command_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="no command specified"):
        build({"name": "c"}, image={})


def test_env_order_and_override() -> None:
    env = build({"name": "c"}, image={"Cmd": ["x"], "Env": ["PATH=/bin", "A=image", "B=image"]},
                env=["B=pod", "C=pod"])["process"]["env"]
    assert env == ["PATH=/bin", "HOSTNAME=web", "A=image", "B=pod", "C=pod"]


def test_whole_image_config_json_is_accepted() -> None:
    assert build({"name": "c"}, image={"architecture": "amd64", "config": {"Cmd": ["x"], "WorkingDir": "/w"}})[
        "process"]["cwd"] == "/w"


@pytest.mark.parametrize(("image_user", "sc", "expected"), [
    ("", {}, (0, 0)),
    ("1000", {}, (1000, 0)),
    ("1000:2000", {}, (1000, 2000)),
    ("1000:2000", {"runAsUser": 5}, (5, 0)),
    ("1000:2000", {"runAsGroup": 7}, (1000, 7)),
    ("nobody", {}, (65534, 65534)),
])
def test_user(image_user: str, sc: dict[str, Any], expected: tuple[int, int]) -> None:
    config = build({"name": "c", "securityContext": sc}, image={"Cmd": ["x"], "User": image_user},
                   resolve_user=lambda name: {"nobody": (65534, 65534)}[name])
    assert (config["process"]["user"]["uid"], config["process"]["user"]["gid"]) == expected


def test_pod_security_context_is_the_default_for_the_container() -> None:
    config = build({"name": "c", "securityContext": {"runAsGroup": 9}}, image={"Cmd": ["x"]},
                   pod_spec={"securityContext": {"runAsUser": 8, "runAsGroup": 1}})
    assert config["process"]["user"] == {"uid": 8, "gid": 9}


def test_run_as_non_root_checks() -> None:
    with pytest.raises(SpecError, match="container has runAsNonRoot and image will run as root"):
        build({"name": "c", "securityContext": {"runAsNonRoot": True}}, image={"Cmd": ["x"]})
    with pytest.raises(SpecError, match=r"non-numeric user \(app\), cannot verify"):
        build({"name": "c"}, image={"Cmd": ["x"], "User": "app"}, pod_spec={"securityContext": {"runAsNonRoot": True}})
    with pytest.raises(SpecError, match="unable to find user app"):
        build({"name": "c"}, image={"Cmd": ["x"], "User": "app"})


@pytest.mark.parametrize(("caps", "expected"), [
    (None, list(DEFAULT_CAPABILITIES)),
    ({"add": ["NET_ADMIN"]}, [*DEFAULT_CAPABILITIES, "CAP_NET_ADMIN"]),
    ({"drop": ["ALL"]}, []),
    ({"drop": ["ALL"], "add": ["net_bind_service", "CAP_KILL"]}, ["CAP_NET_BIND_SERVICE", "CAP_KILL"]),
    ({"add": ["ALL"], "drop": ["CHOWN"]}, ["CAP_SYS_ADMIN"]),
    ({"drop": ["KILL", "MKNOD"]}, [c for c in DEFAULT_CAPABILITIES if c not in ("CAP_KILL", "CAP_MKNOD")]),
])
def test_capabilities(caps: dict[str, Any] | None, expected: list[str]) -> None:
    config = build({"name": "c", "securityContext": {"capabilities": caps}}, image={"Cmd": ["x"]},
                   all_capabilities=["CAP_CHOWN", "CAP_SYS_ADMIN"])
    assert config["process"]["capabilities"] == {"bounding": expected, "effective": expected, "permitted": expected}


def test_privileged_has_no_masked_paths_and_all_devices() -> None:
    config = build({"name": "c", "securityContext": {"privileged": True}}, image={"Cmd": ["x"]})
    assert "maskedPaths" not in config["linux"] and "readonlyPaths" not in config["linux"]
    assert config["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    sys_mount = next(m for m in config["mounts"] if m["destination"] == "/sys")
    assert "ro" not in sys_mount["options"]
    plain = build({"name": "c"}, image={"Cmd": ["x"]})
    assert plain["linux"]["maskedPaths"] == list(MASKED_PATHS)
    assert plain["process"]["noNewPrivileges"] is False


def test_unmasked_proc_mount() -> None:
    config = build({"name": "c", "securityContext": {"procMount": "Unmasked"}}, image={"Cmd": ["x"]})
    assert "maskedPaths" not in config["linux"]


@pytest.mark.parametrize(("milli", "shares", "quota"), [(0, 2, 1000), (1, 2, 1000), (100, 102, 10000),
                                                        (250, 256, 25000), (1000, 1024, 100000), (1500, 1536, 150000)])
def test_cpu_arithmetic(milli: int, shares: int, quota: int) -> None:
    assert cpu_shares(milli) == shares
    assert cpu_quota(milli) == quota


def test_resources() -> None:
    besteffort = build({"name": "c"}, image={"Cmd": ["x"]})["linux"]["resources"]
    assert besteffort == {"devices": [{"allow": False, "access": "rwm"}], "cpu": {"shares": 2}}
    limited = build({"name": "c", "resources": {"limits": {"cpu": "1.5", "memory": "1Gi"}}}, image={"Cmd": ["x"]},
                    pids_limit=100)["linux"]["resources"]
    assert limited["cpu"] == {"shares": 1536, "quota": 150000, "period": 100000}
    assert limited["memory"] == {"limit": 1 << 30, "swap": 1 << 30}
    assert limited["pids"] == {"limit": 100}
    with pytest.raises(SpecError, match="invalid quantity"):
        build({"name": "c", "resources": {"limits": {"memory": "lots"}}}, image={"Cmd": ["x"]})


def test_namespaces() -> None:
    def ns(config: dict[str, Any]) -> list[dict[str, str]]:
        return list(config["linux"]["namespaces"])

    assert ns(build({"name": "c"}, image={"Cmd": ["x"]})) == [
        {"type": "pid"}, {"type": "network", "path": "/run/netns/pk-0b6f6a4e"},
        {"type": "ipc", "path": "/proc/4242/ns/ipc"}, {"type": "uts", "path": "/proc/4242/ns/uts"}, {"type": "mount"}]
    shared = ns(build({"name": "c"}, image={"Cmd": ["x"]}, pod_spec={"shareProcessNamespace": True}))
    assert shared[0] == {"type": "pid", "path": "/proc/4242/ns/pid"}
    host = build({"name": "c"}, image={"Cmd": ["x"]}, pod_spec={"hostNetwork": True},
                 sandbox=SandboxRef(netns_path=None, pause_pid=1, host_network=True))
    assert [n["type"] for n in ns(host)] == ["pid", "ipc", "mount"]
    assert "hostname" not in host
    pause = build({"name": "POD"}, image={"Cmd": ["x"]}, sandbox=SandboxRef(netns_path="/run/netns/x"))
    assert ns(pause)[2:4] == [{"type": "ipc"}, {"type": "uts"}] and pause["hostname"] == "web"


def test_mounts_replace_defaults_and_sort_by_depth() -> None:
    mounts = [Mount("/a/b/c", "/h/abc"), Mount("/dev/shm", "/h/shm"), Mount("/a", "/h/a", read_only=True),
              Mount("/run/x", "tmpfs", type="tmpfs", options=("size=1m",), read_only=True)]
    config = build({"name": "c"}, image={"Cmd": ["x"]}, mounts=mounts)
    destinations = [m["destination"] for m in config["mounts"]]
    assert destinations.count("/dev/shm") == 1
    assert destinations[-4:] == ["/a", "/dev/shm", "/run/x", "/a/b/c"]
    assert config["mounts"][-4]["options"] == ["rbind", "rprivate", "ro"]
    assert config["mounts"][-2]["options"] == ["size=1m", "ro"]
    bidirectional = build({"name": "c"}, image={"Cmd": ["x"]}, mounts=[Mount("/m", "/h", propagation="Bidirectional")])
    assert bidirectional["linux"]["rootfsPropagation"] == "rshared"
    assert bidirectional["mounts"][-1]["options"] == ["rbind", "rshared", "rw"]
