"""Loopback benchmarks of the whole path: HTTP API, database, worker, SMPP peer, callbacks."""
