"""Local stand-ins for development, tests, the demo and benchmarks: Redis and a fake Z-API.

Outside the product: the wheel (pyproject.toml packages worker, tasks and config only) and the
production image leave it out; `make install` makes it importable in the development venv, and
the Dockerfile's `sim` target adds it for compose's `sim` profile. It uses the product (the
endpoint registry, the settings); the product never imports it.
"""
