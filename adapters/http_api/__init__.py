"""The HTTP API adapter: FastAPI routes over the same core sessions the chat bots use.

``create_app(agent, settings)`` builds the app; ``bots/http_api.py`` serves it
with uvicorn. Route modules: ``sessions`` / ``chat`` / ``files`` / ``approvals``
(``/api/v1``: claude-agent-http's API plus ccbridge's extras), ``v2`` (``/api/v2``:
ccbridge's own shapes), ``compat`` (claude-code-server's routes), ``probes`` (``/``,
``/health``, ``/ready``), ``docs`` (``/docs`` with local assets), ``admin`` (``/admin``: access
grants and config reload, admin keys only). Support: ``settings``
(config), ``auth`` (API keys, admin keys, allowlist), ``limits`` (body size, concurrent turns),
``turns`` (one turn in its own task), ``sse`` (events as server-sent events),
``models`` / ``session_models`` (bodies), ``tasks`` + ``callbacks`` + ``callback_hosts``
(async mode, signed callbacks to public addresses only), ``errors`` (JSON errors).
"""

from .app import create_app
from .callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify
from .settings import ApiSettings

__all__ = ["ApiSettings", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "create_app", "sign", "verify"]
