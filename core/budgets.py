"""Per-user spend limits (``budgets:``): daily and monthly, in USD, totals kept in the store.

Every turn's cost (:attr:`~core.events.TurnResult.cost_usd`) is added to the user's total for
the day and for the month, two named values of the store per user
(``budget:<bot>:<platform>:<user>:day:2025-01-31`` and ``...:month:2025-01``, in micro-USD,
added atomically with :meth:`~core.store.ConversationStore.add_meta`): they survive restarts
and every instance on the store adds to the same totals. Before a turn, a user whose total has
reached a limit is refused (:meth:`Budgets.refusal`): they are told once, and nothing runs. A turn
that starts under the limit finishes, so a limit can be passed by the last turn's cost.

Limits: ``budgets.daily_usd`` / ``monthly_usd`` for everyone (a bot's own ``budgets:`` is that
bot's default), ``budgets.users`` for one user; ``exempt`` users, and admins unless
``admins_exempt: false``, are never limited. Days and months begin in ``budgets.timezone``.
A total the store could not take is kept in memory and added with the next one; totals older
than a few days (months: a year) are removed once a day.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from urllib.parse import quote
from zoneinfo import ZoneInfo

from .config import BudgetSettings
from .errors import CCBridgeError
from .store import ConversationStore

log = logging.getLogger(__name__)

PREFIX = "budget:"
MICRO = 1_000_000  # totals are kept in micro-USD: integers add exactly on every backend
KEEP_DAYS = 7  # daily totals kept (only today's is used)
KEEP_MONTHS = 13


@dataclass(frozen=True)
class Limits:
    """A user's limits in USD (None: no limit of that period)."""

    daily_usd: float | None = None
    monthly_usd: float | None = None


@dataclass(frozen=True)
class Spend:
    """What a user spent: today and this month (USD), and the limits that apply (None: exempt)."""

    today_usd: float
    month_usd: float
    limits: Limits | None
    timezone: str = "UTC"


@dataclass(frozen=True)
class Refusal:
    """A user's budget for ``period`` (``day`` or ``month``) is spent."""

    period: str
    spent_usd: float
    limit_usd: float
    timezone: str = "UTC"

    def message(self, command_prefix: str = "/") -> str:
        when = "at midnight" if self.period == "day" else "on the 1st of next month"
        which = "daily" if self.period == "day" else "monthly"
        return (
            f"💸 You have used your {which} budget here (${self.spent_usd:.2f} of ${self.limit_usd:.2f}), "
            f"so I can't start anything new. It resets {when} ({self.timezone}); "
            f"{command_prefix}cost shows your spend."
        )


class Budgets:
    """Spend per user of one bot (``scope``), and the limits of ``settings()`` (read at each call: a reload applies)."""

    def __init__(
        self,
        store: ConversationStore,
        scope: str,
        settings: Callable[[], BudgetSettings],
        *,
        clock: Callable[[], float] = time.time,
        on_refused: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.scope = scope
        self.settings = settings
        self.clock = clock
        self.on_refused = on_refused
        self._unrecorded: dict[str, int] = {}  # totals the store refused, added with the next ones
        self._pruned_on: str | None = None
        self._supported = True

    # -- limits ------------------------------------------------------------------
    def limits(self, platform: str, user_id: str, *, is_admin: bool = False) -> Limits | None:
        """The limits of ``platform:user_id``; None when they are exempt."""
        s = self.settings()
        entry = f"{platform}:{user_id}"
        if entry in s.exempt or (is_admin and s.admins_exempt):
            return None
        own = s.users.get(entry)
        if own is None:
            return Limits(s.daily_usd, s.monthly_usd)
        return Limits(
            s.daily_usd if own.daily_usd is None else own.daily_usd,
            s.monthly_usd if own.monthly_usd is None else own.monthly_usd,
        )

    async def refusal(self, platform: str, user_id: str, *, is_admin: bool = False) -> Refusal | None:
        """Why ``platform:user_id`` may not start a turn now (None: they may). Reads the store only with limits set."""
        if not self.settings().limited:
            return None
        limits = self.limits(platform, user_id, is_admin=is_admin)
        if limits is None or (limits.daily_usd is None and limits.monthly_usd is None):
            return None
        spend = await self.spend(platform, user_id, is_admin=is_admin)
        refusal = None
        tz = self.settings().timezone
        if limits.monthly_usd is not None and spend.month_usd >= limits.monthly_usd:
            refusal = Refusal("month", spend.month_usd, limits.monthly_usd, tz)  # the longer wait is the one to tell
        elif limits.daily_usd is not None and spend.today_usd >= limits.daily_usd:
            refusal = Refusal("day", spend.today_usd, limits.daily_usd, tz)
        if refusal is not None:
            log.info(
                "budget: refused %s:%s (%s spend $%.4f, limit $%.2f)",
                platform,
                user_id,
                refusal.period,
                refusal.spent_usd,
                refusal.limit_usd,
                extra={"event": "budget_refused", "bot": self.scope, "user": f"{platform}:{user_id}"},
            )
            if self.on_refused is not None:
                self.on_refused(refusal.period)
        return refusal

    # -- spend ---------------------------------------------------------------------
    async def spend(self, platform: str, user_id: str, *, is_admin: bool = False) -> Spend:
        """What ``platform:user_id`` spent today and this month (a store without named values: nothing)."""
        day, month = self._names(platform, user_id)
        totals = []
        for name in (day, month):
            stored = 0
            if self._supported:
                try:
                    stored = int(await self.store.get_meta(name) or 0)
                except NotImplementedError:
                    self._unsupported()
                except ValueError:
                    log.warning("budget: the total %s in the store is not a number; counting it as 0", name)
            totals.append((stored + self._unrecorded.get(name, 0)) / MICRO)
        return Spend(totals[0], totals[1], self.limits(platform, user_id, is_admin=is_admin), self.settings().timezone)

    async def record(self, platform: str, user_id: str, cost_usd: float | None) -> None:
        """Add a turn's cost to the user's totals (never raises: a store failure keeps it for the next time)."""
        if not cost_usd or cost_usd <= 0 or not self._supported:
            return
        amount = round(cost_usd * MICRO)
        for name in self._names(platform, user_id):
            self._unrecorded[name] = self._unrecorded.get(name, 0) + amount
        await self._flush()
        await self._prune()

    async def _flush(self) -> None:
        for name, amount in list(self._unrecorded.items()):
            try:
                await self.store.add_meta(name, amount)
            except NotImplementedError:
                self._unsupported()
                return
            except CCBridgeError as exc:
                log.warning("budget: could not record spend in the store (%s); it is added with the next turn", exc)
                return
            left = self._unrecorded.get(name, 0) - amount  # a turn may have added more meanwhile
            if left:
                self._unrecorded[name] = left
            else:
                self._unrecorded.pop(name, None)

    async def _prune(self) -> None:
        """Once a day: remove the totals of days and months long past."""
        now = self._now()
        today = now.strftime("%Y-%m-%d")
        if self._pruned_on == today:
            return
        self._pruned_on = today
        oldest_day = datetime.fromtimestamp(self.clock() - KEEP_DAYS * 86400, now.tzinfo).strftime("%Y-%m-%d")
        months = now.year * 12 + now.month - 1 - KEEP_MONTHS
        oldest_month = f"{months // 12:04d}-{months % 12 + 1:02d}"
        try:
            for name in await self.store.list_meta(f"{PREFIX}{quote(self.scope, safe='')}:"):
                _, period, stamp = name.rsplit(":", 2)
                if (period == "day" and stamp < oldest_day) or (period == "month" and stamp < oldest_month):
                    await self.store.delete_meta(name)
        except NotImplementedError:
            self._unsupported()
        except CCBridgeError as exc:
            log.warning("budget: could not remove old totals (%s)", exc)

    # -- names -----------------------------------------------------------------------
    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), _zone(self.settings().timezone))

    def _names(self, platform: str, user_id: str) -> tuple[str, str]:
        now = self._now()
        who = ":".join(quote(part, safe="") for part in (self.scope, platform, user_id))
        return f"{PREFIX}{who}:day:{now:%Y-%m-%d}", f"{PREFIX}{who}:month:{now:%Y-%m}"

    def _unsupported(self) -> None:
        if self._supported:
            log.warning("budget: %s keeps no named values; spend is not counted", type(self.store).__name__)
        self._supported = False


def _zone(name: str) -> tzinfo:
    return UTC if name == "UTC" else ZoneInfo(name)
