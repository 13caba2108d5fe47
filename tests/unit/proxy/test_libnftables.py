"""libnftables in-process, inside a throwaway network namespace: a script commits as one batch, a
bad one raises nft's own message and changes nothing, the context really works in the namespace it
was made for (not the host's), release() ends its thread, and a delete after a cancelled load wins
(with the CLI too)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import subprocess
import threading
from collections.abc import Iterator

import pytest

from pocketkube.proxy import libnftables, nftables_apply
from pocketkube.proxy.model import service_ports
from pocketkube.proxy.nftables_render import NodeInfo, render
from tests.unit.proxy.fixtures import many, scratch_netns


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("nft") is None or not libnftables.available():
        pytest.skip("needs root, nft and libnftables")
    with scratch_netns() as path:
        yield path


def _tables(netns: str | None) -> str:
    argv = ["nft", "list", "tables"]
    return subprocess.run(["nsenter", f"--net={netns}", *argv] if netns else argv, capture_output=True, text=True,
                          check=True).stdout


def _listing(netns: str, table: str) -> str:
    return subprocess.run(["nsenter", f"--net={netns}", "nft", "list", "table", "ip", table],
                          capture_output=True, text=True, check=True).stdout


async def test_commits_atomically_in_its_namespace(netns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nftables_apply, "BACKEND", "lib")
    table = f"pkt{random.randrange(16**6):06x}"
    await nftables_apply.apply_script(f"table ip {table} {{\n  chain a {{\n  }}\n}}\n", netns=netns)
    assert f"table ip {table}" in _tables(netns) and f"table ip {table}" not in _tables(None)
    threads = {t.name for t in threading.enumerate()}
    assert any(name.startswith("libnftables") for name in threads)
    with pytest.raises(nftables_apply.ApplyError, match="No such file or directory"):
        # the first command alone would work; the batch fails as a whole
        await nftables_apply.apply_script(f"add chain ip {table} b\nadd rule ip {table} nochain accept\n",
                                          netns=netns)
    listing = _listing(netns, table)
    assert "chain a" in listing and "chain b" not in listing
    await nftables_apply.delete_table(table, netns=netns)
    nftables_apply.release(netns)
    assert not any(t.name.startswith("libnftables") and t.is_alive() for t in threading.enumerate())


@pytest.mark.parametrize(("backend", "whole_table", "after"), [("lib", False, 0.02), ("lib", True, 0.15),
                                                                ("cli", False, 0.15)])
async def test_delete_after_a_cancelled_load_wins(netns: str, backend: str, whole_table: bool, after: float,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxier cancelled mid-load deletes its table on the way out: the load still running (in
    the libnftables thread or an nft child) must not re-create the table after that delete."""
    monkeypatch.setattr(nftables_apply, "BACKEND", backend)
    table = f"pkt{random.randrange(16**6):06x}"
    services, slices = many(2000)
    script = render(service_ports(services, slices), NodeInfo(table=table, node_name="n", bridge="pktbr0",
                                                              nodeport_ips=["10.42.0.1"]))
    load = asyncio.create_task(nftables_apply.apply_script(script, netns=netns, whole_table=whole_table))
    await asyncio.sleep(after)  # the CLI: after its stdin is written (a cut script just fails to parse)
    load.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await load
    await nftables_apply.delete_table(table, netns=netns)
    await asyncio.sleep(2)  # time for a load that outlived its cancel (the bug) to land
    assert f"table ip {table}" not in _tables(netns)
