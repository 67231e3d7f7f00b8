"""The PTB bot the adapter talks through: an ``ExtBot`` that survives updates it can't parse.

PTB parses a whole ``getUpdates`` batch at once; one update it cannot parse
(a field missing, a type changed) fails the batch, and the updater fetches the
same batch again without advancing the offset, forever: the bot goes deaf.
:class:`ScreeningBot` checks each update of a batch on its own and replaces one
that doesn't parse with a bare ``{"update_id": N}`` (logged), which PTB parses,
confirms with the next offset, and the adapter skips like any update type it
doesn't handle.
"""

from __future__ import annotations

import logging
from typing import Any

from telegram import Update
from telegram.ext import ExtBot

log = logging.getLogger(__name__)

JSONDict = dict[str, Any]


def screen_update(raw: Any, bot: Any = None) -> JSONDict | None:
    """``raw`` when PTB can parse it, a bare update with its id when it can't, None without an id."""
    try:
        Update.de_json(raw, bot)
    except Exception as exc:
        update_id = raw.get("update_id") if isinstance(raw, dict) else None
        if not isinstance(update_id, int):
            log.warning("skipping an update without a usable update_id: %.200r", raw)
            return None
        log.warning("skipping update %s: it could not be parsed (%s: %s)", update_id, type(exc).__name__, exc)
        return {"update_id": update_id}
    return raw  # type: ignore[no-any-return]


class ScreeningBot(ExtBot[Any]):
    """``ExtBot`` whose ``getUpdates`` results are screened update by update (see the module doc).

    ``ExtBot`` itself documents ``_do_post`` as the place to hook every call
    (it adds rate limiting there); this hook only touches ``getUpdates``.
    """

    async def _do_post(self, endpoint: str, data: JSONDict, **timeouts: Any) -> bool | JSONDict | list[JSONDict]:
        result = await super()._do_post(endpoint, data, **timeouts)
        if endpoint != "getUpdates" or not isinstance(result, list):
            return result
        screened = (screen_update(raw, self) for raw in result)
        return [raw for raw in screened if raw is not None]
