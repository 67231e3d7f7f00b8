"""What every route needs: the agent, the settings, and the API's own bookkeeping."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from fastapi import Request

from core import Agent, Attachment, CCBridgeError, ConversationKey
from core.config import AccessSettings
from core.grants import AccessGrants
from core.store import Conversation

from .auth import AdminKeys, ApiKeys, UserAllowlist
from .errors import ApiError
from .limits import TurnSlots
from .settings import LIVE_SETTINGS, ApiSettings
from .tasks import TaskRegistry
from .turns import ApprovalModeName, TurnRunner, TurnSpec

PLATFORM = "api"
# claude-agent-http's wording (its clients may compare ``detail``).
NOT_FOUND = "Session not found"
NOT_FOUND_OR_EXPIRED = "Session not found or expired"

log = logging.getLogger(__name__)

#: Re-reads the config file for every bot of the process (``Bot.reloader``): what each bot could not
#: change without a restart, by bot name; raises :class:`~core.ConfigError` (logged) for an invalid file.
Reload = Callable[[], Awaitable[Mapping[str, list[str]]]]
#: A configured bot's ``access`` section (after its overrides) by name; None: not in the config file.
BotAccess = Callable[[str], AccessSettings | None]


def admin_keys(settings: ApiSettings) -> AdminKeys:
    return AdminKeys((k.name, k.key.get_secret_value()) for k in settings.admin_keys)


def granted_users(entries: Iterable[str]) -> frozenset[str]:
    """The user_ids granted to this API (entries ``api:<user_id>``)."""
    prefix = f"{PLATFORM}:"
    return frozenset(entry[len(prefix) :] for entry in entries if entry.startswith(prefix))


@dataclass
class ApiContext:
    agent: Agent
    settings: ApiSettings
    keys: ApiKeys
    users: UserAllowlist
    slots: TurnSlots
    tasks: TaskRegistry
    started_at: float = field(default_factory=time.time)
    admins: AdminKeys = field(default_factory=lambda: AdminKeys(()))
    admin_routes: bool = False  #: /admin/* is served (admin_keys were set at start)
    reload: Reload | None = None  #: re-reads the config file (None: not run by run_bot)
    bot_access: BotAccess | None = None  #: other bots' access sections (None: as this agent's)
    #: the bot scope of every conversation key (``bots.base.bot_scope``): None for the bot named ``api``
    #: (the library's ``Agent.chat(user_id=...)`` shares its conversations), else the bot's name
    scope: str | None = None
    #: the users granted through /admin/users, kept in the store like the chat's /allow
    grants: AccessGrants = field(init=False)

    def __post_init__(self) -> None:
        self.grants = AccessGrants(self.agent.store, self.agent.name)

    def check_user(self, user_id: str) -> None:
        self.users.check(user_id)

    # -- this bot's conversations ------------------------------------------------------
    def key(self, user_id: str, thread: str | None = None) -> ConversationKey:
        """The key of ``user_id``'s default session (or of its session ``thread``) on this bot."""
        return ConversationKey(PLATFORM, user_id, thread, self.scope)

    def owns(self, key: ConversationKey) -> bool:
        """Whether ``key`` is one of this bot's conversations (not another platform's or HTTP API bot's)."""
        return key.platform == PLATFORM and key.bot == self.scope

    async def list_conversations(
        self, *, owner: str | None = None, thread: str | None = None, limit: int = 100
    ) -> list[Conversation]:
        """This bot's conversations (of ``owner``, named ``thread``), most recently active first.

        The store filters by a bot's name but not by "no bot": for the unscoped bot, the other
        bots' conversations are left out here, asking for more until ``limit`` are found.
        """
        where: dict[str, str] = {"platform": PLATFORM}
        if owner is not None:
            where["owner"] = owner
        if thread is not None:
            where["thread"] = thread
        if self.scope is not None:
            where["bot"] = self.scope
        asked = limit
        while True:
            listed = await self.agent.store.list(limit=asked, **where)  # type: ignore[arg-type]
            mine = [c for c in listed if self.owns(c.key)]
            if len(mine) >= limit or len(listed) < asked:
                return mine[:limit]
            asked *= 4

    def access_of(self, bot: str) -> AccessSettings:
        """Bot ``bot``'s ``access`` section as the config file has it (this agent's when it is not known)."""
        found = self.bot_access(bot) if self.bot_access is not None else None
        return found if found is not None else self.agent.access.settings

    async def refresh_granted_users(self) -> None:
        """Bring the granted users up to date (from the store every few seconds at most), when it matters:
        with ``allowed_users`` set."""
        if not self.users.restricted:
            return
        try:
            grants = await self.grants.refresh()
        except NotImplementedError:
            return  # a store without named values: allowed_users only
        except CCBridgeError as exc:
            log.warning("could not read the users granted through /admin/users (%s); using the last known", exc)
            return
        self.users.granted = granted_users(grants)

    def reconfigure(self, settings: ApiSettings) -> list[str]:
        """Take re-read settings (a config reload): keys, users, admin keys, ``admin_bots`` and the turn
        timeout change at once; the others keep their running value and are returned (they need a restart)."""
        old = self.settings
        live = set(LIVE_SETTINGS) if self.admin_routes else set(LIVE_SETTINGS) - {"admin_keys"}
        names = list(type(settings).model_fields)
        pending = [n for n in names if n not in live and getattr(settings, n) != getattr(old, n)]
        self.settings = settings.model_copy(update={n: getattr(old, n) for n in names if n not in live})
        self.keys = ApiKeys(k.get_secret_value() for k in self.settings.api_keys)
        self.users = UserAllowlist(self.settings.allowed_users, self.users.granted)
        self.admins = admin_keys(self.settings)
        return pending

    async def session(self, session_id: str, user_id: str | None = None, *, detail: str = NOT_FOUND) -> Conversation:
        """The API session ``session_id``; 404 when unknown, 403 when it is another user's."""
        conv = await self.agent.conversations.find_session(session_id)
        if conv is None or not self.owns(conv.key):  # another bot's session is unknown here
            raise ApiError(404, "session_not_found", f"no session {session_id}", detail=detail)
        if user_id is not None and conv.key.owner != user_id:
            raise ApiError(403, "forbidden", f"session {session_id} belongs to another user")
        self.check_user(conv.key.owner)
        return conv

    async def chat_key(self, user_id: str | None, session_id: str | None) -> ConversationKey:
        """The conversation a chat request addresses: a session (of ``user_id`` when given), or
        the user's default session."""
        if session_id:
            if user_id is not None:
                self.check_user(user_id)
            return (await self.session(session_id, user_id, detail=NOT_FOUND_OR_EXPIRED)).key
        if user_id is None:  # the request models require one of them
            raise ApiError(422, "invalid_request", "send a session_id or a user_id")
        self.check_user(user_id)
        return self.key(user_id)

    def start_turn(
        self,
        key: ConversationKey,
        text: str,
        *,
        session_id: str | None,
        approval_mode: ApprovalModeName,
        timeout: float | None,
        attachments: list[Attachment] | None = None,
    ) -> TurnRunner:
        """Take a concurrency slot (429 when none is free) and start the turn."""
        slot = self.slots.acquire()
        limit = self.settings.turn_timeout
        spec = TurnSpec(
            key=key,
            text=text,
            user_id=key.owner,
            session_id=session_id,
            approval_mode=approval_mode,
            timeout=min(timeout, limit) if timeout else limit,
            attachments=list(attachments or []),
        )
        return TurnRunner(self.agent, spec, slot.release).start()


def get_context(request: Request) -> ApiContext:
    return request.app.state.ctx
