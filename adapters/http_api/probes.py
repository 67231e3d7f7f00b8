"""``/`` (what this service is), ``/health`` (liveness) and ``/ready`` (readiness); no API key needed.

``/health`` answers what both replaced projects' clients read: claude-agent-http's
``status``/``version``/``active_sessions``/``storage_type``/``uptime_seconds`` and
claude-code-server's ``status``/``version``/``claude_version``. It never touches the
store (a liveness probe must not fail because a database is slow); ``/ready`` does.
"""

from __future__ import annotations

import logging
import time
from functools import cache
from importlib import metadata
from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from .common import Ctx
from .context import ApiContext
from .errors import ApiError
from .models import ErrorEnvelope

log = logging.getLogger(__name__)
router = APIRouter(tags=["probes"])

API_VERSION = "1.0.0"
# /health's storage_type in claude-agent-http's words (memory | sqlite | postgresql); others as configured.
STORAGE_TYPES = {"postgres": "postgresql"}
SERVICE_NAME = "ccbridge HTTP API"


@cache
def package_version() -> str:
    try:
        return metadata.version("ccbridge")
    except metadata.PackageNotFoundError:  # running from a checkout that was never installed
        return "0+unknown"


@cache
def bundled_cli_version() -> str | None:
    try:
        from claude_agent_sdk._cli_version import __cli_version__
    except ImportError:
        return None
    return f"{__cli_version__} (Claude Code)"


class Health(BaseModel):
    status: Literal["healthy"] = "healthy"
    version: str = Field(description="ccbridge's version.")
    api_version: str = Field(description="The HTTP API's version.")
    active_sessions: int = Field(
        description="API sessions with a live Claude Code process or a running turn on this instance."
    )
    storage_type: str = Field(
        description="The conversation store's backend: memory, sqlite, postgresql (store.backend: postgres) or redis."
    )
    uptime_seconds: float
    claude_version: str | None = Field(None, description="The bundled Claude Code CLI's version (None with cli_path).")


class Ready(BaseModel):
    status: Literal["ready"] = "ready"
    instance_id: str = Field(description="This instance's id (coordination.instance_id, else host and home).")
    shared: bool = Field(description="Several instances coordinate (coordination: redis).")
    owned: int = Field(description="Conversations this instance owns (0 without shared coordination).")


class ServiceInfo(BaseModel):
    name: str
    version: str
    api_version: str
    docs: str | None = Field(description="The OpenAPI docs (None when turned off).")
    health: str
    ready: str
    apis: dict[str, str] = Field(description="Where each API lives.")


def storage_type(backend: str) -> str:
    return STORAGE_TYPES.get(backend, backend)


def active_sessions(ctx: ApiContext) -> int:
    agent = ctx.agent
    warm = {k for k in agent.runtime.pool.keys() if ctx.owns(k)}
    running = {r.key for r in agent.conversations.running() if ctx.owns(r.key)}
    return len(warm | running)


@router.get("/")
async def root(ctx: Ctx) -> ServiceInfo:
    """What this service is and where its parts are."""
    return ServiceInfo(
        name=SERVICE_NAME,
        version=package_version(),
        api_version=API_VERSION,
        docs="/docs" if ctx.settings.docs else None,
        health="/health",
        ready="/ready",
        apis={
            "/api/v1": "claude-agent-http's API, plus ccbridge's extras (approvals, async tasks, files, history)",
            "/api/v2": "ccbridge's own session objects and a stream with every event named",
            "/chat": "claude-code-server's routes (/chat, /chat/stream, /chat/async, /task, /session)",
        },
    )


@router.get("/health")
async def health(ctx: Ctx) -> Health:
    """The process answers HTTP."""
    return Health(
        version=package_version(),
        api_version=API_VERSION,
        active_sessions=active_sessions(ctx),
        storage_type=storage_type(ctx.agent.sections.store.backend),
        uptime_seconds=round(time.time() - ctx.started_at, 3),
        claude_version=None if ctx.agent.sections.agent.cli_path else bundled_cli_version(),
    )


@router.get("/ready", responses={503: {"model": ErrorEnvelope, "description": "The store is unreachable"}})
async def ready(ctx: Ctx) -> Ready:
    """The conversation store answers and takes writes; which instance answers, and what it owns."""
    health = await ctx.agent.health()
    if not health.ready:
        problems = "; ".join(health.problems)
        log.warning("readiness check failed: %s", problems)
        raise ApiError(503, "store_unavailable", f"not ready: {problems}", instance_id=health.instance_id)
    return Ready(instance_id=health.instance_id, shared=health.shared, owned=health.owned)
