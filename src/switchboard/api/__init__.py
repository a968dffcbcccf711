"""HTTP API: the Message Central-compatible surface, native /api/v1 extensions, health and metrics."""
