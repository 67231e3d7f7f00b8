"""The agent runtime: Claude Code turns on warm, capped, isolated processes.

* :mod:`.turns` — :class:`AgentRuntime`, one turn's lifecycle (start, stream, stop, time out)
* :mod:`.permissions` — the policy's verdicts and approvals for each tool call
* :mod:`.options` — the SDK options a conversation's CLI is started with
* :mod:`.pool` — warm clients (LRU, idle reaping)
* :mod:`.processes` — the process cap, fair hand-over, launcher and orphan cleanup
* :mod:`.isolation` — private Claude Code directories per conversation, the Bash sandbox
"""

from ..attachments import Attachment
from .isolation import SandboxStatus, probe_sandbox
from .permissions import SEND_FILE_TOOL
from .pool import ClientPool, ClientSpec, WarmClient
from .state import TurnRequest, TurnState
from .turns import AgentRuntime

__all__ = [
    "SEND_FILE_TOOL",
    "AgentRuntime",
    "Attachment",
    "ClientPool",
    "ClientSpec",
    "SandboxStatus",
    "TurnRequest",
    "TurnState",
    "WarmClient",
    "probe_sandbox",
]
