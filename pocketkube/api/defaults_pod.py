"""Defaults of a PodSpec and everything inside it (containers, probes, volumes, env).

Mirrors kube's pkg/apis/core/v1 SetDefaults_PodSpec, _Container, _Probe, _Volume... Used for
bare Pods and for every pod template (Deployment, ReplicaSet, DaemonSet, StatefulSet, Job,
CronJob, PodTemplate). Pod-only defaults (enableServiceLinks, requests from limits, priority) are
in `default_pod`, as in kube where they live in SetDefaults_Pod and admission, not in templates.
"""

from __future__ import annotations

from typing import Any

Obj = dict[str, Any]

DEFAULT_TERMINATION_GRACE_PERIOD = 30
DEFAULT_SCHEDULER_NAME = "default-scheduler"
DEFAULT_FILE_MODE = 0o644  # 420, what configMap/secret/projected/downwardAPI volumes get

# Every volume source a Volume may hold; a Volume with none of them is an emptyDir.
VOLUME_SOURCES = (
    "hostPath", "emptyDir", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "secret", "nfs",
    "iscsi", "glusterfs", "persistentVolumeClaim", "rbd", "flexVolume", "cinder", "cephfs", "flocker",
    "downwardAPI", "fc", "azureFile", "configMap", "vsphereVolume", "quobyte", "azureDisk",
    "photonPersistentDisk", "projected", "portworxVolume", "scaleIO", "storageos", "csi", "ephemeral",
    "image",
)


def ensure_dict(parent: Obj, key: str) -> Obj:
    """parent[key] as a dict, created when missing or null."""
    value = parent.get(key)
    if not isinstance(value, dict):
        value = {}
        parent[key] = value
    return value


def dict_items(value: Any) -> list[Obj]:
    """The dict items of a list field (tolerating null and junk: validation reports those)."""
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def dig(obj: Any, *path: str) -> Any:
    """obj[path[0]][path[1]]..., None as soon as a step is missing or not a dict."""
    for key in path:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def image_tag(image: str) -> tuple[str, str]:
    """(tag, digest) of an image reference; tag is "latest" when neither is given (ParseImageName)."""
    ref, _, digest = image.partition("@")
    last_slash = ref.rfind("/")
    colon = ref.rfind(":")
    tag = ref[colon + 1 :] if colon > last_slash else ""
    if not tag and not digest:
        tag = "latest"
    return tag, digest


def default_container(container: Obj) -> None:
    if not container.get("imagePullPolicy"):
        tag, _ = image_tag(str(container.get("image") or ""))
        container["imagePullPolicy"] = "Always" if tag == "latest" else "IfNotPresent"
    if not container.get("terminationMessagePath"):
        container["terminationMessagePath"] = "/dev/termination-log"
    if not container.get("terminationMessagePolicy"):
        container["terminationMessagePolicy"] = "File"
    if not isinstance(container.get("resources"), dict):
        container["resources"] = {}
    for port in dict_items(container.get("ports")):
        if not port.get("protocol"):
            port["protocol"] = "TCP"
    for env in dict_items(container.get("env")):
        source = env.get("valueFrom")
        if isinstance(source, dict):
            _default_env_source(source)
    for name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(name)
        if isinstance(probe, dict):
            default_probe(probe)
    lifecycle = container.get("lifecycle")
    if isinstance(lifecycle, dict):
        for hook in ("postStart", "preStop"):
            handler = lifecycle.get(hook)
            if isinstance(handler, dict):
                _default_handler(handler)


def _default_env_source(source: Obj) -> None:
    field_ref = source.get("fieldRef")
    if isinstance(field_ref, dict) and not field_ref.get("apiVersion"):
        field_ref["apiVersion"] = "v1"
    resource_ref = source.get("resourceFieldRef")
    if isinstance(resource_ref, dict) and resource_ref.get("divisor") in (None, ""):
        resource_ref["divisor"] = "0"


def _default_handler(handler: Obj) -> None:
    http_get = handler.get("httpGet")
    if isinstance(http_get, dict):
        if not http_get.get("path"):
            http_get["path"] = "/"
        if not http_get.get("scheme"):
            http_get["scheme"] = "HTTP"
    grpc = handler.get("grpc")
    if isinstance(grpc, dict) and grpc.get("service") is None:
        grpc["service"] = ""


def default_probe(probe: Obj) -> None:
    for key, value in (("timeoutSeconds", 1), ("periodSeconds", 10), ("successThreshold", 1),
                       ("failureThreshold", 3)):
        if not probe.get(key):
            probe[key] = value
    _default_handler(probe)


def default_volume(volume: Obj) -> None:
    if not any(volume.get(source) is not None for source in VOLUME_SOURCES):
        volume["emptyDir"] = {}
    for source in ("configMap", "secret", "downwardAPI", "projected"):
        body = volume.get(source)
        if isinstance(body, dict) and body.get("defaultMode") is None:
            body["defaultMode"] = DEFAULT_FILE_MODE
    host_path = volume.get("hostPath")
    if isinstance(host_path, dict) and host_path.get("type") is None:
        host_path["type"] = ""
    for item in dict_items(dig(volume, "downwardAPI", "items")):
        _default_env_source(item)
    projected = volume.get("projected")
    if isinstance(projected, dict):
        for projection in dict_items(projected.get("sources")):
            token = projection.get("serviceAccountToken")
            if isinstance(token, dict) and token.get("expirationSeconds") is None:
                token["expirationSeconds"] = 3600
            for item in dict_items(dig(projection, "downwardAPI", "items")):
                _default_env_source(item)
    ephemeral = volume.get("ephemeral")
    if isinstance(ephemeral, dict):
        template = ephemeral.get("volumeClaimTemplate")
        if isinstance(template, dict):
            spec = template.get("spec")
            if isinstance(spec, dict) and not spec.get("volumeMode"):
                spec["volumeMode"] = "Filesystem"


def default_pod_spec(spec: Obj) -> None:
    """SetDefaults_PodSpec and the defaulters of its parts; pod templates get exactly this."""
    if not spec.get("dnsPolicy"):
        spec["dnsPolicy"] = "ClusterFirst"
    if not spec.get("restartPolicy"):
        spec["restartPolicy"] = "Always"
    if not isinstance(spec.get("securityContext"), dict):
        spec["securityContext"] = {}
    if spec.get("terminationGracePeriodSeconds") is None:
        spec["terminationGracePeriodSeconds"] = DEFAULT_TERMINATION_GRACE_PERIOD
    if not spec.get("schedulerName"):
        spec["schedulerName"] = DEFAULT_SCHEDULER_NAME
    for key in ("containers", "initContainers", "ephemeralContainers"):
        for container in dict_items(spec.get(key)):
            default_container(container)
    for volume in dict_items(spec.get("volumes")):
        default_volume(volume)


def default_pod_template(template: Any) -> None:
    """A PodTemplateSpec inside a workload: only the spec is defaulted."""
    if isinstance(template, dict):
        default_pod_spec(ensure_dict(template, "spec"))


def default_pod(pod: Obj) -> None:
    """SetDefaults_Pod plus what the Priority admission plugin fills in for pods without a class."""
    spec = ensure_dict(pod, "spec")
    for key in ("containers", "initContainers"):
        for container in dict_items(spec.get(key)):
            resources = container.get("resources")
            if isinstance(resources, dict) and isinstance(resources.get("limits"), dict):
                requests = ensure_dict(resources, "requests")
                for name, value in resources["limits"].items():
                    requests.setdefault(name, value)
            if spec.get("hostNetwork"):
                for port in dict_items(container.get("ports")):
                    if not port.get("hostPort"):
                        port["hostPort"] = port.get("containerPort")
    if spec.get("enableServiceLinks") is None:
        spec["enableServiceLinks"] = True
    default_pod_spec(spec)
    if spec.get("priority") is None:
        spec["priority"] = 0
    if not spec.get("preemptionPolicy"):
        spec["preemptionPolicy"] = "PreemptLowerPriority"
