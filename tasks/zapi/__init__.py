"""Talking to Z-API: the pooled HTTP client, its per-request deadline, and reading the answers."""
