"""runc error text -> typed errors; host facts read from files."""

from __future__ import annotations

import os

from pocketkube.kubelet.runtime.errors import ContainerNotFound, ContainerNotRunning, RuntimeCommandError
from pocketkube.kubelet.runtime.host_facts import (
    cgroup_dirs,
    current_capabilities,
    passwd_resolver,
    remove_cgroup,
)
from pocketkube.kubelet.runtime.runc import classify, runc_message


def test_runc_message_unwraps_logrus_text() -> None:
    logrus = ('time="2026-11-25T18:35:22Z" level=error msg="runc create failed: unable to start container process: '
              'exec: \\"nosuch\\": executable file not found in $PATH"\n')
    assert runc_message(logrus) == ('runc create failed: unable to start container process: '
                                    'exec: "nosuch": executable file not found in $PATH')
    assert runc_message("container does not exist\n") == "container does not exist"


def test_classify() -> None:
    assert isinstance(classify("container does not exist", "c"), ContainerNotFound)
    assert isinstance(classify("container not running", "c"), ContainerNotRunning)
    other = classify('exec: "x": executable file not found in $PATH', "c", 1)
    assert isinstance(other, RuntimeCommandError) and other.returncode == 1 and other.container_id == "c"


def test_current_capabilities(tmp_path: os.PathLike[str]) -> None:
    status = os.path.join(tmp_path, "status")
    with open(status, "w") as f:
        f.write("Name:\tx\nCapEff:\t0000000000000005\n")
    assert current_capabilities(status) == ["CAP_CHOWN", "CAP_DAC_READ_SEARCH"]


def test_passwd_resolver(tmp_path: os.PathLike[str]) -> None:
    os.makedirs(os.path.join(tmp_path, "etc"))
    with open(os.path.join(tmp_path, "etc", "passwd"), "w") as f:
        f.write("root:x:0:0::/root:/bin/sh\nnginx:x:101:102::/:/bin/false\n")
    resolve = passwd_resolver(str(tmp_path))
    assert resolve("nginx") == (101, 102)
    try:
        resolve("nobody")
    except KeyError:
        pass
    else:
        raise AssertionError("expected KeyError")


def test_cgroup_dirs_and_removal(tmp_path: os.PathLike[str]) -> None:
    root = str(tmp_path)
    for hierarchy in ("cpu", "memory", "unified"):
        os.makedirs(os.path.join(root, hierarchy, "pk", "pod1", "c1"))
    os.symlink("cpu", os.path.join(root, "cpu,cpuacct"))
    assert cgroup_dirs("/pk/pod1", root) == [os.path.join(root, h, "pk/pod1") for h in ("cpu", "memory", "unified")]
    assert remove_cgroup("/pk", root) == []
    assert not any(os.path.exists(d) for d in cgroup_dirs("/pk", root))
