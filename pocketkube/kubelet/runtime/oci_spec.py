"""Pod spec + container spec + image config -> OCI runtime config.json, as a pure function.

This is the kubelet's `generateContainerConfig` and containerd's CRI `containerSpec` folded into
one place: Kubernetes command/args over the image's Entrypoint/Cmd, env, user, capabilities,
privileged, resources, namespaces shared with the pod sandbox (the pause process) and the default
mounts. Everything impure (resolving env references, reading the host's capabilities or devices,
looking a user name up in the image's /etc/passwd) is done by the caller and passed in, so the
output is checked against golden files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pocketkube.api.quantity import Quantity, QuantityError
from pocketkube.kubelet.runtime import oci_defaults as d
from pocketkube.kubelet.runtime.errors import SpecError

CPU_PERIOD_US = 100_000
MIN_CPU_SHARES = 2
MIN_CPU_QUOTA_US = 1000
_PROPAGATION = {None: "rprivate", "None": "rprivate", "HostToContainer": "rslave", "Bidirectional": "rshared"}


@dataclass(frozen=True)
class SandboxRef:
    """The pod sandbox a container joins: its network namespace and the pause process.

    `pause_pid` None means "this is the sandbox itself": the container gets new ipc/uts/pid
    namespaces. `netns_path` None with `host_network` means the agent's own network namespace;
    on a node that is itself a netns, pass its path so `runc exec` lands in it too.
    """

    netns_path: str | None
    pause_pid: int | None = None
    host_network: bool = False


@dataclass(frozen=True)
class Mount:
    """One volume mount, already resolved to a host path by the volume manager."""

    destination: str
    source: str
    type: str = "bind"
    options: tuple[str, ...] = ()
    read_only: bool = False
    propagation: str | None = None  # Kubernetes MountPropagationMode: None, HostToContainer, Bidirectional

    def to_oci(self) -> dict[str, Any]:
        if self.type == "bind":
            options = ["rbind", _PROPAGATION.get(self.propagation, "rprivate"), "ro" if self.read_only else "rw"]
            options += [o for o in self.options if o not in options]
        else:
            options = list(self.options) + (["ro"] if self.read_only and "ro" not in self.options else [])
        return {"destination": self.destination, "type": self.type, "source": self.source, "options": options}


def build_container_spec(
    *,
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    image_config: Mapping[str, Any],
    rootfs: str,
    sandbox: SandboxRef,
    mounts: Sequence[Mount],
    env: Sequence[str],
    cgroup_parent: str,
    hostname: str,
    container_id: str | None = None,
    container_type: str = "container",
    all_capabilities: Sequence[str] = d.ALL_CAPABILITIES,
    host_devices: Sequence[Mapping[str, Any]] = (),
    resolve_user: Callable[[str], tuple[int, int]] | None = None,
    pids_limit: int | None = None,
    oom_score_adj: int | None = None,
) -> dict[str, Any]:
    """The OCI config for one container of `pod`.

    `env` is the container's resolved env ("K=V", in order); `cgroup_parent` the pod's cgroup; the
    cgroupsPath is `<cgroup_parent>/<container_id or name>`. `all_capabilities` is what "ALL" and
    privileged grant (pass the agent's own effective set). `resolve_user` maps a non-numeric image
    User to (uid, gid); without it such a user is a SpecError. Raises SpecError.
    """
    spec = pod.get("spec") or {}
    image = image_config.get("config") or image_config  # the whole image config JSON or its "config"
    pod_sc = spec.get("securityContext") or {}
    sc = container.get("securityContext") or {}
    privileged = bool(sc.get("privileged"))
    name = str(container.get("name", ""))

    uid, gid = _user(pod, container, image, pod_sc, sc, resolve_user)
    user: dict[str, Any] = {"uid": uid, "gid": gid}
    extra_gids = _dedupe([int(g) for g in pod_sc.get("supplementalGroups") or []]
                         + ([int(pod_sc["fsGroup"])] if pod_sc.get("fsGroup") is not None else []))
    if extra_gids:
        user["additionalGids"] = extra_gids

    caps = _capabilities(sc, privileged, all_capabilities)
    process: dict[str, Any] = {
        "terminal": bool(container.get("tty")),
        "user": user,
        "args": _args(container, image),
        "env": _env(image, env, hostname),
        "cwd": container.get("workingDir") or image.get("WorkingDir") or "/",
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": sc.get("allowPrivilegeEscalation") is False and not privileged,
    }
    if oom_score_adj is not None:
        process["oomScoreAdj"] = oom_score_adj

    namespaces, own_uts = _namespaces(spec, sandbox)
    linux: dict[str, Any] = {
        "resources": _resources(container.get("resources") or {}, privileged, pids_limit),
        "cgroupsPath": f"{cgroup_parent.rstrip('/')}/{container_id or name}",
        "namespaces": namespaces,
    }
    if privileged:
        linux["devices"] = [dict(dev) for dev in host_devices]
    elif sc.get("procMount") != "Unmasked":
        linux["maskedPaths"] = list(d.MASKED_PATHS)
        linux["readonlyPaths"] = list(d.READONLY_PATHS)
    sysctls = {s["name"]: str(s.get("value", "")) for s in pod_sc.get("sysctls") or []}
    if sysctls:
        linux["sysctl"] = sysctls

    oci_mounts, propagation = _mounts(mounts, privileged)
    if propagation:
        linux["rootfsPropagation"] = propagation

    config: dict[str, Any] = {
        "ociVersion": d.OCI_VERSION,
        "process": process,
        "root": {"path": rootfs, "readonly": bool(sc.get("readOnlyRootFilesystem"))},
    }
    if own_uts and hostname:
        config["hostname"] = hostname
    config["mounts"] = oci_mounts
    config["annotations"] = _annotations(pod, name, container_type)
    config["linux"] = linux
    return config


def _args(container: Mapping[str, Any], image: Mapping[str, Any]) -> list[str]:
    """Kubernetes semantics: command replaces Entrypoint (and drops Cmd); args replaces Cmd."""
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    if command:
        argv = command + args
    else:
        argv = list(image.get("Entrypoint") or []) + (args or list(image.get("Cmd") or []))
    if not argv:
        raise SpecError("no command specified")
    return [str(a) for a in argv]


def _env(image: Mapping[str, Any], env: Sequence[str], hostname: str) -> list[str]:
    """Default PATH, HOSTNAME, image env, then container env; a later key replaces in place."""
    out: list[str] = []
    index: dict[str, int] = {}
    for entry in [d.DEFAULT_PATH, f"HOSTNAME={hostname}", *(image.get("Env") or []), *env]:
        key = entry.split("=", 1)[0]
        if key in index:
            out[index[key]] = entry
        else:
            index[key] = len(out)
            out.append(entry)
    return out


def _user(pod: Mapping[str, Any], container: Mapping[str, Any], image: Mapping[str, Any],
          pod_sc: Mapping[str, Any], sc: Mapping[str, Any],
          resolve_user: Callable[[str], tuple[int, int]] | None) -> tuple[int, int]:
    """runAsUser/runAsGroup (container over pod) over the image's "uid[:gid]"; runAsNonRoot checked."""
    run_as_user = sc.get("runAsUser", pod_sc.get("runAsUser"))
    run_as_group = sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
    image_user = str(image.get("User") or "")
    uid, gid = 0, 0
    if run_as_user is None and image_user:
        name, _, group = image_user.partition(":")
        if name.isdigit():
            uid = int(name)
        elif non_root:
            raise SpecError(f"container has runAsNonRoot and image has non-numeric user ({name}), "
                            f"cannot verify user is non-root ({_describe(pod, container)})")
        elif resolve_user is not None:
            try:
                uid, gid = resolve_user(name)
            except (KeyError, OSError, ValueError) as e:
                raise SpecError(f"unable to find user {name}: {e}") from e
        else:
            raise SpecError(f"unable to find user {name}: no resolver for non-numeric image user")
        if group:
            if not group.isdigit():
                raise SpecError(f"unable to find group {group}: only numeric groups are supported")
            gid = int(group)
    if run_as_user is not None:
        uid = int(run_as_user)
    if run_as_group is not None:
        gid = int(run_as_group)
    if non_root and uid == 0:
        raise SpecError(f"container has runAsNonRoot and image will run as root ({_describe(pod, container)})")
    return uid, gid


def _describe(pod: Mapping[str, Any], container: Mapping[str, Any]) -> str:
    meta = pod.get("metadata") or {}
    return (f'pod: "{meta.get("name", "")}_{meta.get("namespace", "")}({meta.get("uid", "")})", '
            f'container: {container.get("name", "")}')


def _cap_name(cap: str) -> str:
    cap = cap.upper()
    return cap if cap.startswith("CAP_") else f"CAP_{cap}"


def _capabilities(sc: Mapping[str, Any], privileged: bool, all_caps: Sequence[str]) -> list[str]:
    """containerd's order: add ALL, drop ALL, then individual adds, then individual drops."""
    if privileged:
        return list(all_caps)
    caps = list(d.DEFAULT_CAPABILITIES)
    spec_caps = sc.get("capabilities") or {}
    add = [str(c) for c in spec_caps.get("add") or []]
    drop = [str(c) for c in spec_caps.get("drop") or []]
    if any(c.upper() == "ALL" for c in add):
        caps = list(all_caps)
    if any(c.upper() == "ALL" for c in drop):
        caps = []
    for cap in add:
        if cap.upper() != "ALL" and _cap_name(cap) not in caps:
            caps.append(_cap_name(cap))
    dropped = {_cap_name(c) for c in drop if c.upper() != "ALL"}
    return [c for c in caps if c not in dropped]


def _namespaces(spec: Mapping[str, Any], sandbox: SandboxRef) -> tuple[list[dict[str, str]], bool]:
    """-> (namespaces, whether the container has a UTS namespace so a hostname may be set)."""
    pause = sandbox.pause_pid
    host_network = sandbox.host_network or bool(spec.get("hostNetwork"))
    out: list[dict[str, str]] = []
    if spec.get("hostPID"):
        pass
    elif spec.get("shareProcessNamespace") and pause is not None:
        out.append({"type": "pid", "path": f"/proc/{pause}/ns/pid"})
    else:
        out.append({"type": "pid"})
    if sandbox.netns_path:
        out.append({"type": "network", "path": sandbox.netns_path})
    elif not host_network:
        out.append({"type": "network"})
    if not spec.get("hostIPC"):
        out.append({"type": "ipc", "path": f"/proc/{pause}/ns/ipc"} if pause is not None else {"type": "ipc"})
    own_uts = not host_network
    if own_uts:
        out.append({"type": "uts", "path": f"/proc/{pause}/ns/uts"} if pause is not None else {"type": "uts"})
    out.append({"type": "mount"})
    return out, own_uts


def _quantity(value: Any) -> Quantity | None:
    if value is None:
        return None
    try:
        return Quantity.parse(value)
    except QuantityError as e:
        raise SpecError(f"invalid quantity {value!r}: {e}") from e


def cpu_shares(milli_cpu: int) -> int:
    """kubelet milliCPUToShares: milliCPU*1024/1000, at least 2 (also for no request)."""
    return max(MIN_CPU_SHARES, milli_cpu * 1024 // 1000)


def cpu_quota(milli_cpu: int, period: int = CPU_PERIOD_US) -> int:
    """kubelet milliCPUToQuota: the share of one period, at least 1 ms."""
    return max(MIN_CPU_QUOTA_US, milli_cpu * period // 1000)


def _resources(resources: Mapping[str, Any], privileged: bool, pids_limit: int | None) -> dict[str, Any]:
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    cpu_request = _quantity(requests.get("cpu"))
    cpu_limit = _quantity(limits.get("cpu"))
    memory_limit = _quantity(limits.get("memory"))
    out: dict[str, Any] = {"devices": [{"allow": privileged, "access": "rwm"}]}
    if memory_limit is not None and memory_limit.int_value() > 0:
        # swap == limit: no swap on top of the limit, as the kubelet asks on cgroup v1.
        out["memory"] = {"limit": memory_limit.int_value(), "swap": memory_limit.int_value()}
    share_basis = cpu_request if cpu_request is not None and cpu_request.value else cpu_limit
    cpu: dict[str, int] = {"shares": cpu_shares(share_basis.milli_value() if share_basis else 0)}
    if cpu_limit is not None and cpu_limit.value > 0:
        cpu["quota"] = cpu_quota(cpu_limit.milli_value())
        cpu["period"] = CPU_PERIOD_US
    out["cpu"] = cpu
    if pids_limit is not None:
        out["pids"] = {"limit": pids_limit}
    return out


def _mounts(mounts: Sequence[Mount], privileged: bool) -> tuple[list[dict[str, Any]], str | None]:
    """Defaults (those a volume replaces dropped), then volumes shallowest first; rootfs propagation."""
    taken = {m.destination.rstrip("/") or "/" for m in mounts}
    out = [m for m in d.default_mounts(privileged=privileged) if m["destination"] not in taken]
    ordered = sorted(mounts, key=lambda m: len([p for p in m.destination.split("/") if p]))
    out += [m.to_oci() for m in ordered]
    modes = {m.propagation for m in mounts}
    if "Bidirectional" in modes:
        return out, "rshared"
    if "HostToContainer" in modes:
        return out, "rslave"
    return out, None


def _annotations(pod: Mapping[str, Any], name: str, container_type: str) -> dict[str, str]:
    """What a re-adopting agent reads back from `runc state` / `runc list` to find the pod."""
    meta = pod.get("metadata") or {}
    return {
        "io.kubernetes.container.name": name,
        "io.kubernetes.cri.container-type": container_type,
        "io.kubernetes.pod.name": str(meta.get("name", "")),
        "io.kubernetes.pod.namespace": str(meta.get("namespace", "")),
        "io.kubernetes.pod.uid": str(meta.get("uid", "")),
    }


def _dedupe(values: list[int]) -> list[int]:
    return list(dict.fromkeys(values))
