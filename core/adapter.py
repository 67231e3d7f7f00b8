"""The incoming seam: what every chat platform's adapter implements (the reply side is :mod:`core.sink`).

An adapter connects to one chat platform and turns what arrives there into
calls on a :class:`~core.dispatcher.Dispatcher`. It never decides *whether* to
answer (allowlist, commands, empty messages, refusals, file limits: the
dispatcher does), and never downloads a file itself. The contract
(``tests/contracts/chat_bot_contract.py`` runs it against every platform):

* ``platform`` names the platform (``"telegram"``); the conversation keys its
  bot's ``route`` returns use it.
* **Construction**: ``Adapter(settings, dispatcher, route, where="bots.<name>")``
  — ``settings`` is the adapter's own pydantic model, ``route`` the bot's policy
  (the adapter's *place* type -> :class:`~core.keys.ConversationKey` or None for
  "not for the bot"), ``where`` the config prefix errors name. Constructing
  does no I/O.
* ``start()`` connects and checks the credentials: rejected credentials raise
  :class:`~core.errors.ConfigError` naming the key (``bots.team.token``); an
  unreachable platform raises :class:`~core.errors.PlatformUnavailable`.
  Nothing is received before ``start()`` returns.
* ``run()`` starts, receives until cancelled, then stops (the default does
  exactly that around :meth:`serve`).
* once ``start()`` is ready to post, it calls ``dispatcher.answer_left_waiting()``
  (messages parked by the debounce window or ``busy_policy: merge`` when the bot
  last stopped are answered, through ``sink_at``); ``stop()`` first calls
  ``dispatcher.end_windows()`` (messages in a debounce window stay parked).
* ``stop(drain_timeout)`` stops receiving, lets messages in flight finish (up
  to ``drain_timeout`` seconds, then cancels them) and releases connections.
  Calling it twice, or before ``start()`` succeeded, is harmless.

While running, for every event:

* each delivery is handled once: ``await dispatcher.first_delivery(event_id)``
  (platform retries and reconnect replays are dropped; the memory survives
  restarts when the store is persistent);
* a message becomes an :class:`~core.dispatcher.IncomingMessage` — the key from
  ``route``, the user (:class:`~core.keys.UserRef`, roles included), the text
  without the bot's mention, a :class:`~core.sink.ReplySink` answering where it
  was written, its files as :class:`~core.intake.IncomingFile` handles, and
  whether it was addressed to the bot — handed to ``dispatcher.submit`` (which
  returns at once: acknowledge the platform before the turn runs);
* a button press on an approval prompt calls
  ``await dispatcher.resolve_approval(request_id, decision, user)`` and tells the
  presser privately when it raises :class:`~core.errors.ApprovalForbidden` /
  :class:`~core.errors.ApprovalNotFound`;
* event types the adapter does not handle are skipped with a debug log.

With several instances, a message for a conversation another instance owns is
handed to that instance (:mod:`core.routing`) together with its sink's
``address()``; the owner's adapter rebuilds the sink with ``sink_at(address)``
and posts the reply itself. ``sink_at`` returns None when this instance cannot
post there (not connected, an address it does not know): the receiver then shows
the reply, from the events the owner sends back.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from .keys import ConversationKey
from .sink import ReplySink

if TYPE_CHECKING:
    from .dispatcher import Dispatcher

PlaceT = TypeVar("PlaceT")
#: A bot's routing policy: where a message was written -> its conversation, or None (not for the bot).
Router = Callable[[PlaceT], ConversationKey | None]


async def drain_tasks(timeout: float, *task_sets: Collection[asyncio.Task[Any]]) -> None:
    """Let an adapter's tasks in flight finish within ``timeout`` seconds, then cancel what is left.

    The sets are read again after each wait: a task finishing may start another (a download
    that submits its message), which is waited for too.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while pending := [t for tasks in task_sets for t in tasks if not t.done()]:
        remaining = deadline - loop.time()
        if remaining <= 0:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            return
        await asyncio.wait(pending, timeout=remaining)


class ChatAdapter(ABC, Generic[PlaceT]):
    """Base of every chat platform adapter (see the module docstring for the contract)."""

    platform: ClassVar[str]

    @property
    def single_connection(self) -> bool:
        """True when the platform allows one connection per bot (Telegram long polling, a Discord gateway
        session): with several instances only the one holding the leader lease connects."""
        return False

    def __init__(self, settings: Any, dispatcher: Dispatcher, route: Router[PlaceT], *, where: str = "") -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self.route = route
        self.where = where
        dispatcher.adapter = self  # rebuilds the sinks of messages other instances hand over

    def sink_at(self, address: Mapping[str, Any]) -> ReplySink | None:
        """The sink a :meth:`ReplySink.address` of this bot names, or None when this instance cannot post there."""
        return None

    def config_key(self, name: str) -> str:
        """The full config key of one of the adapter's settings, for errors (``bots.team.token``)."""
        return f"{self.where}.{name}" if self.where else name

    @abstractmethod
    async def start(self) -> None:
        """Connect, check the credentials, begin receiving."""

    @abstractmethod
    async def stop(self, drain_timeout: float = 10.0) -> None:
        """Stop receiving, drain work in flight, disconnect."""

    async def serve(self) -> None:
        """Block while receiving (after :meth:`start`); the default waits until cancelled."""
        await asyncio.Event().wait()

    async def run(self, drain_timeout: float = 10.0) -> None:
        """Start, serve until cancelled, stop (draining up to ``drain_timeout`` seconds)."""
        await self.start()
        try:
            await self.serve()
        finally:
            await self.stop(drain_timeout)

    async def __aenter__(self) -> ChatAdapter[PlaceT]:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
