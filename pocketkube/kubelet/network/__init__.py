"""Pod sandbox networking for the kubelet: network namespaces, CNI plugins, node plumbing.

Flow: `sandbox.SandboxNetwork.setup(pod)` creates the pod's namespace (`netns.py`), attaches it
with CNI (`cni.py`: loopback, bridge + host-local, portmap) and returns the path the runtime's
pause container joins; `node_net.py` prepares the node itself (forwarding, bridge, routes to
other nodes' pod subnets).
"""
