"""Files users send, as lazy handles: downloaded through ``im.v1.message_resource.get`` once core admits them.

Feishu's events carry no file sizes, so the core checks the size on the bytes
(``workspace.max_upload_mb``); Feishu itself serves message resources of at most
100 MB. A download the platform refuses is reported to the user (never saved).
"""

from __future__ import annotations

import logging

from core import FileRefused, IncomingFile
from core.intake import too_large

from .api import FeishuApi
from .errors import FeishuApiError, FeishuNetworkError
from .events import Resource

log = logging.getLogger(__name__)


def incoming(api: FeishuApi, resource: Resource) -> IncomingFile:
    async def fetch(limit: int) -> bytes:
        try:
            data = await api.download(resource.message_id, resource.key, resource.kind)
        except FeishuApiError as exc:
            log.warning("Feishu: downloading %s failed: %s", resource.name, exc)
            why = f"code {exc.code}" if exc.code is not None else exc.msg or "refused"
            raise FileRefused(f"{resource.name} could not be downloaded from Feishu ({why})") from None
        except FeishuNetworkError as exc:
            log.warning("Feishu: downloading %s failed: %s", resource.name, exc)
            raise FileRefused(f"{resource.name} could not be downloaded from Feishu (network error)") from None
        if len(data) > limit:
            raise too_large(resource.name, len(data), limit)
        return data

    return IncomingFile(name=resource.name, mime_type=None, size=None, fetch=fetch)


__all__ = ["incoming"]
