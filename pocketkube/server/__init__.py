"""Control-plane composition: datastore → API server → (leader election) → control loops → agent."""
