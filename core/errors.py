"""The ccbridge exception tree.

All errors raised on purpose by ccbridge derive from :class:`CCBridgeError`::

    CCBridgeError
    ├── ConfigError                  bad or missing configuration (names the key)
    ├── CredentialsMissing           no way to authenticate with Anthropic
    ├── WorkspaceError               a path was rejected (``..``, absolute, escapes the workspace)
    ├── AccessDenied                 a user is not allowed to do this
    ├── ConversationNotFound         no conversation has that key / session id
    ├── StoreError                   a conversation store failed
    │   ├── StoreUnavailable         the store cannot be written / reached right now (retry later)
    │   └── Fenced                   a stale owner's write, refused (a newer instance owns the conversation)
    ├── PlatformUnavailable          a chat platform could not be reached at start-up
    ├── FileRefused                  a file a user sent could not be taken (the text says why)
    ├── ApprovalError                answering an approval request failed
    │   ├── ApprovalNotFound         unknown or already answered / expired
    │   └── ApprovalForbidden        answered by someone other than the requester or an admin
    ├── AgentError                   the Claude Code agent failed a turn
    │   ├── AgentUnavailable         the CLI could not be started or died
    │   ├── ConversationBusy         a turn is running and the caller asked not to wait
    │   └── TurnTimeout              a turn took longer than allowed
    └── SinkError                    a platform rejected a reply operation
        ├── RateLimited              slow down; carries ``retry_after`` seconds
        └── MessageGone              the message to edit no longer exists / can't be edited

Errors carry context as attributes (``key``, ``retry_after``, ``code``).
"""

from __future__ import annotations


class CCBridgeError(Exception):
    """Root of every error ccbridge raises on purpose."""


class ConfigError(CCBridgeError):
    """The configuration is invalid; ``key`` names the offending setting when known."""

    def __init__(self, message: str, key: str | None = None) -> None:
        self.key = key
        super().__init__(f"{key}: {message}" if key else message)


class CredentialsMissing(CCBridgeError):
    """No Anthropic credentials were found."""


class WorkspaceError(CCBridgeError):
    """A workspace path was rejected."""


class AccessDenied(CCBridgeError):
    """The user is not allowed to do this."""


class ConversationNotFound(CCBridgeError):
    """No conversation has that key or session id."""


class StoreError(CCBridgeError):
    """A conversation store operation failed."""


class StoreUnavailable(StoreError):
    """The store cannot be reached or written right now (read-only, disk full, deleted, down)."""


class Fenced(StoreError):
    """A write by an instance that no longer owns the conversation (a newer fencing token was written)."""


class PlatformUnavailable(CCBridgeError):
    """A chat platform's API could not be reached at start-up."""


class FileRefused(CCBridgeError):
    """A file a user sent could not be taken (too large, not downloadable); the message says why."""


class ApprovalError(CCBridgeError):
    """Answering an approval request failed."""


class ApprovalNotFound(ApprovalError):
    """The approval request is unknown, already answered, or expired."""


class ApprovalForbidden(ApprovalError):
    """Only the user who asked, or an admin, may answer an approval request."""


class AgentError(CCBridgeError):
    """The agent failed a turn."""


class AgentUnavailable(AgentError):
    """The Claude Code CLI could not be started, or stopped unexpectedly."""


class ConversationBusy(AgentError):
    """A turn is already running in this conversation."""


class TurnTimeout(AgentError):
    """The turn exceeded its time limit."""


class SinkError(CCBridgeError):
    """A platform rejected a reply operation; ``code`` is the platform's error code."""

    def __init__(self, message: str, code: str | int | None = None) -> None:
        self.code = code
        super().__init__(message)


class RateLimited(SinkError):
    """The platform asked us to slow down for ``retry_after`` seconds."""

    def __init__(self, retry_after: float, message: str = "rate limited", code: str | int | None = None) -> None:
        self.retry_after = max(0.0, float(retry_after))
        super().__init__(f"{message} (retry after {self.retry_after:g}s)", code)


class MessageGone(SinkError):
    """The message can no longer be edited (deleted, too old, not ours)."""
