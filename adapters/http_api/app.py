"""The FastAPI app: a thin translator from HTTP to an :class:`~core.Agent`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from core import Agent

from . import approvals, chat, compat, probes, sessions
from .auth import ApiKeys, UserAllowlist
from .callbacks import CallbackSender
from .context import ApiContext
from .errors import detail_errors_for, install_error_handlers
from .limits import BodySizeLimit, TurnSlots
from .settings import ApiSettings
from .tasks import TaskRegistry

API_VERSION = "1.0.0"


def create_app(agent: Agent, settings: ApiSettings) -> FastAPI:
    """The HTTP API over ``agent`` (started and closed by the caller)."""
    sender = None
    if settings.callback_secret is not None:
        sender = CallbackSender(
            settings.callback_secret.get_secret_value(),
            timeout=settings.callback_timeout,
            retries=settings.callback_retries,
            allow_private=settings.callback_allow_private,
        )
    ctx = ApiContext(
        agent=agent,
        settings=settings,
        keys=ApiKeys(k.get_secret_value() for k in settings.api_keys),
        users=UserAllowlist(settings.allowed_users),
        slots=TurnSlots(settings.max_concurrent_turns),
        tasks=TaskRegistry(settings.max_tasks, settings.task_ttl, sender),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await ctx.tasks.shutdown()

    app = FastAPI(
        title="ccbridge HTTP API",
        version=API_VERSION,
        description="Claude Code sessions over HTTP: the same sessions as the chat bots and the library API.",
        lifespan=lifespan,
        docs_url="/docs" if settings.docs else None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs else None,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    for module in (probes, sessions, chat, approvals, compat):
        app.include_router(module.router)
    app.add_middleware(
        BodySizeLimit, max_bytes=settings.max_body_bytes, detail_errors=detail_errors_for(compat.router.routes)
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Last-Event-ID"],
            expose_headers=["Retry-After"],
            max_age=600,
        )
    return app
