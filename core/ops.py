"""The ops port (``ops: {port: 9464}``): ``/health``, ``/ready`` and ``/metrics`` for a deployment
without the HTTP API (chat bots only), served by aiohttp (``pip install 'ccbridge[ops]'``).

* ``/health`` — liveness: the process answers (never touches the store).
* ``/ready`` — readiness: every agent's :meth:`~core.agent.Agent.health` (the store answers and
  takes writes); 200 ``{"status": "ready"}``, else 503 with each bot's problems.
* ``/metrics`` — the Prometheus metrics of the process (:mod:`core.metrics`).

No authentication: bind it to 127.0.0.1 (the default) or a private interface.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .config import OpsSettings
from .errors import ConfigError
from .listener import bound_port
from .metrics import Metrics

if TYPE_CHECKING:
    from aiohttp import web

    from .agent import Agent

log = logging.getLogger(__name__)


class OpsServer:
    """Serves the probes and metrics of ``agents`` on ``settings.host:settings.port``."""

    def __init__(self, settings: OpsSettings, agents: Sequence[Agent], metrics: Metrics) -> None:
        self.settings = settings
        self.agents = list(agents)
        self.metrics = metrics
        self._runner: web.AppRunner | None = None
        self.port: int | None = None  # the bound port, once started (useful with port 0)

    async def start(self) -> OpsServer:
        try:
            from aiohttp import web
        except ImportError:
            raise ConfigError("the ops port needs aiohttp: pip install 'ccbridge[ops]'", key="ops.port") from None
        app = web.Application()
        app.router.add_get("/health", self._health)
        app.router.add_get("/ready", self._ready)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        host, port = self.settings.host, self.settings.port or 0
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc})", key="ops.port") from None
        self._runner = runner
        self.port = bound_port(runner) or port
        log.info("ops port: http://%s:%d/health, /ready and /metrics", host, self.port)
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> OpsServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- routes ----------------------------------------------------------------
    async def _health(self, request: web.Request) -> web.Response:
        from aiohttp import web

        return web.json_response({"status": "healthy", "bots": [a.name for a in self.agents]})

    async def _ready(self, request: web.Request) -> web.Response:
        from aiohttp import web

        problems: dict[str, list[str]] = {}
        bots: dict[str, dict[str, object]] = {}
        for agent in self.agents:
            health = await agent.health()
            bots[agent.name] = {"instance_id": health.instance_id, "shared": health.shared, "owned": health.owned}
            if not health.ready:
                problems[agent.name] = health.problems
        if problems:
            log.warning("readiness check failed: %s", "; ".join(f"{b}: {', '.join(p)}" for b, p in problems.items()))
            return web.json_response({"status": "not ready", "problems": problems, "bots": bots}, status=503)
        return web.json_response({"status": "ready", "bots": bots})

    async def _metrics(self, request: web.Request) -> web.Response:
        from aiohttp import web

        body, content_type = self.metrics.render()
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response
