"""Control loops, one per module, each keeping one kind of desired state true through the API."""
