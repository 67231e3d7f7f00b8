"""The small helpers adapters share: loopback hosts, blank settings, the approval decision line."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from core import ApprovalRequest, ConversationKey, Decision
from core.approval_text import EMOJI, Marks, decision_line
from core.fields import OptionalSecret, OptionalText
from core.net import is_loopback


@pytest.mark.parametrize("host", ["localhost", "LocalHost", "127.0.0.1", "127.8.9.10", "::1"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["example.com", "localhost.example.com", "10.0.0.1", "0.0.0.0", "::", ""])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


class Settings(BaseModel):
    secret: OptionalSecret = None
    text: OptionalText = "default"


@pytest.mark.parametrize("blank", ["", "  ", "\t\n"])
def test_a_blank_setting_is_unset(blank: str) -> None:
    settings = Settings.model_validate({"secret": blank, "text": blank})
    assert settings.secret is None and settings.text is None


def test_a_set_or_missing_setting_is_kept() -> None:
    settings = Settings.model_validate({"secret": " s3cret "})
    assert settings.secret is not None and settings.secret.get_secret_value() == " s3cret "
    assert settings.text == "default"


def request(decision: Decision | None = None, by: str | None = None, reason: str | None = None) -> ApprovalRequest:
    req = ApprovalRequest("r1", ConversationKey("chat", "u1"), "u1", "Bash", "ls", {}, 60)
    req.decision, req.decided_by, req.reason = decision, by, reason
    return req


def test_the_pending_line() -> None:
    assert decision_line(request()) == "⏳ Waiting for approval"
    assert decision_line(request(), marks=Marks(waiting=":hourglass:")) == ":hourglass: Waiting for approval"


def test_the_decision_line_marks_mentions_and_escapes() -> None:
    def mention(user: str) -> str:
        return f"<@{user}>"

    def escape(text: str) -> str:
        return text.replace("*", "\\*")

    allowed = request(Decision.ALLOW_SESSION, by="u1")
    assert decision_line(allowed, mention=mention, escape=escape) == "✅ Allowed for this session by <@u1>"
    denied = request(Decision.DENY, by="u2", reason="*no*")
    assert decision_line(denied, mention=mention, escape=escape) == "⛔ Denied by <@u2> (\\*no\\*)"
    timed_out = request(Decision.DENY, reason="timed out")
    assert decision_line(timed_out, marks=Marks(denied=":no_entry:")) == ":no_entry: Denied (timed out)"
    assert decision_line(request(Decision.ALLOW_ONCE), marks=EMOJI) == "✅ Allowed once"


def test_without_marks_the_line_is_the_requests_own_outcome() -> None:
    plain = Marks(waiting="", allowed="", denied="")
    for req in (request(), request(Decision.ALLOW_ONCE, by="u1"), request(Decision.DENY, reason="turn ended")):
        assert decision_line(req, marks=plain) == req.outcome()
