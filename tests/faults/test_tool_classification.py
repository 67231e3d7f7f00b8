"""Every tool the bundled Claude Code announces has a class in ccbridge's policy.

Run this on every claude-agent-sdk upgrade (pyproject pins a tested range): a new CLI
can add tools, and an unclassified one is denied for everyone until somebody reviews what
it can reach and adds it to ``core.tool_policy.TOOL_CLASSES``.
"""

from __future__ import annotations

from pathlib import Path

from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient, SystemMessage

from core.config import AgentSettings
from core.keys import ConversationKey
from core.runtime.options import bridge_server
from core.runtime.pool import ClientSpec, WarmClient
from core.tool_policy import TOOL_CLASSES, ToolClass, ToolPolicy


async def announced_tools(cli_env: dict[str, str], cwd: Path) -> list[str]:
    warm = WarmClient(ConversationKey("test", "u"), ClientSpec("s", str(cwd), None))
    options = ClaudeAgentOptions(
        cwd=str(cwd), env=cli_env, setting_sources=[], mcp_servers={"ccbridge": bridge_server(warm)}
    )
    async with ClaudeSDKClient(options) as client:
        await client.query("hello")
        tools: list[str] = []
        async for message in client.receive_response():
            if isinstance(message, SystemMessage) and message.subtype == "init":
                tools = list(message.data.get("tools") or [])
        return tools


async def test_every_announced_tool_is_classified(cli_env: dict[str, str], tmp_path: Path) -> None:
    tools = await announced_tools(cli_env, tmp_path)
    assert "Bash" in tools and "mcp__ccbridge__send_file" in tools  # the list is the real one
    policy = ToolPolicy(AgentSettings(), extra_mcp_servers=("ccbridge",))
    unclassified = [t for t in tools if policy.classify(t) is None]
    assert unclassified == [], (
        f"the bundled Claude Code announces tools nobody classified: {unclassified}. Review what each can "
        "reach and add it to core.tool_policy.TOOL_CLASSES"
    )


def test_the_tools_that_reach_other_sessions_are_never_bookkeeping() -> None:
    for name in ("ListAgents", "ListPeers", "SendMessage", "RemoteTrigger"):
        assert TOOL_CLASSES[name][0] is ToolClass.CROSS_SESSION
    for name in ("CronCreate", "ScheduleWakeup", "Monitor", "EnterWorktree", "SendUserMessage"):
        assert TOOL_CLASSES[name][0] is ToolClass.REFUSED
    assert all(reason for _, reason in TOOL_CLASSES.values())  # every entry says what the tool reaches
