"""ContainerRuntime against real runc + conmon (root): exit codes, logs, stop, OOM, exec, re-adoption."""

from __future__ import annotations

import asyncio
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
    ExecStartError,
    SandboxRef,
)
from pocketkube.kubelet.runtime.logs import LogOptions, follow_log, read_log

if TYPE_CHECKING:
    from tests.e2e.kubelet.conftest import RuntimeEnv

pytestmark = pytest.mark.e2e

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


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
    await rt.runtime.start(cid)
    elapsed = time.monotonic() - t0
    print(f"create+start: {elapsed * 1000:.1f} ms")
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
    assert status is not None and status.exit_code == 137
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

    with pytest.raises(ExecStartError) as info:
        await rt.runtime.exec(cid, ["nosuch"])
    assert 'exec: "nosuch": executable file not found in $PATH' in str(info.value)


async def test_exec_tty(rt: RuntimeEnv) -> None:
    cid = await run_container(rt, "tty", ["sleep", "1000"])
    proc = await rt.runtime.exec(cid, ["sh", "-c", "tty; exit 7"], tty=True)
    assert proc.stderr is None
    proc.resize(100, 30)
    out = await asyncio.wait_for(proc.stdout.read(), 10)
    assert b"/dev/pts/" in out
    assert await proc.wait() == 7


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
