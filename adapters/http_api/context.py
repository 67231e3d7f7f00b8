"""What every route needs: the agent, the settings, and the API's own bookkeeping."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from core import Agent, ConversationKey
from core.store import Conversation

from .auth import ApiKeys, UserAllowlist
from .errors import ApiError
from .limits import TurnSlots
from .settings import ApiSettings
from .tasks import TaskRegistry
from .turns import ApprovalModeName, TurnRunner, TurnSpec

PLATFORM = "api"


@dataclass
class ApiContext:
    agent: Agent
    settings: ApiSettings
    keys: ApiKeys
    users: UserAllowlist
    slots: TurnSlots
    tasks: TaskRegistry

    def check_user(self, user_id: str) -> None:
        self.users.check(user_id)

    async def session(self, session_id: str, user_id: str | None = None) -> Conversation:
        """The API session ``session_id``; 404 when unknown, 403 when it is another user's."""
        conv = await self.agent.conversations.find_session(session_id)
        if conv is None or conv.key.platform != PLATFORM:
            raise ApiError(404, "session_not_found", f"no session {session_id}")
        if user_id is not None and conv.key.owner != user_id:
            raise ApiError(403, "forbidden", f"session {session_id} belongs to another user")
        self.check_user(conv.key.owner)
        return conv

    async def chat_key(self, user_id: str, session_id: str | None) -> ConversationKey:
        """The conversation a chat request addresses: a session of the user, or the user's default."""
        self.check_user(user_id)
        if session_id:
            return (await self.session(session_id, user_id)).key
        return ConversationKey(PLATFORM, user_id)

    def start_turn(
        self,
        key: ConversationKey,
        text: str,
        *,
        session_id: str | None,
        approval_mode: ApprovalModeName,
        timeout: float | None,
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
        )
        return TurnRunner(self.agent, spec, slot.release).start()


def get_context(request: Request) -> ApiContext:
    return request.app.state.ctx
