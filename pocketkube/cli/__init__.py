"""The `pocketkube` command: server, apiserver, kubectl (and, as they land, agent and friends)."""
