"""Peer projects' own test suites, run against our transport (tests/test_peer_suites.py).

Kombu's Redis integration tests and Celery's connection-recovery test encode what kombu's Redis
transport promises; ours subclasses it, so it must keep every one of those promises. The suites
come from the published source distributions of the pinned versions (``sources``) and run in a
child pytest that loads ``plugin``, which points ``redis://`` at our transport.
"""
