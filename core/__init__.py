"""ccbridge core: Claude Code sessions, stores, dispatcher, streaming replies, config.

The core never imports a platform SDK; adapters (``adapters/``) translate their
platform's events into :class:`IncomingMessage` and implement :class:`ReplySink`.
"""

from .access import AccessPolicy
from .adapter import ChatAdapter, Router
from .agent import Agent, ChatResult, Health
from .attachments import Attachment
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
    FileRefused,
    MessageGone,
    PlatformUnavailable,
    RateLimited,
    SinkError,
    StoreError,
    StoreUnavailable,
    TurnTimeout,
    WorkspaceError,
)
from .events import (
    AgentEvent,
    AgentRetrying,
    ApprovalRequest,
    ApprovalRequested,
    ApprovalResolved,
    Decision,
    FileOffered,
    MessagesMerged,
    TextDelta,
    ToolCallRecord,
    ToolResult,
    ToolUse,
    TurnError,
    TurnResult,
    TurnWaiting,
)
from .intake import IncomingFile
from .keys import ConversationKey, UserRef
from .outcome import TurnOutcome
from .reply import ReplyStreamer, send_notice
from .sink import ReplySink, SinkLimits

__all__ = [
    "AccessDenied",
    "AccessPolicy",
    "Agent",
    "AgentError",
    "AgentEvent",
    "AgentRetrying",
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
    "ChatAdapter",
    "ChatResult",
    "ConfigError",
    "ConversationBusy",
    "ConversationKey",
    "ConversationNotFound",
    "CredentialsMissing",
    "Decision",
    "Dispatcher",
    "FileOffered",
    "FileRefused",
    "Health",
    "IncomingFile",
    "IncomingMessage",
    "MessageGone",
    "MessagesMerged",
    "PlatformUnavailable",
    "RateLimited",
    "ReplySink",
    "ReplyStreamer",
    "Router",
    "Sections",
    "SinkError",
    "SinkLimits",
    "StoreError",
    "StoreUnavailable",
    "TextDelta",
    "ToolCallRecord",
    "ToolResult",
    "ToolUse",
    "TurnError",
    "TurnOutcome",
    "TurnResult",
    "TurnTimeout",
    "TurnWaiting",
    "UserRef",
    "WorkspaceError",
    "config_from_dict",
    "load_config",
    "send_notice",
]
