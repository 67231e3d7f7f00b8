"""``/metrics``: the agent's Prometheus metrics (:mod:`core.metrics`), in the text exposition format.

Like every route but the probes it needs an API key: point Prometheus at it with the key as a
bearer token (``authorization: {credentials: <key>}`` in the scrape config). A chat-only
deployment serves the same metrics on the ops port instead (``ops.port``, no key, 127.0.0.1).
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from .auth import require_api_key
from .common import Ctx, errors

router = APIRouter(tags=["metrics"], dependencies=[Depends(require_api_key)])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}, **errors()},
)
async def metrics(ctx: Ctx) -> Response:
    """Prometheus metrics: turns, latencies, cost, the process pool, rate limits, approvals, store errors."""
    body, content_type = ctx.agent.metrics.render()
    return Response(body, media_type=content_type)
