"""`pocketkube cluster up|down`: server plus N+1 nodes on one machine, each node a network namespace."""
