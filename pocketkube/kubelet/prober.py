"""Liveness, readiness and startup probes: exec, httpGet, tcpSocket (kubernetes pkg/kubelet/prober).

One task per probe runs on its periodSeconds after initialDelaySeconds and counts consecutive
results against successThreshold/failureThreshold; a changed verdict is reported to the pod
worker, which flips readiness or restarts the container.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

Obj = dict[str, Any]
log = logging.getLogger(__name__)

ExecFn = Callable[[list[str], float], Awaitable[tuple[int, bytes]]]


def _port(value: Any, container: Obj) -> int:
    if isinstance(value, int):
        return value
    for p in container.get("ports") or []:
        if p.get("name") == value:
            return int(p.get("containerPort", 0))
    try:
        return int(str(value))
    except ValueError:
        return 0


async def run_probe(probe: Obj, container: Obj, pod_ip: str, exec_fn: ExecFn) -> tuple[bool, str]:
    timeout = float(probe.get("timeoutSeconds") or 1)
    try:
        if "exec" in probe:
            code, out = await asyncio.wait_for(exec_fn(list(probe["exec"].get("command") or []), timeout), timeout)
            return code == 0, out.decode(errors="replace")[:1024] if code else ""
        if "httpGet" in probe:
            h = probe["httpGet"]
            host = h.get("host") or pod_ip
            scheme = str(h.get("scheme") or "HTTP").lower()
            url = f"{scheme}://{host}:{_port(h.get('port'), container)}{h.get('path') or '/'}"
            headers = {x.get("name", ""): x.get("value", "") for x in h.get("httpHeaders") or []}
            headers.setdefault("User-Agent", "kube-probe/1.32")
            async with aiohttp.ClientSession() as s, s.get(url, headers=headers, ssl=False,
                                                           timeout=aiohttp.ClientTimeout(total=timeout),
                                                           allow_redirects=False) as r:
                ok = 200 <= r.status < 400
                return ok, "" if ok else f"HTTP probe failed with statuscode: {r.status}"
        if "tcpSocket" in probe:
            t = probe["tcpSocket"]
            port = _port(t.get("port"), container)
            _, writer = await asyncio.wait_for(asyncio.open_connection(t.get("host") or pod_ip, port), timeout)
            writer.close()
            return True, ""
        if "grpc" in probe:
            return False, "grpc probes are not supported"
    except TimeoutError:
        return False, f"probe timed out after {timeout:g}s"
    except asyncio.CancelledError:
        raise
    except Exception as e:  # exec into a stopping container, refused connections...: a failed probe
        return False, str(e) or type(e).__name__
    return False, "probe has no handler"


class ProbeWorker:
    """Runs one probe of one container until cancelled, reporting verdict changes."""

    def __init__(self, kind: str, probe: Obj, container: Obj, pod_ip: str, exec_fn: ExecFn,
                 report: Callable[[str, str, bool, str], None]) -> None:
        self.kind = kind  # "liveness" | "readiness" | "startup"
        self.probe = probe
        self.container = container
        self.pod_ip = pod_ip
        self.exec_fn = exec_fn
        self.report = report
        self.result: bool | None = None

    async def run(self) -> None:
        p = self.probe
        period = float(p.get("periodSeconds") or 10)
        success_needed = int(p.get("successThreshold") or 1)
        failure_needed = int(p.get("failureThreshold") or 3)
        await asyncio.sleep(float(p.get("initialDelaySeconds") or 0))
        successes = failures = 0
        while True:
            ok, message = await run_probe(p, self.container, self.pod_ip, self.exec_fn)
            if ok:
                successes, failures = successes + 1, 0
                if successes >= success_needed and self.result is not True:
                    self.result = True
                    self.report(self.kind, self.container["name"], True, "")
            else:
                failures, successes = failures + 1, 0
                if failures >= failure_needed and self.result is not False:
                    self.result = False
                    self.report(self.kind, self.container["name"], False, message)
                elif self.kind == "liveness" and failures >= failure_needed:
                    self.report(self.kind, self.container["name"], False, message)
            await asyncio.sleep(period)
