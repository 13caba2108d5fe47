"""libnftables in-process, inside a throwaway network namespace: a script commits as one batch, a
bad one raises nft's own message and changes nothing, the context really works in the namespace it
was made for (not the host's), and release() ends its thread."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import threading
from collections.abc import Iterator

import pytest

from pocketkube.proxy import libnftables, nftables_apply


@pytest.fixture
def netns() -> Iterator[str]:
    if os.geteuid() != 0 or shutil.which("nft") is None or not libnftables.available():
        pytest.skip("needs root, nft and libnftables")
    name = f"pkt{random.randrange(16**6):06x}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        nftables_apply.release(f"/run/netns/{name}")
        subprocess.run(["ip", "netns", "delete", name], check=False)


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
