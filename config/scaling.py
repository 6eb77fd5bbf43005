"""Settings of the autoscaling metric the exporter serves (worker/backlog.py).

Kept apart from config/settings.py (which is long enough) as a base class of
:class:`config.settings.Settings`; the names are environment variables like every other setting.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings


class ScalingSettings(BaseSettings):
    """What the scaling metric assumes when the workers have not measured it yet."""

    zapi_scaling_send_seconds: Annotated[float, Field(gt=0, le=600)] = 1.0
    """The mean time of one request to Z-API the exporter assumes for an instance until the
    workers have timed its sends (they keep a recent mean in Redis, forgotten 10 minutes after
    the instance's last send). With an instance's rate limit it bounds the work worth scaling
    for: ``rate x send seconds`` jobs in flight keep the limit busy (``zapi_queue_scaling_
    backlog_jobs``, docs/operations.md)."""
