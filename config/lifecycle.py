"""Settings of a worker's life in a container: how it stops and how its probes judge it.

Kept apart from config/settings.py (which is long enough) as a base class of
:class:`config.settings.Settings`; the names are environment variables like every other setting.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings


class LifecycleSettings(BaseSettings):
    """The stop and the probes of a worker (docs/kubernetes.md says how they fit a pod)."""

    celery_worker_drain_timeout: Annotated[float, Field(gt=0, le=3600)] = 30.0
    """Seconds a stopping worker (SIGTERM) waits for its sends in flight, once it has stopped
    fetching and handed back the jobs it held but had not started; what is still unfinished
    then goes back to the queue as of unknown outcome, and the worker exits 0. Keep it above a
    request's deadline (``ZAPI_CONNECT_TIMEOUT`` + ``ZAPI_TIMEOUT``) and, with a few seconds'
    margin, under the pod's ``terminationGracePeriodSeconds`` (compose: ``stop_grace_period``)."""
    zapi_heartbeat_file: str | None = None
    """Where a worker's consumer records that it is alive and fetching, for the probes
    (``zapi-queue probe live``, ``zapi-queue probe ready``) to read without a broker round
    trip; it must be writable (an ``emptyDir`` on a read-only root filesystem). Default:
    ``worker.heartbeat`` in ``zapi-queue-<uid>`` of the temporary directory (``TMPDIR``)."""
    zapi_liveness_timeout: Annotated[float, Field(gt=0, le=86_400)] = 60.0
    """Seconds without progress of a worker's consumer after which its liveness probe
    (``zapi-queue probe live``) fails: alive but not consuming, it should be restarted. A
    healthy loop beats every second; 60 s is twice the broker's socket timeout (30 s, the
    longest a single Redis call may hold the loop), so one slow call, or a reconnect after it,
    does not restart a worker, and it exceeds kombu's own recovery of a fetch whose reply never
    came (about 26 s). A worker still starting passes for this long after its start."""

    @property
    def heartbeat_path(self) -> Path:
        """ZAPI_HEARTBEAT_FILE, or its default: the same path for a worker and its probes."""
        if self.zapi_heartbeat_file:
            return Path(self.zapi_heartbeat_file)
        return Path(tempfile.gettempdir()) / f"zapi-queue-{os.getuid()}" / "worker.heartbeat"
