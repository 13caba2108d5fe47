"""Node composition: join the cluster with a token, then run kubelet (or hollow nodes) and proxy."""
