"""Pending approval requests: opened by a turn, answered by a user, denied on timeout.

The broker holds the requests of the turns running in this process; the
:class:`~core.coordination.ApprovalBus` makes them known to every instance, so a
button press (or an HTTP answer) landing anywhere reaches the turn that waits.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import Any

from .coordination import ApprovalAnswer, ApprovalBus, MemoryApprovalBus
from .errors import ApprovalForbidden, ApprovalNotFound
from .events import ApprovalRequest, Decision
from .keys import ConversationKey

log = logging.getLogger(__name__)

EXPIRED = "this approval request was already answered or has expired"
FORBIDDEN = "only the person who asked, or an admin, can answer this request"


class ApprovalBroker:
    """Holds open approval requests by id; one decision each, first answer wins.

    Ids are short and unguessable (they travel in button payloads, e.g. a
    Telegram ``callback_data`` of at most 64 bytes).
    """

    def __init__(self, bus: ApprovalBus | None = None) -> None:
        self.bus = bus or MemoryApprovalBus()
        self._pending: dict[str, tuple[ApprovalRequest, asyncio.Future[ApprovalRequest]]] = {}
        self._subscribed = False

    async def start(self) -> None:
        if not self._subscribed:
            self._subscribed = True
            await self.bus.subscribe(self._on_answer)

    async def open(
        self,
        key: ConversationKey,
        requested_by: str,
        tool_name: str,
        summary: str,
        tool_input: dict[str, Any],
        timeout: float,
    ) -> ApprovalRequest:
        request = ApprovalRequest(
            id=secrets.token_urlsafe(9),
            key=key,
            requested_by=requested_by,
            tool_name=tool_name,
            summary=summary,
            input=tool_input,
            timeout=timeout,
        )
        self._pending[request.id] = (request, asyncio.get_running_loop().create_future())
        await self.bus.announce(request)
        return request

    def get(self, request_id: str) -> ApprovalRequest | None:
        """A request of a turn running in this process."""
        entry = self._pending.get(request_id)
        return entry[0] if entry else None

    async def find(self, request_id: str) -> ApprovalRequest | None:
        """A pending request of a turn running anywhere."""
        return self.get(request_id) or await self.bus.lookup(request_id)

    def pending(self, *, key: ConversationKey | None = None, requested_by: str | None = None) -> list[ApprovalRequest]:
        """Open requests of this process, optionally of one conversation and/or asked by one user."""
        return [
            req
            for req, future in self._pending.values()
            if not future.done()
            and (key is None or req.key == key)
            and (requested_by is None or req.requested_by == requested_by)
        ]

    async def pending_anywhere(self, *, requested_by: str, key: ConversationKey | None = None) -> list[ApprovalRequest]:
        """Open requests ``requested_by`` asked for, also of turns running on other instances (of one
        conversation, with ``key``); this process's alone when the bus cannot be reached."""
        local = self.pending(key=key, requested_by=requested_by)
        try:
            announced = await self.bus.asked_by(requested_by)
        except Exception as exc:  # noqa: BLE001 (the bus being down leaves this instance's list)
            log.warning("could not list the approvals waiting elsewhere: %r", exc)
            announced = []
        ids = {r.id for r in local}
        return local + [r for r in announced if r.id not in ids and (key is None or r.key == key)]

    async def wait(self, request: ApprovalRequest) -> ApprovalRequest:
        """Wait for the decision; a request not answered in time is denied."""
        entry = self._pending.get(request.id)
        if entry is None:
            return request
        try:
            return await asyncio.wait_for(asyncio.shield(entry[1]), request.timeout)
        except TimeoutError:
            self._decide(request.id, Decision.DENY, None, "timed out")
            return request
        except asyncio.CancelledError:
            self._decide(request.id, Decision.DENY, None, "turn ended")
            raise
        finally:
            self._pending.pop(request.id, None)
            try:
                await asyncio.shield(self.bus.withdraw(request.id))
            except Exception as exc:  # the bus being down must not break the turn
                log.warning("could not withdraw approval %s: %r", request.id, exc)

    async def resolve(
        self, request_id: str, decision: Decision, user_id: str, *, is_admin: bool = False
    ) -> ApprovalRequest:
        """Answer a request as ``user_id``; only the requester or an admin may."""
        request = await self.find(request_id)
        if request is None or request.decision is not None:
            raise ApprovalNotFound(EXPIRED)
        if user_id != request.requested_by and not is_admin:
            raise ApprovalForbidden(FORBIDDEN)
        decision = Decision(decision)
        if request.id in self._pending:
            if not self._decide(request_id, decision, user_id, None):
                raise ApprovalNotFound(EXPIRED)
            return request
        await self.bus.publish(ApprovalAnswer(request_id, decision, user_id))
        request.decision, request.decided_by = decision, user_id
        return request

    async def deny(self, request: ApprovalRequest, reason: str) -> None:
        """Deny ``request`` without asking anyone, wherever its turn runs (``reason`` is shown as the outcome)."""
        if request.id in self._pending:
            self._decide(request.id, Decision.DENY, None, reason)
        else:  # a turn running on another instance (a forwarded HTTP API turn)
            await self.bus.publish(ApprovalAnswer(request.id, Decision.DENY, "", reason))

    async def _on_answer(self, answer: ApprovalAnswer) -> None:
        self._decide(answer.request_id, answer.decision, answer.user_id or None, answer.reason)

    def deny_all(self, key: ConversationKey, reason: str) -> int:
        """Deny every open request of a conversation (``/stop``, ``/new``)."""
        count = 0
        for req in self.pending(key=key):
            if self._decide(req.id, Decision.DENY, None, reason):
                count += 1
        return count

    def _decide(self, request_id: str, decision: Decision, by: str | None, reason: str | None) -> bool:
        entry = self._pending.get(request_id)
        if entry is None or entry[1].done():
            return False
        request, future = entry
        request.decision = decision
        request.decided_by = by
        request.reason = reason
        future.set_result(request)
        log.info("approval %s for %s: %s", request_id, request.tool_name, request.outcome())
        return True
