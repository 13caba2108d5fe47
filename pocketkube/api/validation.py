"""`validate`: every problem with an object, as kube-apiserver reports them in a 422.

Runs after api/defaults.apply_defaults and before storage. Returns all errors (kube lists them
all in one Status), each a FieldError with kube's field path and message; the caller raises
`errors.Invalid(group, kind, name, errs)` when the list is not empty. Metadata is checked for every
kind, the spec for the kinds in `_VALIDATORS`; unknown kinds (custom resources) get metadata only.
"""

from __future__ import annotations

from collections.abc import Callable

from pocketkube.api import names
from pocketkube.api.errors import FieldError
from pocketkube.api.resources import BUILTIN_RESOURCES
from pocketkube.api.validation_common import (
    Errors,
    Obj,
    as_dict,
    validate_object_meta,
    validate_object_meta_update,
)
from pocketkube.api.validation_core import (
    validate_config_map,
    validate_lease,
    validate_limit_range,
    validate_namespace,
    validate_node,
    validate_priority_class,
    validate_pv,
    validate_pvc,
    validate_resource_quota,
    validate_secret,
)
from pocketkube.api.validation_network import validate_ingress, validate_network_policy, validate_service
from pocketkube.api.validation_pod import validate_pod, validate_pod_template, validate_pod_update
from pocketkube.api.validation_rbac import (
    validate_cluster_role,
    validate_cluster_role_binding,
    validate_crd,
    validate_role,
    validate_role_binding,
)
from pocketkube.api.validation_workloads import (
    validate_cron_job,
    validate_daemon_set,
    validate_deployment,
    validate_job,
    validate_pod_disruption_budget,
    validate_replica_set,
    validate_stateful_set,
)

Validator = Callable[[Obj, Obj | None], Errors]

_NAMESPACED: dict[tuple[str, str], bool] = {(r.group, r.kind): r.namespaced for r in BUILTIN_RESOURCES}


def _pod(obj: Obj, old: Obj | None) -> Errors:
    errs = validate_pod(obj)
    if old is not None:
        errs += validate_pod_update(obj, old)
    return errs


def _pod_template(obj: Obj, old: Obj | None) -> Errors:
    del old
    return validate_pod_template(obj.get("template"), "template")


RBAC = "rbac.authorization.k8s.io"

_VALIDATORS: dict[tuple[str, str], Validator] = {
    ("", "Pod"): _pod,
    ("", "PodTemplate"): _pod_template,
    ("", "Service"): validate_service,
    ("", "ConfigMap"): validate_config_map,
    ("", "Secret"): validate_secret,
    ("", "Namespace"): validate_namespace,
    ("", "Node"): validate_node,
    ("", "ResourceQuota"): validate_resource_quota,
    ("", "LimitRange"): validate_limit_range,
    ("", "PersistentVolumeClaim"): validate_pvc,
    ("", "PersistentVolume"): validate_pv,
    ("apps", "Deployment"): validate_deployment,
    ("apps", "ReplicaSet"): validate_replica_set,
    ("apps", "DaemonSet"): validate_daemon_set,
    ("apps", "StatefulSet"): validate_stateful_set,
    ("batch", "Job"): validate_job,
    ("batch", "CronJob"): validate_cron_job,
    ("coordination.k8s.io", "Lease"): validate_lease,
    ("policy", "PodDisruptionBudget"): validate_pod_disruption_budget,
    ("networking.k8s.io", "Ingress"): validate_ingress,
    ("networking.k8s.io", "NetworkPolicy"): validate_network_policy,
    ("scheduling.k8s.io", "PriorityClass"): validate_priority_class,
    (RBAC, "Role"): validate_role,
    (RBAC, "ClusterRole"): validate_cluster_role,
    (RBAC, "RoleBinding"): validate_role_binding,
    (RBAC, "ClusterRoleBinding"): validate_cluster_role_binding,
    ("apiextensions.k8s.io", "CustomResourceDefinition"): validate_crd,
}


def validate(
    group: str,
    version: str,
    kind: str,
    obj: Obj,
    old: Obj | None = None,
    *,
    namespaced: bool | None = None,
) -> list[FieldError]:
    """All problems with `obj` (a create when `old` is None, else an update of `old`).

    `namespaced` says whether the kind is namespaced; when None it is looked up among the built-in
    resources, and left unchecked for other kinds (pass it for custom resources).
    """
    del version  # every built-in served is v1
    if namespaced is None:
        namespaced = _NAMESPACED.get((group, kind))
    errs = validate_object_meta(obj.get("metadata"), namespaced=namespaced, name_rule=names.name_validator(group, kind))
    if old is not None:
        errs += validate_object_meta_update(obj.get("metadata"), as_dict(old).get("metadata"))
    validator = _VALIDATORS.get((group, kind))
    if validator is not None:
        errs += validator(obj, old)
    return errs
