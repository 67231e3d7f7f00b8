"""Liveness and readiness probes (no API key needed)."""

from __future__ import annotations

import logging

from fastapi import APIRouter

from .common import Ctx
from .errors import ApiError
from .models import ErrorEnvelope, Health

log = logging.getLogger(__name__)
router = APIRouter(tags=["probes"])


@router.get("/health")
async def health() -> Health:
    """The process answers HTTP."""
    return Health(status="ok")


@router.get("/ready", responses={503: {"model": ErrorEnvelope, "description": "The store is unreachable"}})
async def ready(ctx: Ctx) -> Health:
    """The conversation store answers and takes writes."""
    health = await ctx.agent.health()
    if not health.ready:
        problems = "; ".join(health.problems)
        log.warning("readiness check failed: %s", problems)
        raise ApiError(503, "store_unavailable", f"not ready: {problems}")
    return Health(status="ready")
