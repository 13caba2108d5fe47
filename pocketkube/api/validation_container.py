"""Validation of one container: ports, env, volume mounts, probes and lifecycle handlers, resources.

Part of ValidatePodSpec (validation_pod), split out because containers are most of it. Mirrors
kube's validateContainers and ValidateResourceRequirements with the same paths and messages.
"""

from __future__ import annotations

import posixpath
import re
from typing import Any

from pocketkube.api import names
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
    parse_quantity_at,
    required,
    unique_label_name,
    validate_port_num_or_name,
    wrap,
)

PROTOCOLS = ("SCTP", "TCP", "UDP")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
STANDARD_CONTAINER_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})
_ENV_FIELD_PATHS = (
    "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName", "spec.serviceAccountName",
    "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs",
)
_LABEL_OR_ANNOTATION_REF = re.compile(r"^metadata\.(labels|annotations)\['[^']*'\]$")


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


def validate_containers(spec: Obj, path: str, volumes: set[str]) -> Errors:
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
                errs += unique_label_name(f"{cpath}.name", name, seen)
            errs += _validate_container(c, cpath, volumes, init=key == "initContainers")
    return errs
