"""The proxy's sync cost at 1,000 and 10,000 Services, beside the raw `nft -f` floor.

Everything runs in a throwaway network namespace `pkt<rand>` (created here, deleted at the end),
so no rule ever touches the host. Per size:

- model + render: `service_ports` + `render` from Service/EndpointSlice dicts (2 endpoints each);
- apply: the rendered script through `nft -f -` (one atomic transaction), first load and reload;
- floor: `nft -f -` of a table with the same number of plain `ip daddr X tcp dport 80 dnat to Y`
  rules and no chains, maps or sets — what the kernel + nft parser cost at minimum;
- change → rule: one endpoint flips unready; debounce (20 ms) + render + the incremental diff
  (nftables_diff.py) applied, i.e. what a proxier needs from the informer event to the new rule in
  the kernel; beside it the same with a whole-table reload.

Run (root): /work/main/.venv/bin/python bench/bench_proxy.py [--sizes 1000,10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pocketkube.proxy import nftables_apply
from pocketkube.proxy.model import service_ports
from pocketkube.proxy.nftables_diff import incremental_script
from pocketkube.proxy.nftables_render import NodeInfo, render, render_ruleset
from tests.unit.proxy.fixtures import many

DEBOUNCE = 0.02


def floor_script(table: str, n: int) -> str:
    rules = [f"    ip daddr 10.43.{16 + i // 250}.{1 + i % 250} tcp dport 80 dnat to 10.42.{i // 250 % 250}.{1 + i % 250}"
             for i in range(n)]
    return (f"table ip {table}\ndelete table ip {table}\ntable ip {table} {{\n  chain pre {{\n"
            "    type nat hook prerouting priority -100; policy accept;\n" + "\n".join(rules) + "\n  }\n}\n")


async def timed(coro: object) -> float:
    start = time.perf_counter()
    await coro  # type: ignore[misc]
    return time.perf_counter() - start


async def bench(n: int, netns: str, table: str) -> None:
    services, slices = many(n)
    node = NodeInfo(table=table, node_name="node-a", bridge="pktbr0", nodeport_ips=["10.42.0.1"])
    start = time.perf_counter()
    script = render(service_ports(services, slices), node)
    t_render = time.perf_counter() - start
    t_first = await timed(nftables_apply.apply_script(script, netns=netns))
    t_reload = await timed(nftables_apply.apply_script(script, netns=netns))
    floor = floor_script(table + "f", n)
    t_floor = await timed(nftables_apply.apply_script(floor, netns=netns))
    await nftables_apply.delete_table(table + "f", netns=netns)
    old = render_ruleset(service_ports(services, slices), node)
    slices[n // 2]["endpoints"][0]["conditions"]["ready"] = False
    start = time.perf_counter()
    await asyncio.sleep(DEBOUNCE)
    new = render_ruleset(service_ports(services, slices), node)
    diff = incremental_script(old, new)
    assert diff
    await nftables_apply.apply_script(diff, netns=netns)
    t_change = time.perf_counter() - start
    slices[n // 2]["endpoints"][0]["conditions"]["ready"] = True
    start = time.perf_counter()
    await asyncio.sleep(DEBOUNCE)
    await nftables_apply.apply_script(render(service_ports(services, slices), node), netns=netns)
    t_change_full = time.perf_counter() - start
    await nftables_apply.delete_table(table, netns=netns)
    print(f"{n:>6} services | script {len(script) / 1e6:5.2f} MB | model+render {t_render * 1000:7.0f} ms | "
          f"apply first {t_first * 1000:7.0f} ms, reload {t_reload * 1000:7.0f} ms | "
          f"floor (plain dnat rules) {t_floor * 1000:6.0f} ms | change->rule {t_change * 1000:6.0f} ms "
          f"(whole-table reload: {t_change_full * 1000:6.0f} ms)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="1000,10000")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_proxy needs root (a network namespace and nft)")
    name = f"pkt{random.randrange(16**6):06x}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for n in (int(s) for s in args.sizes.split(",")):
            asyncio.run(bench(n, f"/run/netns/{name}", name))
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


if __name__ == "__main__":
    main()
