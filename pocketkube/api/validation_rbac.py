"""Validation of RBAC objects and CustomResourceDefinitions.

RBAC mirrors kube's pkg/apis/rbac/validation (rules, role refs, subjects); CRDs mirror the checks
of apiextensions-apiserver's validation that a user meets first (name = plural.group, names,
scope, exactly one storage version, a structural root schema). Deep schema checks are not done.
"""

from __future__ import annotations

from pocketkube.api import names
from pocketkube.api.validation_common import (
    Errors,
    GoLiteral,
    Obj,
    as_dict,
    as_list,
    dict_items,
    enum,
    invalid,
    not_supported,
    required,
    validate_label_selector,
    wrap,
)

RBAC_GROUP = "rbac.authorization.k8s.io"


def _validate_rules(obj: Obj, *, namespaced: bool) -> Errors:
    errs: Errors = []
    for i, rule in enumerate(dict_items(obj.get("rules"))):
        path = f"rules[{i}]"
        if not as_list(rule.get("verbs")):
            errs.append(required(f"{path}.verbs", "verbs must contain at least one value"))
        urls = as_list(rule.get("nonResourceURLs"))
        if urls:
            if namespaced:
                errs.append(invalid(f"{path}.nonResourceURLs", GoLiteral(_strings(urls)),
                                    "namespaced rules cannot apply to non-resource URLs"))
            if as_list(rule.get("apiGroups")) or as_list(rule.get("resources")):
                errs.append(invalid(f"{path}.nonResourceURLs", GoLiteral(_strings(urls)),
                                    "rules cannot apply to both regular resources and non-resource URLs"))
            continue
        if not as_list(rule.get("apiGroups")):
            errs.append(required(f"{path}.apiGroups", "resource rules must supply at least one api group"))
        if not as_list(rule.get("resources")):
            errs.append(required(f"{path}.resources", "resource rules must supply at least one resource"))
    return errs


def _strings(values: list[object]) -> str:
    return "[]string{" + ", ".join(f'"{v}"' for v in values) + "}"


def validate_role(obj: Obj, old: Obj | None) -> Errors:
    del old
    return _validate_rules(obj, namespaced=True)


def validate_cluster_role(obj: Obj, old: Obj | None) -> Errors:
    del old
    errs = _validate_rules(obj, namespaced=False)
    aggregation = obj.get("aggregationRule")
    if isinstance(aggregation, dict):
        selectors = dict_items(aggregation.get("clusterRoleSelectors"))
        if not selectors:
            errs.append(required("aggregationRule.clusterRoleSelectors", "at least one clusterRoleSelector required if aggregationRule is non-nil"))
        for i, selector in enumerate(selectors):
            errs += validate_label_selector(selector, f"aggregationRule.clusterRoleSelectors[{i}]")
    return errs


def _validate_binding(obj: Obj, old: Obj | None, *, namespaced: bool) -> Errors:
    errs: Errors = []
    role_ref = as_dict(obj.get("roleRef"))
    if role_ref.get("apiGroup") != RBAC_GROUP:
        errs.append(not_supported("roleRef.apiGroup", role_ref.get("apiGroup", ""), (RBAC_GROUP,)))
    kinds = ("Role", "ClusterRole") if namespaced else ("ClusterRole",)
    if role_ref.get("kind") not in kinds:
        errs.append(not_supported("roleRef.kind", role_ref.get("kind", ""), kinds))
    ref_name = role_ref.get("name")
    if not ref_name:
        errs.append(required("roleRef.name"))
    else:
        errs += wrap("roleRef.name", names.is_valid_path_segment_name(str(ref_name)), ref_name)
    for i, subject in enumerate(dict_items(obj.get("subjects"))):
        path = f"subjects[{i}]"
        name = subject.get("name")
        kind = subject.get("kind")
        api_group = subject.get("apiGroup") or ""
        if not name:
            errs.append(required(f"{path}.name"))
        if kind == "ServiceAccount":
            if name:
                errs += wrap(f"{path}.name", names.is_dns1123_subdomain(str(name)), name)
            if api_group:
                errs.append(not_supported(f"{path}.apiGroup", api_group, ("",)))
            if not namespaced and not subject.get("namespace"):
                errs.append(required(f"{path}.namespace"))
        elif kind in ("User", "Group"):
            if api_group != RBAC_GROUP:
                errs.append(not_supported(f"{path}.apiGroup", api_group, (RBAC_GROUP,)))
        else:
            errs.append(not_supported(f"{path}.kind", kind or "", ("ServiceAccount", "User", "Group")))
    if old is not None and as_dict(old.get("roleRef")) != role_ref:
        ref = (f'rbac.RoleRef{{APIGroup:"{role_ref.get("apiGroup", "")}", Kind:"{role_ref.get("kind", "")}", '
               f'Name:"{role_ref.get("name", "")}"}}')
        errs.append(invalid("roleRef", GoLiteral(ref), "cannot change roleRef"))
    return errs


def validate_role_binding(obj: Obj, old: Obj | None) -> Errors:
    return _validate_binding(obj, old, namespaced=True)


def validate_cluster_role_binding(obj: Obj, old: Obj | None) -> Errors:
    return _validate_binding(obj, old, namespaced=False)


# --- CustomResourceDefinition --------------------------------------------------------------------


def _dns1035(value: object, path: str, *, mixed_case: bool = False) -> Errors:
    text = str(value)
    msgs = names.is_dns1035_label(text.lower() if mixed_case else text)
    if not msgs:
        return []
    joined = ",".join(msgs)
    return [invalid(path, value, "may have mixed case, but should otherwise match: " + joined if mixed_case else joined)]


def validate_crd(obj: Obj, old: Obj | None) -> Errors:
    spec = as_dict(obj.get("spec"))
    crd_names = as_dict(spec.get("names"))
    errs: Errors = []
    name = as_dict(obj.get("metadata")).get("name") or ""
    group = spec.get("group") or ""
    plural = crd_names.get("plural") or ""
    if name and name != f"{plural}.{group}":
        errs.append(invalid("metadata.name", name, 'must be spec.names.plural+"."+spec.group'))
    if not group:
        errs.append(required("spec.group"))
    else:
        errs += wrap("spec.group", names.is_dns1123_subdomain(str(group)), group)
        if len(str(group).split(".")) < 2:
            errs.append(invalid("spec.group", group, "should be a domain with at least one dot"))
    errs += enum("spec.scope", spec.get("scope"), ("Cluster", "Namespaced"))
    for key in ("plural", "singular", "kind", "listKind"):
        value = crd_names.get(key)
        if not value:
            errs.append(required(f"spec.names.{key}"))
        else:
            errs += _dns1035(value, f"spec.names.{key}", mixed_case=key in ("kind", "listKind"))
    if crd_names.get("kind") and crd_names.get("kind") == crd_names.get("listKind"):
        errs.append(invalid("spec.names.listKind", crd_names["listKind"], "kind and listKind may not be the same"))
    for i, short in enumerate(as_list(crd_names.get("shortNames"))):
        errs += _dns1035(short, f"spec.names.shortNames[{i}]")
    for i, category in enumerate(as_list(crd_names.get("categories"))):
        errs += _dns1035(category, f"spec.names.categories[{i}]")
    versions = dict_items(spec.get("versions"))
    versions_value = GoLiteral("[]apiextensions.CustomResourceDefinitionVersion{...}" if versions
                               else "[]apiextensions.CustomResourceDefinitionVersion(nil)")
    seen: set[str] = set()
    storage = 0
    for i, version in enumerate(versions):
        path = f"spec.versions[{i}]"
        vname = str(version.get("name") or "")
        errs += wrap(f"{path}.name", names.is_dns1035_label(vname), vname)
        if vname in seen:
            errs.append(invalid("spec.versions", versions_value, "must contain unique version names"))
        seen.add(vname)
        if version.get("storage") is True:
            storage += 1
        schema = as_dict(version.get("schema")).get("openAPIV3Schema")
        spath = f"{path}.schema.openAPIV3Schema"
        if not isinstance(schema, dict):
            errs.append(required(spath, "schemas are required"))
        elif not schema.get("type"):
            errs.append(required(f"{spath}.type", "must not be empty at the root"))
        elif schema.get("type") != "object":
            errs.append(invalid(f"{spath}.type", schema.get("type"), "must be object at the root"))
    if storage != 1:
        errs.append(invalid("spec.versions", versions_value, "must have exactly one version marked as storage version"))
    if versions and not any(v.get("served") is True for v in versions):
        errs.append(invalid("spec.versions", versions_value, "must have at least one version marked as served"))
    errs += enum("spec.conversion.strategy", as_dict(spec.get("conversion")).get("strategy"), ("None", "Webhook"),
                 optional=True)
    if old is not None:
        old_spec = as_dict(old.get("spec"))
        if old_spec.get("group") and group != old_spec.get("group"):
            errs.append(invalid("spec.group", group, "field is immutable"))
    return errs
