"""Validation of a PodSpec (volumes, policies, tolerations; containers via validation_container) and Pod updates.

Mirrors kube's pkg/apis/core/validation ValidatePodSpec and ValidatePodUpdate, with the same field
paths and messages. Used for bare Pods and, through `validate_pod_template`, for every workload's
template (validation_workloads).
"""

from __future__ import annotations

from typing import Any

from pocketkube.api import names
from pocketkube.api.defaults_pod import VOLUME_SOURCES
from pocketkube.api.validation_common import (
    Errors,
    Obj,
    as_dict,
    as_list,
    dict_items,
    enum,
    forbidden,
    invalid,
    not_supported,
    parse_quantity_at,
    required,
    unique_label_name,
    validate_annotations,
    validate_labels,
    wrap,
)
from pocketkube.api.validation_container import validate_containers

RESTART_POLICIES = ("Always", "OnFailure", "Never")
DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
MAX_INT32 = 2**31 - 1
UPDATABLE_POD_FIELDS = (
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
)


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
            errs += unique_label_name(f"{vpath}.name", name, seen)
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
    errs += validate_containers(spec, path, volumes)
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
