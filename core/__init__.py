"""ccbridge core: Claude Code sessions, stores, dispatcher, streaming replies, config.

The core never imports a platform SDK; adapters (``adapters/``) translate their
platform's events into :class:`IncomingMessage` and implement :class:`ReplySink`.
"""

from .access import AccessPolicy
from .agent import Agent, ChatResult
from .config import AppConfig, Sections, config_from_dict, load_config
from .dispatcher import Dispatcher, IncomingMessage
from .errors import (
    AccessDenied,
    AgentError,
    AgentUnavailable,
    ApprovalError,
    ApprovalForbidden,
    ApprovalNotFound,
    CCBridgeError,
    ConfigError,
    ConversationBusy,
    ConversationNotFound,
    CredentialsMissing,
    MessageGone,
    RateLimited,
    SinkError,
    StoreError,
    TurnTimeout,
    WorkspaceError,
)
from .events import (
    AgentEvent,
    ApprovalRequest,
    ApprovalRequested,
    ApprovalResolved,
    Decision,
    FileOffered,
    TextDelta,
    ToolCallRecord,
    ToolResult,
    ToolUse,
    TurnError,
    TurnResult,
)
from .keys import ConversationKey, UserRef
from .reply import ReplyStreamer, send_notice
from .runtime import Attachment
from .sink import ReplySink, SinkLimits

__all__ = [
    "AccessDenied",
    "AccessPolicy",
    "Agent",
    "AgentError",
    "AgentEvent",
    "AgentUnavailable",
    "AppConfig",
    "ApprovalError",
    "ApprovalForbidden",
    "ApprovalNotFound",
    "ApprovalRequest",
    "ApprovalRequested",
    "ApprovalResolved",
    "Attachment",
    "CCBridgeError",
    "ChatResult",
    "ConfigError",
    "ConversationBusy",
    "ConversationKey",
    "ConversationNotFound",
    "CredentialsMissing",
    "Decision",
    "Dispatcher",
    "FileOffered",
    "IncomingMessage",
    "MessageGone",
    "RateLimited",
    "ReplySink",
    "ReplyStreamer",
    "Sections",
    "SinkError",
    "SinkLimits",
    "StoreError",
    "TextDelta",
    "ToolCallRecord",
    "ToolResult",
    "ToolUse",
    "TurnError",
    "TurnResult",
    "TurnTimeout",
    "UserRef",
    "WorkspaceError",
    "config_from_dict",
    "load_config",
    "send_notice",
]
