"""CNI invocation against fake plugins: configs, chaining, the result cache, errors (no root)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from pocketkube.kubelet.network import cni as cni_module
from pocketkube.kubelet.network.cni import CNI, CNIError, PodNetwork, PortMapping
from pocketkube.kubelet.network.netns import CommandResult

RESULT = {
    "cniVersion": "1.0.0",
    "interfaces": [{"name": "cbr0", "mac": "0a:58:0a:2a:00:01"}, {"name": "veth1234", "mac": "aa:aa:aa:aa:aa:aa"},
                   {"name": "eth0", "mac": "02:42:0a:2a:00:07", "sandbox": "/run/netns/pk-x"}],
    "ips": [{"interface": 2, "address": "10.42.0.7/24", "gateway": "10.42.0.1"}],
    "routes": [{"dst": "0.0.0.0/0"}],
}

# A fake plugin: logs "<plugin> <command> <ifname> <netns>" and its stdin, then answers.
PLUGIN = """#!/bin/sh
name=$(basename "$0")
conf=$(cat)
echo "$name $CNI_COMMAND $CNI_IFNAME $CNI_CONTAINERID [$CNI_NETNS]" >> "{log}"
printf '%s\\n' "$conf" > "{log}.$name.$CNI_COMMAND"
if [ -e "{log}.fail.$name" ]; then
  echo '{{"cniVersion":"1.0.0","code":11,"msg":"boom","details":"more"}}'; exit 1
fi
case "$name" in
  bridge) [ "$CNI_COMMAND" = ADD ] && echo '{result}' ;;
  portmap) [ "$CNI_COMMAND" = ADD ] && echo "$conf" | sed 's/.*"prevResult": *//; s/}}$//' ;;
  loopback) [ "$CNI_COMMAND" = ADD ] && echo '{{"cniVersion":"1.0.0","interfaces":[{{"name":"lo"}}]}}' ;;
esac
exit 0
"""


@pytest.fixture
def plugins(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("loopback", "bridge", "portmap"):
        path = bin_dir / name
        path.write_text(PLUGIN.format(log=tmp_path / "log", result=json.dumps(RESULT)))
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return tmp_path


def calls(tmp: Path) -> list[str]:
    return (tmp / "log").read_text().splitlines() if (tmp / "log").exists() else []


def stdin_of(tmp: Path, plugin: str, command: str) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads((tmp / f"log.{plugin}.{command}").read_text())
    return parsed


def make_cni(tmp: Path, **kw: Any) -> CNI:
    return CNI(bin_dir=str(tmp / "bin"), ipam_dir=str(tmp / "ipam"), cache_dir=str(tmp / "cache"), **kw)


def test_bridge_config_defaults(tmp_path: Path) -> None:
    conf = CNI(ipam_dir=str(tmp_path / "ipam"), bin_dir=str(tmp_path)).bridge_config()
    assert conf["bridge"] == "cbr0" and conf["isGateway"] and conf["hairpinMode"] and not conf["ipMasq"]
    assert conf["cniVersion"] == "1.0.0" and "mtu" not in conf
    assert conf["ipam"] == {"type": "host-local", "ranges": [[{"subnet": "10.42.0.0/24"}]],
                            "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(tmp_path / "ipam")}
    conf = CNI(ipam_dir="/x", bin_dir=str(tmp_path), mtu=1400, gateway="10.42.0.254",
               pod_routes=["10.42.0.0/16", "10.43.0.0/16"]).bridge_config()
    assert conf["mtu"] == 1400 and conf["ipam"]["ranges"] == [[{"subnet": "10.42.0.0/24", "gateway": "10.42.0.254"}]]
    assert conf["ipam"]["routes"] == [{"dst": "10.42.0.0/16"}, {"dst": "10.43.0.0/16"}]


def test_validate_rejects_bad_options(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="outside subnet"):
        CNI(ipam_dir="/x", bin_dir=str(tmp_path), gateway="10.1.0.1")
    with pytest.raises(ValueError, match="1-15"):
        CNI(ipam_dir="/x", bin_dir=str(tmp_path), bridge="a-very-long-bridge-name")
    with pytest.raises(ValueError, match="does not exist"):
        CNI(ipam_dir="/x", bin_dir=str(tmp_path / "nope"))


def test_pod_network_from_result() -> None:
    net = PodNetwork.from_result(RESULT, ifname="eth0")
    assert net == PodNetwork(ip="10.42.0.7", gateway="10.42.0.1", interface="eth0", mac="02:42:0a:2a:00:07",
                             prefix_len=24, host_veth="veth1234")


async def test_add_chains_and_caches_then_delete_uses_cache(plugins: Path) -> None:
    cni = make_cni(plugins)
    mappings = [PortMapping(8080, 80), PortMapping(5353, 53, "UDP", "127.0.0.1")]
    net = await cni.add("uid1", "/run/netns/pk-x", port_mappings=mappings)
    assert net.ip == "10.42.0.7"
    added = [c.split()[:3] for c in calls(plugins)]
    # lo and eth0 are attached concurrently (either may log first); portmap chains on the bridge's result
    assert sorted(added[:2]) == [["bridge", "ADD", "eth0"], ["loopback", "ADD", "lo"]]
    assert added[2:] == [["portmap", "ADD", "eth0"]]
    portmap = stdin_of(plugins, "portmap", "ADD")
    assert portmap["prevResult"] == RESULT and portmap["capabilities"] == {"portMappings": True}
    assert portmap["runtimeConfig"]["portMappings"] == [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}]
    assert cni.cached_pod_ids() == ["uid1"]

    # A "restarted agent": a new CNI object reads the cache and DELs in reverse order with it.
    (plugins / "log").unlink()
    restarted = make_cni(plugins)
    await restarted.delete("uid1")
    # The namespace path does not exist here, so CNI_NETNS is empty and loopback is skipped.
    assert calls(plugins) == ["portmap DEL eth0 uid1 []", "bridge DEL eth0 uid1 []"]
    assert stdin_of(plugins, "bridge", "DEL")["prevResult"] == RESULT
    assert stdin_of(plugins, "portmap", "DEL")["runtimeConfig"]["portMappings"][0]["hostPort"] == 8080
    assert restarted.cached_pod_ids() == []
    await restarted.delete("uid1")  # idempotent: bridge DEL without prevResult still releases IPAM
    assert "prevResult" not in stdin_of(plugins, "bridge", "DEL")


async def test_no_portmap_without_host_ports(plugins: Path) -> None:
    await make_cni(plugins).add("uid2", "/run/netns/pk-y")
    assert sorted(c.split()[0] for c in calls(plugins)) == ["bridge", "loopback"]  # no portmap exec


async def test_plugin_error_is_typed_and_add_rolls_back(plugins: Path) -> None:
    (plugins / "log.fail.portmap").touch()
    cni = make_cni(plugins)
    with pytest.raises(CNIError) as err:
        await cni.add("uid3", "/run/netns/pk-z", port_mappings=[PortMapping(1, 2)])
    assert (err.value.plugin, err.value.command, err.value.code) == ("portmap", "ADD", 11)
    assert (err.value.msg, err.value.details) == ("boom", "more")
    assert "boom" in str(err.value)
    # Rolled back: the bridge's IP was released (and portmap's DEL failed, which is swallowed).
    assert [c.split()[:2] for c in calls(plugins)][-1] == ["bridge", "DEL"]
    assert cni.cached_pod_ids() == []


async def test_node_netns_runs_plugins_under_nsenter(plugins: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []

    async def fake_run(argv: list[str], **kw: Any) -> CommandResult:
        seen.append(list(argv))
        return CommandResult(0, json.dumps(RESULT).encode(), b"")

    monkeypatch.setattr(cni_module, "run_command", fake_run)
    await make_cni(plugins, node_netns="/run/netns/pkt-node").add("uid4", "/run/netns/pk-w")
    assert seen[1] == ["nsenter", "--net=/run/netns/pkt-node", "--", os.path.join(str(plugins / "bin"), "bridge")]


async def test_failed_delete_keeps_cache_for_retry(plugins: Path) -> None:
    cni = make_cni(plugins)
    await cni.add("uid6", "/run/netns/pk-u", port_mappings=[PortMapping(1, 2)])
    (plugins / "log.fail.portmap").touch()
    with pytest.raises(CNIError, match="portmap DEL"):
        await cni.delete("uid6")
    assert calls(plugins)[-1].startswith("bridge DEL")  # still released the IP
    assert cni.cached_pod_ids() == ["uid6"]
    (plugins / "log.fail.portmap").unlink()
    await cni.delete("uid6")
    assert cni.cached_pod_ids() == []


async def test_check_needs_a_cached_result(plugins: Path) -> None:
    cni = make_cni(plugins)
    with pytest.raises(CNIError, match="no cached"):
        await cni.check("never")
    await cni.add("uid5", "/run/netns/pk-v")
    await cni.check("uid5")
    assert stdin_of(plugins, "bridge", "CHECK")["prevResult"] == RESULT
