"""``python -m devtools.zapi_sim`` (the Dockerfile's ``sim`` target, compose, remote_sim)."""

from devtools.zapi_sim.cli import main

main()
