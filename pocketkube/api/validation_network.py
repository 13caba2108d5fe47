"""Validation of Services, Ingresses and NetworkPolicies (kube's core and networking validation).

Allocation (cluster IPs, node ports) is the Service registry's job; this module only checks what
the client sent, plus the update rule that a cluster IP never changes once set.
"""

from __future__ import annotations

import ipaddress
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
    go_repr,
    invalid,
    required,
    unique_label_name,
    validate_label_selector,
    validate_labels,
    validate_port_num_or_name,
    wrap,
)

SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")
PROTOCOLS = ("SCTP", "TCP", "UDP")
NODE_PORT_RANGE = (30000, 32767)
INVALID_IP = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"


def is_ip(text: Any) -> bool:
    try:
        ipaddress.ip_address(str(text))
    except ValueError:
        return False
    return True


def _cluster_ips(spec: Obj) -> list[Any]:
    ips = as_list(spec.get("clusterIPs"))
    if not ips and spec.get("clusterIP"):
        ips = [spec["clusterIP"]]
    return ips


def _validate_service_ports(spec: Obj, stype: Any) -> Errors:
    errs: Errors = []
    ports = dict_items(spec.get("ports"))
    names_seen: set[str] = set()
    node_ports: set[tuple[Any, Any]] = set()
    port_protocols: set[tuple[Any, Any]] = set()
    for i, port in enumerate(ports):
        path = f"spec.ports[{i}]"
        name = port.get("name") or ""
        if len(ports) > 1 and not name:
            errs.append(required(f"{path}.name"))
        elif name:
            errs += unique_label_name(f"{path}.name", name, names_seen)
        number = port.get("port")
        errs += wrap(f"{path}.port", names.is_valid_port_num(number if isinstance(number, int) else 0), number or 0)
        errs += enum(f"{path}.protocol", port.get("protocol"), PROTOCOLS)
        if port.get("targetPort") is not None:
            errs += validate_port_num_or_name(port.get("targetPort"), f"{path}.targetPort")
        key = (number, port.get("protocol"))
        if key in port_protocols:
            errs.append(duplicate(path, GoLiteral(f'core.ServicePort{{Port:{number}, Protocol:"{key[1]}"}}')))
        port_protocols.add(key)
        node_port = port.get("nodePort")
        if node_port:
            if stype == "ClusterIP":
                errs.append(forbidden(f"{path}.nodePort", "may not be used when `type` is 'ClusterIP'"))
            elif isinstance(node_port, int) and not NODE_PORT_RANGE[0] <= node_port <= NODE_PORT_RANGE[1]:
                errs.append(invalid(f"{path}.nodePort", node_port, "provided port is not in the valid range. "
                                    f"The range of valid ports is {NODE_PORT_RANGE[0]}-{NODE_PORT_RANGE[1]}"))
            node_key = (node_port, port.get("protocol"))
            if node_key in node_ports:
                errs.append(duplicate(f"{path}.nodePort", node_port))
            node_ports.add(node_key)
    return errs


def validate_service(obj: Obj, old: Obj | None) -> Errors:
    spec = as_dict(obj.get("spec"))
    errs: Errors = []
    stype = spec.get("type")
    errs += enum("spec.type", stype, SERVICE_TYPES)
    ips = _cluster_ips(spec)
    headless = ips == ["None"]
    if stype == "ExternalName":
        external = spec.get("externalName")
        if not external:
            errs.append(required("spec.externalName"))
        else:
            errs += wrap("spec.externalName", names.is_dns1123_subdomain(str(external).removesuffix(".")), external)
        if ips:
            errs.append(forbidden("spec.clusterIPs", "may not be set for ExternalName services"))
    elif not as_list(spec.get("ports")) and not headless:
        errs.append(required("spec.ports"))
    if stype != "ExternalName":
        for i, ip in enumerate(ips):
            if ip == "None":
                if len(ips) > 1 or i:
                    errs.append(invalid(f"spec.clusterIPs[{i}]", ip, "'None' must be the first and only value"))
            elif not is_ip(ip):
                errs.append(invalid(f"spec.clusterIPs[{i}]", ip, INVALID_IP))
        if spec.get("clusterIP") and as_list(spec.get("clusterIPs")) and spec["clusterIP"] != spec["clusterIPs"][0]:
            errs.append(invalid("spec.clusterIPs", GoLiteral(go_repr(spec["clusterIPs"])),
                                "must match first value in clusterIPs"))
    errs += _validate_service_ports(spec, stype)
    errs += validate_labels(spec.get("selector"), "spec.selector")
    errs += enum("spec.sessionAffinity", spec.get("sessionAffinity"), ("ClientIP", "None"))
    if spec.get("sessionAffinity") == "ClientIP":
        timeout = as_dict(as_dict(spec.get("sessionAffinityConfig")).get("clientIP")).get("timeoutSeconds")
        if isinstance(timeout, int) and not 0 < timeout <= 86400:
            errs.append(invalid("spec.sessionAffinityConfig.clientIP.timeoutSeconds", timeout,
                                "must be greater than 0 and less than 86400"))
    etp = spec.get("externalTrafficPolicy")
    if etp and stype not in ("NodePort", "LoadBalancer"):
        errs.append(invalid("spec.externalTrafficPolicy", etp,
                            "may only be set when `type` is 'NodePort' or 'LoadBalancer'"))
    elif etp:
        errs += enum("spec.externalTrafficPolicy", etp, ("Cluster", "Local"))
    if stype != "ExternalName":
        errs += enum("spec.internalTrafficPolicy", spec.get("internalTrafficPolicy"), ("Cluster", "Local"),
                     optional=True)
    errs += enum("spec.ipFamilyPolicy", spec.get("ipFamilyPolicy"),
                 ("SingleStack", "PreferDualStack", "RequireDualStack"), optional=True)
    for i, family in enumerate(as_list(spec.get("ipFamilies"))):
        errs += enum(f"spec.ipFamilies[{i}]", family, ("IPv4", "IPv6"))
    for i, ip in enumerate(as_list(spec.get("externalIPs"))):
        if not is_ip(ip):
            errs.append(invalid(f"spec.externalIPs[{i}]", ip, INVALID_IP))
    if old is not None:
        old_spec = as_dict(old.get("spec"))
        old_ips = _cluster_ips(old_spec)
        switching = "ExternalName" in (stype, old_spec.get("type"))
        if old_ips and not switching:
            if not ips:
                errs.append(invalid("spec.clusterIPs[0]", GoLiteral(go_repr(ips) if ips else "[]string(nil)"),
                                    "primary clusterIP can not be unset"))
            elif ips[0] != old_ips[0]:
                errs.append(invalid("spec.clusterIPs[0]", GoLiteral(go_repr(ips)), "may not change once set"))
    return errs


def validate_load_balancer_status(status: Any, path: str = "status.loadBalancer") -> Errors:
    """ValidateLoadBalancerStatus: ingress IPs are IPs, hostnames are DNS names, ipMode needs an IP."""
    errs: Errors = []
    for i, ing in enumerate(dict_items(as_dict(status).get("ingress"))):
        ipath = f"{path}.ingress[{i}]"
        ip, host, mode = ing.get("ip"), ing.get("hostname"), ing.get("ipMode")
        if ip and not is_ip(ip):
            errs.append(invalid(f"{ipath}.ip", ip, "must be a valid IP address"))
        if host:
            errs += wrap(f"{ipath}.hostname", names.is_dns1123_subdomain(str(host)), host)
            if is_ip(host):
                errs.append(invalid(f"{ipath}.hostname", host, "must be a DNS name, not an IP address"))
        if mode is not None:
            if not ip:
                errs.append(forbidden(f"{ipath}.ipMode", "may not be set when `ip` is empty"))
            else:
                errs += enum(f"{ipath}.ipMode", mode, ("Proxy", "VIP"))
    return errs


# --- Ingress -------------------------------------------------------------------------------------


def _validate_host(host: Any, path: str) -> Errors:
    if is_ip(host):
        return [invalid(path, host, "must be a DNS name, not an IP address")]
    text = str(host)
    if "*" in text:
        return wrap(path, names.is_wildcard_dns1123_subdomain(text), host)
    return wrap(path, names.is_dns1123_subdomain(text), host)


def _validate_backend(backend: Obj, path: str) -> Errors:
    service, resource = backend.get("service"), backend.get("resource")
    if service is not None and resource is not None:
        return [invalid(path, "", "cannot set both resource and service backends")]
    if resource is not None:
        resource = as_dict(resource)
        errs: Errors = []
        if not resource.get("kind"):
            errs.append(required(f"{path}.resource.kind"))
        if not resource.get("name"):
            errs.append(required(f"{path}.resource.name"))
        return errs
    if service is None:
        return [invalid(path, "", "resource or service backend is required")]
    service = as_dict(service)
    errs = []
    name = service.get("name")
    if not name:
        errs.append(required(f"{path}.service.name"))
    else:
        errs += wrap(f"{path}.service.name", names.is_dns1035_label(str(name)), name)
    port = as_dict(service.get("port"))
    port_name, number = port.get("name"), port.get("number")
    ppath = f"{path}.service.port"
    if port_name and number:
        errs.append(invalid(ppath, "", "cannot set both port name & port number"))
    elif port_name:
        errs += wrap(f"{ppath}.name", names.is_valid_port_name(str(port_name)), port_name)
    elif number:
        errs += wrap(f"{ppath}.number", names.is_valid_port_num(int(number)), number)
    else:
        errs.append(required(ppath, "port name or number is required"))
    return errs


def _validate_path(path_obj: Obj, path: str) -> Errors:
    errs: Errors = []
    path_type = path_obj.get("pathType")
    value = path_obj.get("path") or ""
    if not path_type:
        errs.append(required(f"{path}.pathType", "pathType must be specified"))
    else:
        errs += enum(f"{path}.pathType", path_type, ("Exact", "ImplementationSpecific", "Prefix"))
    if path_type in ("Exact", "Prefix"):
        if not str(value).startswith("/"):
            errs.append(invalid(f"{path}.path", value, "must be an absolute path"))
        for bad in ("//", "/./", "/../", "%2f", "%2F"):
            if bad in value:
                errs.append(invalid(f"{path}.path", value, f"must not contain '{bad}'"))
        for bad in ("/..", "/."):
            if str(value).endswith(bad):
                errs.append(invalid(f"{path}.path", value, f"cannot end with '{bad}'"))
    elif value and not str(value).startswith("/"):
        errs.append(invalid(f"{path}.path", value, "must be an absolute path"))
    errs += _validate_backend(as_dict(path_obj.get("backend")), f"{path}.backend")
    return errs


def validate_ingress(obj: Obj, old: Obj | None) -> Errors:
    del old
    spec = as_dict(obj.get("spec"))
    errs: Errors = []
    rules = dict_items(spec.get("rules"))
    default_backend = spec.get("defaultBackend")
    if not rules and default_backend is None:
        errs.append(invalid("spec", GoLiteral("[]networking.IngressRule(nil)"),
                            "either `defaultBackend` or `rules` must be specified"))
    if isinstance(default_backend, dict):
        errs += _validate_backend(default_backend, "spec.defaultBackend")
    for i, rule in enumerate(rules):
        rpath = f"spec.rules[{i}]"
        if rule.get("host"):
            errs += _validate_host(rule["host"], f"{rpath}.host")
        http = rule.get("http")
        if http is None:
            continue
        paths = dict_items(as_dict(http).get("paths"))
        if not paths:
            errs.append(required(f"{rpath}.http.paths"))
        for j, path_obj in enumerate(paths):
            errs += _validate_path(path_obj, f"{rpath}.http.paths[{j}]")
    for i, tls in enumerate(dict_items(spec.get("tls"))):
        for j, host in enumerate(as_list(tls.get("hosts"))):
            errs += _validate_host(host, f"spec.tls[{i}].hosts[{j}]")
    class_name = spec.get("ingressClassName")
    if class_name:
        errs += wrap("spec.ingressClassName", names.is_dns1123_subdomain(str(class_name)), class_name)
    return errs


def validate_network_policy(obj: Obj, old: Obj | None) -> Errors:
    del old
    spec = as_dict(obj.get("spec"))
    errs = validate_label_selector(spec.get("podSelector"), "spec.podSelector")
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(dict_items(spec.get(direction))):
            rpath = f"spec.{direction}[{i}]"
            for j, port in enumerate(dict_items(rule.get("ports"))):
                errs += enum(f"{rpath}.ports[{j}].protocol", port.get("protocol"), PROTOCOLS, optional=True)
                if port.get("port") is not None:
                    errs += validate_port_num_or_name(port["port"], f"{rpath}.ports[{j}].port")
            for j, peer in enumerate(dict_items(rule.get(peers))):
                ppath = f"{rpath}.{peers}[{j}]"
                if peer.get("ipBlock") is not None and (peer.get("podSelector") is not None
                                                        or peer.get("namespaceSelector") is not None):
                    errs.append(forbidden(ppath, "may not specify more than 1 peer type"))
                for key in ("podSelector", "namespaceSelector"):
                    if peer.get(key) is not None:
                        errs += validate_label_selector(peer[key], f"{ppath}.{key}")
                cidr = as_dict(peer.get("ipBlock")).get("cidr")
                if peer.get("ipBlock") is not None:
                    try:
                        ipaddress.ip_network(str(cidr), strict=False)
                    except ValueError:
                        errs.append(invalid(f"{ppath}.ipBlock.cidr", cidr or "",
                                            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"))
    for i, policy in enumerate(as_list(spec.get("policyTypes"))):
        errs += enum(f"spec.policyTypes[{i}]", policy, ("Egress", "Ingress"))
    return errs
