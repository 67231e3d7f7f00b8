"""The FastAPI app: a thin translator from HTTP to an :class:`~core.Agent`."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from core import Agent

from . import approvals, chat, compat, files, metrics, probes, sessions, v2
from .admin import router as admin_router
from .auth import ApiKeys, UserAllowlist
from .callbacks import CallbackSender
from .context import ApiContext, BotAccess, Reload, admin_keys
from .docs import ASSET_PACKAGE, install_docs
from .errors import compat_errors_for, install_error_handlers
from .limits import BodySizeLimit, TurnSlots
from .probes import API_VERSION, SERVICE_NAME
from .settings import ApiSettings
from .tasks import TaskRegistry, task_out

log = logging.getLogger(__name__)

DESCRIPTION = """Claude Code sessions over HTTP: the same sessions as the chat bots and the library API.

* `/api/v1`: claude-agent-http's API (sessions, chat, SSE stream), plus ccbridge's extras:
  approvals, async tasks with signed callbacks, history, files, `user_id`-addressed default sessions.
* `/api/v2`: ccbridge's own session objects, and a stream where every event is named.
* `/chat`, `/chat/stream`, `/chat/async`, `/task/{id}`, `/session/{id}`: claude-code-server's routes.
"""


def create_app(
    agent: Agent,
    settings: ApiSettings,
    *,
    reload: Reload | None = None,
    bot_access: BotAccess | None = None,
    scope: str | None = None,
) -> FastAPI:
    """The HTTP API over ``agent`` (started and closed by the caller).

    For ``/admin`` (run_bot hands its own in): ``reload`` re-reads the config file; ``bot_access`` is
    the ``access`` section of a configured bot by name (default: ``agent``'s for every bot).
    ``scope`` scopes every conversation key to one bot (``bots.base.bot_scope``; None: the plain keys
    the bot named ``api`` and the library's ``Agent.chat(user_id=...)`` share).
    """
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
        tasks=TaskRegistry(
            settings.max_tasks,
            settings.task_ttl,
            sender,
            # several instances: a task is polled through any of them
            notes=agent.coordination.notes if agent.coordination.shared else None,
            renderers={"v1": task_out, "compat": compat.compat_task},
        ),
        admins=admin_keys(settings),
        admin_routes=bool(settings.admin_keys),
        reload=reload,
        bot_access=bot_access,
        scope=scope,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await ctx.tasks.shutdown()

    local_docs = settings.docs and importlib.util.find_spec(ASSET_PACKAGE) is not None
    if settings.docs and not local_docs:
        log.warning(
            "%s is not installed: /docs loads Swagger UI from a CDN (pip install 'ccbridge[http]')", ASSET_PACKAGE
        )
    app = FastAPI(
        title=SERVICE_NAME,
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs" if settings.docs and not local_docs else None,  # CDN assets only as a fallback
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs else None,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    if local_docs:
        install_docs(app, title=SERVICE_NAME)
    for module in (probes, metrics, sessions, files, chat, approvals, v2, compat):
        app.include_router(module.router)
    if ctx.admin_routes:  # no admin endpoints without an admin key
        app.include_router(admin_router)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        compat_errors=compat_errors_for(compat.router.routes),
        limit_for=files.body_limit_for(agent.sections.workspace.max_upload_mb),
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
