"""The volume kinds on a real node: contents and modes as the container sees them.

configMap (items, per-item mode), secret (defaultMode), emptyDir on tmpfs (medium Memory),
hostPath (DirectoryOrCreate) and downwardAPI (labels, limits) are mounted into one container,
which reports what it sees through its termination message.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from typing import Any

from tests.e2e.cluster import NodeCluster


def test_volume_kinds(cluster: NodeCluster) -> None:
    host_dir = f"/tmp/pktest-hostpath-{uuid.uuid4().hex[:8]}"
    ns_objects = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "vol-cfg"},
         "data": {"app.conf": "mode=prod\n", "other": "x"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "vol-sec"}, "stringData": {"password": "s3cret"}},
    ]
    script = ("cat /cfg/conf/app.conf; stat -c %a /cfg/conf/app.conf; ls /cfg | tr '\\n' ' '; echo; "
              "cat /sec/password; echo; stat -L -c %a /sec/password; "
              "grep -c ' /scratch tmpfs' /proc/mounts; echo written > /host/out; "
              "cat /info/labels; echo; cat /info/mem")
    pod: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vols", "labels": {"app": "vols"}},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sh", "-c", "{ " + script + "; } > /dev/termination-log"],
                                 "resources": {"limits": {"memory": "64Mi"}},
                                 "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"},
                                                  {"name": "sec", "mountPath": "/sec"},
                                                  {"name": "scratch", "mountPath": "/scratch"},
                                                  {"name": "host", "mountPath": "/host"},
                                                  {"name": "info", "mountPath": "/info"}]}],
                 "volumes": [
                     {"name": "cfg", "configMap": {"name": "vol-cfg",
                                                   "items": [{"key": "app.conf", "path": "conf/app.conf", "mode": 0o640}]}},
                     {"name": "sec", "secret": {"secretName": "vol-sec", "defaultMode": 0o400}},
                     {"name": "scratch", "emptyDir": {"medium": "Memory"}},
                     {"name": "host", "hostPath": {"path": host_dir, "type": "DirectoryOrCreate"}},
                     {"name": "info", "downwardAPI": {"items": [
                         {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                         {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory",
                                                              "divisor": "1Mi"}}]}},
                 ]},
    }
    try:
        for obj in [*ns_objects, pod]:
            cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
        done = cluster.wait_pod("vols", lambda p: any("terminated" in (c.get("state") or {})
                                                      for c in p["status"].get("containerStatuses") or []))
        term = done["status"]["containerStatuses"][0]["state"]["terminated"]
        assert term["exitCode"] == 0, term
        assert term["message"].splitlines() == [
            "mode=prod", "640", "conf ",  # only the selected item, at its path, with its mode
            "s3cret", "400",
            "1",  # the emptyDir is a tmpfs
            'app="vols"', "64",
        ]
        with open(os.path.join(host_dir, "out")) as f:
            assert f.read() == "written\n"
        cluster.kubectl("delete", "pod", "vols", "--timeout=90s", timeout=120)
    finally:
        shutil.rmtree(host_dir, ignore_errors=True)
        cluster.kubectl("delete", "configmap", "vol-cfg", "--ignore-not-found", check=False)
        cluster.kubectl("delete", "secret", "vol-sec", "--ignore-not-found", check=False)
