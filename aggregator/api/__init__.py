"""HTTP layer: dependencies (auth, runtime) and thin routes."""
