"""The training engine: data in, an explicit training loop, background jobs and the run store."""
