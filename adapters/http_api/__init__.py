"""The HTTP API adapter: FastAPI routes over the same core sessions the chat bots use.

``create_app(agent, settings)`` builds the app; ``bots/http_api.py`` serves it
with uvicorn. Modules: ``settings`` (config), ``auth`` (API keys, allowlist),
``limits`` (body size, concurrent turns), ``turns`` (one turn in its own task),
``sse`` (events as server-sent events), ``tasks`` + ``callbacks`` + ``callback_hosts``
(async mode, signed callbacks to public addresses only), ``errors`` (JSON errors),
``sessions`` / ``chat`` / ``approvals`` / ``probes`` (the ``/api/v1`` routes),
``compat`` (claude-code-server's routes).
"""

from .app import create_app
from .callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, verify
from .settings import ApiSettings

__all__ = ["ApiSettings", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "create_app", "sign", "verify"]
