"""Validation of a PodSpec (containers, ports, env, mounts, probes, resources, volumes) and of Pod updates.

Mirrors kube's pkg/apis/core/validation ValidatePodSpec and ValidatePodUpdate, with the same field
paths and messages. Used for bare Pods and, through `validate_pod_template`, for every workload's
template (validation_workloads).
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from pocketkube.api import names
from pocketkube.api.defaults_pod import VOLUME_SOURCES
from pocketkube.api.validation_common import (
    Errors,
    GoLiteral,
    Obj,
    as_dict,
    as_list,
    dict_items,
    duplicate,
    enum,
    forbidden,
    invalid,
    non_negative,
    not_found,
    not_supported,
    parse_quantity_at,
    required,
    validate_annotations,
    validate_labels,
    validate_port_num_or_name,
    wrap,
)

PROTOCOLS = ("SCTP", "TCP", "UDP")
RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
STANDARD_CONTAINER_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})
MAX_INT32 = 2**31 - 1
_ENV_FIELD_PATHS = (
    "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName",
    "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs",
)
_LABEL_OR_ANNOTATION_REF = re.compile(r"^metadata\.(labels|annotations)\['[^']*'\]$")
UPDATABLE_POD_FIELDS = (
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
)


# --- resources -----------------------------------------------------------------------------------


def _is_native(name: str) -> bool:
    return "/" not in name or "kubernetes.io/" in name


def _overcommit_allowed(name: str) -> bool:
    return _is_native(name) and not name.startswith("hugepages-")


def _validate_container_resource_name(name: str, path: str) -> Errors:
    errs = wrap(path, names.is_qualified_name(name), name)
    if "/" not in name:
        if name not in STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-"):
            errs.append(invalid(path, name, "must be a standard resource for containers"))
    elif not _is_native(name) and name.startswith("requests."):
        errs.append(invalid(path, name, "doesn't follow extended resource name standard"))
    return errs


def validate_resource_requirements(resources: Any, path: str) -> Errors:
    resources = as_dict(resources)
    errs: Errors = []
    limits: dict[str, Any] = {}
    for kind in ("limits", "requests"):
        for name, raw in as_dict(resources.get(kind)).items():
            qpath = f"{path}.{kind}[{name}]"
            errs += _validate_container_resource_name(name, qpath)
            quantity, qerrs = parse_quantity_at(qpath, raw)
            errs += qerrs
            if quantity is None:
                continue
            if quantity.value < 0:
                errs.append(invalid(qpath, str(quantity), "must be greater than or equal to 0"))
            elif not _overcommit_allowed(name) and "/" in name and quantity.value.denominator != 1:
                errs.append(invalid(qpath, GoLiteral(str(quantity)), "must be an integer"))
            if kind == "limits":
                limits[name] = quantity
                continue
            limit = limits.get(name)
            if limit is not None:
                if quantity != limit and not _overcommit_allowed(name):
                    errs.append(invalid(f"{path}.requests", str(quantity), f"must be equal to {name} limit of {limit}"))
                elif quantity > limit:
                    errs.append(invalid(f"{path}.requests", str(quantity),
                                        f"must be less than or equal to {name} limit of {limit}"))
            elif not _overcommit_allowed(name) and name not in as_dict(resources.get("limits")):
                errs.append(required(f"{path}.limits", "Limit must be set for non overcommitable resources"))
    return errs


# --- containers ----------------------------------------------------------------------------------


def _validate_ports(ports: Any, path: str) -> Errors:
    errs: Errors = []
    seen: set[str] = set()
    for i, port in enumerate(dict_items(ports)):
        ppath = f"{path}[{i}]"
        name = port.get("name")
        if name:
            msgs = names.is_valid_port_name(str(name))
            if msgs:
                errs += wrap(f"{ppath}.name", msgs, name)
            elif name in seen:
                errs.append(duplicate(f"{ppath}.name", name))
            seen.add(str(name))
        container_port = port.get("containerPort")
        if not container_port:
            errs.append(required(f"{ppath}.containerPort"))
        elif isinstance(container_port, int):
            errs += wrap(f"{ppath}.containerPort", names.is_valid_port_num(container_port), container_port)
        host_port = port.get("hostPort")
        if isinstance(host_port, int) and host_port:
            errs += wrap(f"{ppath}.hostPort", names.is_valid_port_num(host_port), host_port)
        errs += enum(f"{ppath}.protocol", port.get("protocol"), PROTOCOLS)
    return errs


def _validate_key_selector(ref: Obj, path: str) -> Errors:
    errs: Errors = []
    if not ref.get("name"):
        errs.append(required(f"{path}.name"))
    key = ref.get("key")
    if not key:
        errs.append(required(f"{path}.key"))
    else:
        errs += wrap(f"{path}.key", names.is_config_map_key(str(key)), key)
    return errs


def _validate_env(env: Any, path: str) -> Errors:
    errs: Errors = []
    for i, var in enumerate(dict_items(env)):
        epath = f"{path}[{i}]"
        name = var.get("name")
        if not name:
            errs.append(required(f"{epath}.name"))
        else:
            errs += wrap(f"{epath}.name", names.is_env_var_name(str(name)), name)
        source = var.get("valueFrom")
        if not isinstance(source, dict):
            continue
        spath = f"{epath}.valueFrom"
        count = 0
        field_ref = source.get("fieldRef")
        if isinstance(field_ref, dict):
            count += 1
            if not field_ref.get("apiVersion"):
                errs.append(required(f"{spath}.fieldRef.apiVersion"))
            fpath = field_ref.get("fieldPath")
            if not fpath:
                errs.append(required(f"{spath}.fieldRef.fieldPath"))
            elif fpath not in _ENV_FIELD_PATHS and not _LABEL_OR_ANNOTATION_REF.match(str(fpath)):
                errs.append(invalid(f"{spath}.fieldRef.fieldPath", fpath, "error converting fieldPath: field label not supported"))
        if isinstance(source.get("resourceFieldRef"), dict):
            count += 1
            if not source["resourceFieldRef"].get("resource"):
                errs.append(required(f"{spath}.resourceFieldRef.resource"))
        for key in ("configMapKeyRef", "secretKeyRef"):
            if isinstance(source.get(key), dict):
                count += 1
                errs += _validate_key_selector(source[key], f"{spath}.{key}")
        if count == 0:
            errs.append(invalid(spath, "", "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"))
        elif var.get("value"):
            errs.append(invalid(spath, "", "may not be specified when `value` is not empty"))
        elif count > 1:
            errs.append(invalid(spath, "", "may not have more than one field specified at a time"))
    return errs


def _validate_mounts(mounts: Any, volumes: set[str], path: str) -> Errors:
    errs: Errors = []
    seen: set[str] = set()
    for i, mount in enumerate(dict_items(mounts)):
        mpath = f"{path}[{i}]"
        name = mount.get("name") or ""
        if not name:
            errs.append(required(f"{mpath}.name"))
        if name not in volumes:
            errs.append(not_found(f"{mpath}.name", name))
        mount_path = mount.get("mountPath") or ""
        if not mount_path:
            errs.append(required(f"{mpath}.mountPath"))
        if mount_path in seen:
            errs.append(invalid(f"{mpath}.mountPath", mount_path, "must be unique"))
        seen.add(mount_path)
        sub_path = mount.get("subPath")
        if sub_path:
            if posixpath.isabs(sub_path):
                errs.append(invalid(f"{path}.subPath", sub_path, "must be a relative path"))
            if ".." in str(sub_path).split("/"):
                errs.append(invalid(f"{path}.subPath", sub_path, "must not contain '..'"))
    return errs


def _validate_handler(handler: Obj, path: str) -> Errors:
    errs: Errors = []
    count = 0
    for kind in ("exec", "httpGet", "tcpSocket", "grpc", "sleep"):
        body = handler.get(kind)
        if body is None:
            continue
        if count:
            errs.append(forbidden(f"{path}.{kind}", "may not specify more than 1 handler type"))
            continue
        count += 1
        body = as_dict(body)
        if kind == "exec" and not as_list(body.get("command")):
            errs.append(required(f"{path}.exec.command"))
        elif kind == "httpGet":
            if not body.get("path"):
                errs.append(required(f"{path}.httpGet.path"))
            errs += validate_port_num_or_name(body.get("port"), f"{path}.httpGet.port")
            errs += enum(f"{path}.httpGet.scheme", body.get("scheme"), ("HTTP", "HTTPS"), optional=True)
        elif kind == "tcpSocket":
            errs += validate_port_num_or_name(body.get("port"), f"{path}.tcpSocket.port")
        elif kind == "grpc":
            port = body.get("port")
            errs += wrap(f"{path}.grpc.port", names.is_valid_port_num(port if isinstance(port, int) else 0), port)
    if count == 0:
        errs.append(required(path, "must specify a handler type"))
    return errs


def _validate_probe(probe: Any, path: str, *, success_must_be_one: bool) -> Errors:
    if not isinstance(probe, dict):
        return []
    errs = _validate_handler(probe, path)
    for key in ("initialDelaySeconds", "timeoutSeconds", "periodSeconds", "successThreshold", "failureThreshold"):
        errs += non_negative(f"{path}.{key}", probe.get(key))
    grace = probe.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and grace <= 0:
        errs.append(invalid(f"{path}.terminationGracePeriodSeconds", grace, "must be greater than 0"))
    success = probe.get("successThreshold")
    if success_must_be_one and isinstance(success, int) and success != 1:
        errs.append(invalid(f"{path}.successThreshold", success, "must be 1"))
    return errs


def _validate_container(c: Obj, path: str, volumes: set[str], *, init: bool) -> Errors:
    errs: Errors = []
    image = c.get("image")
    if not image:
        errs.append(required(f"{path}.image"))
    elif isinstance(image, str) and image.strip() != image:
        errs.append(invalid(f"{path}.image", image, "must not have leading or trailing whitespace"))
    errs += enum(f"{path}.imagePullPolicy", c.get("imagePullPolicy"), PULL_POLICIES)
    errs += enum(f"{path}.terminationMessagePolicy", c.get("terminationMessagePolicy"),
                 ("File", "FallbackToLogsOnError"))
    errs += _validate_ports(c.get("ports"), f"{path}.ports")
    errs += _validate_env(c.get("env"), f"{path}.env")
    errs += _validate_mounts(c.get("volumeMounts"), volumes, f"{path}.volumeMounts")
    errs += validate_resource_requirements(c.get("resources"), f"{path}.resources")
    if init and c.get("restartPolicy") in (None, ""):
        for probe in ("livenessProbe", "readinessProbe", "startupProbe", "lifecycle"):
            if c.get(probe) is not None:
                errs.append(forbidden(f"{path}.{probe}", "may not be set for init containers without restartPolicy=Always"))
    else:
        errs += _validate_probe(c.get("livenessProbe"), f"{path}.livenessProbe", success_must_be_one=True)
        errs += _validate_probe(c.get("readinessProbe"), f"{path}.readinessProbe", success_must_be_one=False)
        errs += _validate_probe(c.get("startupProbe"), f"{path}.startupProbe", success_must_be_one=True)
        lifecycle = as_dict(c.get("lifecycle"))
        for hook in ("postStart", "preStop"):
            if isinstance(lifecycle.get(hook), dict):
                errs += _validate_handler(lifecycle[hook], f"{path}.lifecycle.{hook}")
    return errs


def _validate_containers(spec: Obj, path: str, volumes: set[str]) -> Errors:
    errs: Errors = []
    seen: set[str] = set()
    containers = as_list(spec.get("containers"))
    if not containers:
        errs.append(required(f"{path}.containers"))
    for key in ("initContainers", "containers"):
        for i, c in enumerate(dict_items(spec.get(key))):
            cpath = f"{path}.{key}[{i}]"
            name = c.get("name")
            if not name:
                errs.append(required(f"{cpath}.name"))
            else:
                msgs = names.is_dns1123_label(str(name))
                errs += wrap(f"{cpath}.name", msgs, name)
                if not msgs and name in seen:
                    errs.append(duplicate(f"{cpath}.name", name))
                seen.add(str(name))
            errs += _validate_container(c, cpath, volumes, init=key == "initContainers")
    return errs


# --- volumes -------------------------------------------------------------------------------------


def _validate_volumes(volumes: Any, path: str) -> tuple[set[str], Errors]:
    errs: Errors = []
    seen: set[str] = set()
    for i, vol in enumerate(dict_items(volumes)):
        vpath = f"{path}[{i}]"
        name = vol.get("name")
        if not name:
            errs.append(required(f"{vpath}.name"))
        else:
            msgs = names.is_dns1123_label(str(name))
            errs += wrap(f"{vpath}.name", msgs, name)
            if not msgs and name in seen:
                errs.append(duplicate(f"{vpath}.name", name))
            seen.add(str(name))
        sources = [s for s in VOLUME_SOURCES if vol.get(s) is not None]
        if not sources:
            errs.append(required(vpath, "must specify a volume type"))
        for extra in sources[1:]:
            errs.append(forbidden(f"{vpath}.{extra}", "may not specify more than 1 volume type"))
        if not sources:
            continue
        body = as_dict(vol.get(sources[0]))
        spath = f"{vpath}.{sources[0]}"
        mode = body.get("defaultMode")
        if isinstance(mode, int) and not 0 <= mode <= 0o777:
            errs.append(invalid(f"{spath}.defaultMode", mode, "must be a number between 0 and 0777 (octal), both inclusive"))
        required_key = {"configMap": "name", "secret": "secretName", "hostPath": "path",
                        "persistentVolumeClaim": "claimName", "nfs": "server"}.get(sources[0])
        if required_key and not body.get(required_key):
            errs.append(required(f"{spath}.{required_key}"))
        if sources[0] == "emptyDir" and body.get("sizeLimit") is not None:
            errs += parse_quantity_at(f"{spath}.sizeLimit", body["sizeLimit"])[1]
        if sources[0] == "hostPath":
            errs += enum(f"{spath}.type", body.get("type"), ("", "DirectoryOrCreate", "Directory", "FileOrCreate", "File",
                                                             "Socket", "CharDevice", "BlockDevice"), optional=True)
    return seen, errs


# --- pod spec ------------------------------------------------------------------------------------


def _validate_tolerations(tolerations: Any, path: str) -> Errors:
    errs: Errors = []
    for i, t in enumerate(dict_items(tolerations)):
        tpath = f"{path}[{i}]"
        key = t.get("key")
        if key:
            errs += wrap(f"{tpath}.key", names.is_qualified_name(str(key)), key)
        op = t.get("operator") or "Equal"
        if not key and op != "Exists":
            errs.append(invalid(f"{tpath}.operator", op, "operator must be Exists when `key` is empty, which means \"match all values and all keys\""))
        if op == "Exists" and t.get("value"):
            errs.append(invalid(f"{tpath}.operator", t.get("value"), "value must be empty when `operator` is 'Exists'"))
        elif op not in ("Equal", "Exists"):
            errs.append(not_supported(f"{tpath}.operator", op, ("Equal", "Exists")))
        if t.get("tolerationSeconds") is not None and t.get("effect") != "NoExecute":
            errs.append(invalid(f"{tpath}.effect", t.get("effect"), "effect must be 'NoExecute' when `tolerationSeconds` is set"))
        errs += enum(f"{tpath}.effect", t.get("effect"), TOLERATION_EFFECTS, optional=True)
    return errs


def validate_pod_spec(spec: Any, path: str) -> Errors:
    spec = as_dict(spec)
    volumes, errs = _validate_volumes(spec.get("volumes"), f"{path}.volumes")
    errs += _validate_containers(spec, path, volumes)
    errs += enum(f"{path}.restartPolicy", spec.get("restartPolicy"), RESTART_POLICIES)
    errs += enum(f"{path}.dnsPolicy", spec.get("dnsPolicy"), DNS_POLICIES)
    errs += validate_labels(spec.get("nodeSelector"), f"{path}.nodeSelector")
    for key, rule in (("serviceAccountName", names.is_dns1123_subdomain), ("nodeName", names.is_dns1123_subdomain),
                      ("priorityClassName", names.is_dns1123_subdomain), ("hostname", names.is_dns1123_label),
                      ("subdomain", names.is_dns1123_label)):
        value = spec.get(key)
        if value:
            errs += wrap(f"{path}.{key}", rule(str(value)), value)
    deadline = spec.get("activeDeadlineSeconds")
    if isinstance(deadline, int) and not 1 <= deadline <= MAX_INT32:
        errs.append(invalid(f"{path}.activeDeadlineSeconds", deadline, f"must be between 1 and {MAX_INT32}, inclusive"))
    errs += _validate_tolerations(spec.get("tolerations"), f"{path}.tolerations")
    return errs


def validate_pod_template(template: Any, path: str) -> Errors:
    """ValidatePodTemplateSpec: template labels and annotations, then the spec."""
    if not isinstance(template, dict):
        return [required(path)]
    meta = as_dict(template.get("metadata"))
    errs = validate_labels(meta.get("labels"), f"{path}.metadata.labels")
    errs += validate_annotations(meta.get("annotations"), f"{path}.metadata.annotations")
    errs += validate_pod_spec(template.get("spec"), f"{path}.spec")
    return errs


def validate_pod(pod: Obj) -> Errors:
    return validate_pod_spec(pod.get("spec"), "spec")


def validate_pod_update(new: Obj, old: Obj) -> Errors:
    """Only images, activeDeadlineSeconds, added tolerations and a negative grace period may change."""
    new_spec, old_spec = as_dict(new.get("spec")), as_dict(old.get("spec"))
    errs: Errors = []
    munged = dict(new_spec)
    for key in ("containers", "initContainers"):
        new_cs, old_cs = as_list(new_spec.get(key)), as_list(old_spec.get(key))
        if key in new_spec and len(new_cs) == len(old_cs):
            munged[key] = [
                {**n, "image": o.get("image")} if isinstance(n, dict) and isinstance(o, dict) else n
                for n, o in zip(new_cs, old_cs, strict=True)
            ]
    new_deadline, old_deadline = new_spec.get("activeDeadlineSeconds"), old_spec.get("activeDeadlineSeconds")
    if isinstance(new_deadline, int):
        if isinstance(old_deadline, int) and old_deadline < new_deadline:
            errs.append(invalid("spec.activeDeadlineSeconds", new_deadline, "must be less than or equal to previous value"))
        _set_or_drop(munged, "activeDeadlineSeconds", old_deadline)
    elif old_deadline is not None:
        errs.append(invalid("spec.activeDeadlineSeconds", None, "must not update from a positive integer to nil value"))
        _set_or_drop(munged, "activeDeadlineSeconds", old_deadline)
    old_tolerations = as_list(old_spec.get("tolerations"))
    new_tolerations = as_list(new_spec.get("tolerations"))
    if all(t in new_tolerations for t in old_tolerations):
        _set_or_drop(munged, "tolerations", old_spec.get("tolerations"))
    old_grace = old_spec.get("terminationGracePeriodSeconds")
    if isinstance(old_grace, int) and old_grace < 0 and new_spec.get("terminationGracePeriodSeconds") == 1:
        munged["terminationGracePeriodSeconds"] = old_grace
    if munged != old_spec:
        changed = sorted(k for k in set(munged) | set(old_spec) if munged.get(k) != old_spec.get(k))
        diff = "\n".join(f"  spec.{k}: {old_spec.get(k)!r} -> {new_spec.get(k)!r}" for k in changed)
        errs.append(forbidden("spec", "pod updates may not change fields other than "
                              + ",".join(UPDATABLE_POD_FIELDS) + "\n" + diff))
    return errs


def _set_or_drop(obj: Obj, key: str, value: Any) -> None:
    if value is None:
        obj.pop(key, None)
    else:
        obj[key] = value
