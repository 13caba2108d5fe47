"""The kubelet: registers the node, keeps its Lease and status fresh, and runs the pods bound to it."""
