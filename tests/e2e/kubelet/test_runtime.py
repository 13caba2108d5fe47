"""ContainerRuntime against real runc + conmon (root): exit codes, logs, stop, OOM, exec, re-adoption."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from typing import TYPE_CHECKING

import pytest

from pocketkube.kubelet.runtime import (
    ContainerCreateError,
    ContainerNotFound,
    ContainerNotRunning,
    ExecStartError,
    SandboxRef,
    build_container_spec,
)
from pocketkube.kubelet.runtime.host_facts import current_capabilities
from pocketkube.kubelet.runtime.logs import LogOptions, follow_log, read_log

if TYPE_CHECKING:
    from tests.e2e.kubelet.conftest import RuntimeEnv

pytestmark = pytest.mark.e2e

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def read_text(path: str) -> str:
    with open(path) as f:
        return f.read()


def write_text(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


async def run_container(rt: RuntimeEnv, name: str, command: list[str], **bundle_kw: object) -> str:
    cid = rt.new_id(name)
    bundle = rt.bundle(cid, {"name": name, "command": command}, **bundle_kw)  # type: ignore[arg-type]
    await rt.runtime.create(cid, bundle, rt.log_path(cid))
    await rt.runtime.start(cid)
    return cid


async def test_exit_code_and_logs(rt: RuntimeEnv) -> None:
    cid = rt.new_id("echo")
    bundle = rt.bundle(cid, {"name": "echo", "command": ["sh", "-c", "echo out; echo err >&2; printf tail; exit 3"]})
    t0 = time.monotonic()
    pid = await rt.runtime.create(cid, bundle, rt.log_path(cid))
    created_comm = read_text(f"/proc/{pid}/comm")
    await rt.runtime.start(cid)
    elapsed = time.monotonic() - t0
    print(f"create+start: {elapsed * 1000:.1f} ms")
    assert created_comm == "runc:[2:INIT]\n"
    assert pid > 0
    status = await rt.runtime.wait(cid, timeout=10)
    assert status is not None and status.exit_code == 3 and not status.oom_killed
    assert rt.runtime.exit_code(cid) == 3
    assert read_log(rt.log_path(cid)) == b"out\nerr\ntail"
    assert read_log(rt.log_path(cid), LogOptions(streams=("stderr",))) == b"err\n"
    assert read_log(rt.log_path(cid), LogOptions(tail=1)) == b"tail"
    stamped = read_log(rt.log_path(cid), LogOptions(timestamps=True)).split(b"\n")[0]
    assert stamped.endswith(b"Z out") and stamped[:2] == b"20"
    assert rt.runtime.started_at(cid) is not None
    await rt.runtime.delete(cid)
    assert rt.runtime.exit_status(cid) is None
    assert os.listdir(rt.runtime.socket_dir) == [] and os.listdir(rt.runtime.root_dir) == ["sockets"]
    with pytest.raises(ContainerNotFound):
        await rt.runtime.state(cid)


async def test_stop_with_grace_kills_after_grace(rt: RuntimeEnv) -> None:
    # a shell as PID 1 has no TERM handler, so the kernel drops SIGTERM: only KILL ends it
    cid = await run_container(rt, "sleeper", ["sh", "-c", "while true; do sleep 1; done"])
    state = await rt.runtime.state(cid)
    assert state.status == "running" and state.pid > 0
    assert state.annotations["io.kubernetes.container.name"] == "sleeper"
    t0 = time.monotonic()
    status = await rt.runtime.stop(cid, grace_seconds=0.5)
    elapsed = time.monotonic() - t0
    assert status is not None and status.exit_code == 137, read_log(rt.log_path(cid))
    assert 0.5 <= elapsed < 5
    assert (await rt.runtime.state(cid)).status == "stopped"


async def test_stop_honours_term(rt: RuntimeEnv) -> None:
    cid = await run_container(rt, "trap", ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"])
    await asyncio.sleep(0.2)
    t0 = time.monotonic()
    status = await rt.runtime.stop(cid, grace_seconds=10)
    assert status is not None and status.exit_code == 0
    assert time.monotonic() - t0 < 5


async def test_memory_limit_oom(rt: RuntimeEnv) -> None:
    cid = rt.new_id("oom")
    bundle = rt.bundle(cid, {"name": "oom", "command": ["sh", "-c", "a=xxxxxxxx; while true; do a=$a$a; done"],
                             "resources": {"limits": {"memory": "8Mi"}}})
    await rt.runtime.create(cid, bundle, rt.log_path(cid))
    await rt.runtime.start(cid)
    status = await rt.runtime.wait(cid, timeout=30)
    assert status is not None and status.exit_code == 137 and status.oom_killed
    assert "oom" not in os.listdir(REPO)  # conmon's legacy oom file goes to its cwd, not ours


async def test_exec_exit_code_stdio_and_errors(rt: RuntimeEnv) -> None:
    cid = await run_container(rt, "exec", ["sleep", "1000"])
    proc = await rt.runtime.exec(cid, ["sh", "-c", "echo hi; echo oops >&2; exit 5"])
    assert proc.stderr is not None
    out, err = await asyncio.gather(proc.stdout.read(), proc.stderr.read())
    assert (out, err) == (b"hi\n", b"oops\n")
    assert await proc.wait() == 5

    proc = await rt.runtime.exec(cid, ["cat"])
    assert proc.stdin is not None
    proc.stdin.write(b"round trip\n")
    await proc.stdin.drain()
    proc.stdin.close()
    assert await proc.stdout.read() == b"round trip\n"
    assert await proc.wait() == 0

    proc = await rt.runtime.exec(cid, ["id", "-u"], user="1000:1000", env={"X": "1"})
    assert await proc.stdout.read() == b"1000\n"
    assert await proc.wait() == 0

    proc = await rt.runtime.exec(cid, ["sh", "-c", "echo late"])
    assert await proc.wait() == 0
    assert await proc.stdout.read() == b"late\n"  # output stays readable after wait()

    t0 = time.monotonic()
    async with await rt.runtime.exec(cid, ["sleep", "100"]) as proc:
        pass
    assert proc.returncode == 137 and time.monotonic() - t0 < 5
    proc = await rt.runtime.exec(cid, ["ps", "-o", "pid,stat,args"])
    assert b"sleep 100\n" not in await proc.stdout.read()
    await proc.aclose()

    with pytest.raises(ExecStartError) as info:
        await rt.runtime.exec(cid, ["nosuch"])
    assert 'exec: "nosuch": executable file not found in $PATH' in str(info.value)

    await rt.runtime.stop(cid, 0.1)
    with pytest.raises(ContainerNotRunning):
        await rt.runtime.exec(cid, ["true"])


async def test_exec_tty(rt: RuntimeEnv) -> None:
    cid = await run_container(rt, "tty", ["sleep", "1000"])
    proc = await rt.runtime.exec(cid, ["sh", "-c", "tty; exit 7"], tty=True)
    assert proc.stderr is None
    proc.resize(100, 30)
    out = await asyncio.wait_for(proc.stdout.read(), 10)
    assert out.startswith(b"/dev/pts/") and out.endswith(b"\r\n") and b"\r\r" not in out
    assert await proc.wait() == 7

    proc = await rt.runtime.exec(cid, ["sh"], tty=True)  # interactive: input echoed, prompt shown
    assert proc.stdin is not None
    proc.resize(80, 24)
    # Type at the prompt, as a person does: runc resizes the container's pty only once the process
    # already runs, so a command typed ahead could read the size before the resize lands.
    banner = await asyncio.wait_for(proc.stdout.readuntil(b"# "), 10)
    proc.stdin.write(b"stty size; echo marker-$((6*7)); exit 3\n")
    await proc.stdin.drain()
    out = banner + await asyncio.wait_for(proc.stdout.read(), 10)
    assert b"24 80\r\n" in out and b"marker-42\r\n" in out
    assert await proc.wait() == 3


async def test_missing_command_is_a_clear_create_error(rt: RuntimeEnv) -> None:
    cid = rt.new_id("missing")
    bundle = rt.bundle(cid, {"name": "missing", "command": ["nosuch", "arg"]})
    with pytest.raises(ContainerCreateError) as info:
        await rt.runtime.create(cid, bundle, rt.log_path(cid))
    assert 'exec: "nosuch": executable file not found in $PATH' in str(info.value)
    assert info.value.reason == "RunContainerError" and info.value.terminated_reason == "StartError"
    assert [c.id for c in await rt.runtime.list()] == []


LAUNCHER = textwrap.dedent("""
    import asyncio, sys
    from pocketkube.kubelet.runtime import ContainerRuntime

    async def main():
        root, runc_root, exits, cid, bundle, log = sys.argv[1:]
        rt = ContainerRuntime(root, runc_root, exits)
        await rt.create(cid, bundle, log)
        await rt.start(cid)
        print("started", flush=True)
        await asyncio.sleep(1000)

    asyncio.run(main())
""")


def spawn_launcher(args: list[str]) -> subprocess.Popen[bytes]:
    """A separate Python process that creates and starts the container, standing in for the agent."""
    return subprocess.Popen([sys.executable, "-c", LAUNCHER, *args], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, cwd=REPO, env={**os.environ, "PYTHONPATH": REPO})


async def test_container_outlives_the_agent_and_is_readopted(rt: RuntimeEnv) -> None:
    cid = rt.new_id("survivor")
    bundle = rt.bundle(cid, {"name": "survivor", "command": ["sh", "-c", "while true; do echo tick; sleep 0.1; done"]})
    runtime = rt.runtime
    launcher = spawn_launcher(
        [runtime.root_dir, runtime.runc.root, runtime.exits_dir, cid, bundle, rt.log_path(cid)])
    try:
        assert launcher.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(launcher.stdout.readline), 20)
        assert line == b"started\n"
    finally:
        launcher.send_signal(signal.SIGKILL)
        launcher.wait()
        if launcher.stdout is not None:
            launcher.stdout.close()
    await asyncio.sleep(0.5)
    adopted = {c.id: c for c in await runtime.list()}
    assert adopted[cid].status == "running"
    assert adopted[cid].annotations["io.kubernetes.pod.uid"] == "u-1"
    before = read_log(rt.log_path(cid)).count(b"tick")
    await asyncio.sleep(0.5)
    assert read_log(rt.log_path(cid)).count(b"tick") > before  # conmon still logging
    status = await runtime.stop(cid, grace_seconds=0.2)
    assert status is not None and status.exit_code == 137


async def test_follow_log_until_exit(rt: RuntimeEnv) -> None:
    cid = await run_container(rt, "follow", ["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.1; done"])
    chunks = [c async for c in follow_log(rt.log_path(cid), finished=lambda: rt.runtime.exit_code(cid) is not None,
                                          poll_interval=0.05)]
    assert b"".join(chunks) == b"line1\nline2\nline3\n"


async def test_shared_pid_ipc_uts_namespaces(rt: RuntimeEnv) -> None:
    pause = await run_container(rt, "pause", ["sleep", "1000"])
    pause_pid = (await rt.runtime.state(pause)).pid
    sandbox = SandboxRef(netns_path=f"/proc/{pause_pid}/ns/net", pause_pid=pause_pid)
    cid = rt.new_id("app")
    bundle = rt.bundle(cid, {"name": "app", "command": ["sh", "-c", "cat /proc/1/cmdline; echo; hostname"]},
                       pod_spec={"shareProcessNamespace": True}, sandbox=sandbox)
    await rt.runtime.create(cid, bundle, rt.log_path(cid))
    await rt.runtime.start(cid)
    status = await rt.runtime.wait(cid, timeout=10)
    assert status is not None and status.exit_code == 0
    out = read_log(rt.log_path(cid)).split(b"\n")
    assert out[0].replace(b"\0", b" ").strip() == b"sleep 1000"
    assert out[1] == b"p"
    assert (await rt.runtime.stop(pause, 0.2)) is not None


async def test_restricted_and_privileged_specs_run_under_runc(rt: RuntimeEnv) -> None:
    """The builder's security output is accepted by runc and has the intended effect."""
    cid = rt.new_id("restricted")
    container = {
        "name": "restricted", "command": ["sh", "-c", "id -u; id -g; grep CapEff /proc/self/status; "
                                                      "grep NoNewPrivs /proc/self/status; touch /x || echo ro"],
        "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": "200m", "memory": "32Mi"}},
        "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "readOnlyRootFilesystem": True,
                            "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
    }
    bundle = rt.bundle(cid, container, pod_spec={"securityContext": {"supplementalGroups": [4000]}})
    await rt.runtime.create(cid, bundle, rt.log_path(cid))
    assert read_text(f"/sys/fs/cgroup/cpu{rt.cgroup_parent}/{cid}/cpu.cfs_quota_us").strip() == "20000"
    assert read_text(f"/sys/fs/cgroup/memory{rt.cgroup_parent}/{cid}/memory.limit_in_bytes").strip() == str(32 << 20)
    await rt.runtime.start(cid)
    status = await rt.runtime.wait(cid, timeout=10)
    assert status is not None and status.exit_code == 0
    out = read_log(rt.log_path(cid)).decode()
    assert out.splitlines()[:2] == ["1000", "3000"]
    assert "CapEff:\t0000000000000000" in out and "NoNewPrivs:\t1" in out
    assert "Read-only file system" in out

    cid = rt.new_id("privileged")
    pod = {"metadata": {"name": "p", "namespace": "default", "uid": "u-1"}, "spec": {}}
    config = build_container_spec(
        pod=pod, container={"name": "privileged", "command": ["sh", "-c", "grep CapEff /proc/self/status"],
                            "securityContext": {"privileged": True}},
        image_config={"Env": ["PATH=/bin"]}, rootfs=rt.rootfs, sandbox=SandboxRef(netns_path=None), mounts=[],
        env=[], cgroup_parent=rt.cgroup_parent, hostname="p", container_id=cid,
        all_capabilities=current_capabilities())
    bundle = os.path.join(rt.base, "bundles", cid)
    os.makedirs(bundle)
    write_text(os.path.join(bundle, "config.json"), json.dumps(config))
    await rt.runtime.create(cid, bundle, rt.log_path(cid))
    await rt.runtime.start(cid)
    status = await rt.runtime.wait(cid, timeout=10)
    assert status is not None and status.exit_code == 0
    mine = next(line for line in read_text("/proc/self/status").splitlines(True) if line.startswith("CapEff"))
    assert read_log(rt.log_path(cid)).decode() == mine


async def test_run_detached_pause_and_remove(rt: RuntimeEnv) -> None:
    """The sandbox's pause: `runc run --detach`, no conmon; found again by `runc state`; removed fast."""
    cid = rt.new_id("pause")
    bundle = rt.bundle(cid, {"name": "POD", "command": ["sleep", "1000"]})
    pid = await rt.runtime.run_detached(cid, bundle)
    for _ in range(200):  # runc returns once `runc init` is told to exec; the exec follows
        if read_text(f"/proc/{pid}/cmdline").split("\0")[0] == "sleep":
            break
        await asyncio.sleep(0.01)
    assert read_text(f"/proc/{pid}/cmdline").split("\0")[0] == "sleep"
    state = await rt.runtime.state(cid)
    assert (state.status, state.pid) == ("running", pid)
    assert rt.runtime.conmon_pid(cid) is None  # no monitor process for it
    t0 = time.monotonic()
    await rt.runtime.remove_detached(cid)
    assert time.monotonic() - t0 < 5.0
    assert not rt.runtime.runc.exists(cid) and not os.path.exists(rt.runtime.container_dir(cid))
    assert not os.path.exists(f"/proc/{pid}") or "Z" in read_text(f"/proc/{pid}/stat").rsplit(")", 1)[1][:3]
    await rt.runtime.remove_detached(cid)  # idempotent


async def test_run_detached_failure_is_a_create_error_and_leaves_nothing(rt: RuntimeEnv) -> None:
    cid = rt.new_id("badpause")
    bundle = rt.bundle(cid, {"name": "POD", "command": ["/no/such/pause"]})
    with pytest.raises(ContainerCreateError, match="no such file"):
        await asyncio.wait_for(rt.runtime.run_detached(cid, bundle), 30)
    assert not rt.runtime.runc.exists(cid)
