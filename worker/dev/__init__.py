"""Local stand-ins for development, tests, the demo and benchmarks: Redis and a fake Z-API.

Nothing here is used by a production worker.
"""
