"""A tiny stdio MCP server for tests: proves ``agent.mcp_servers`` reach Claude Code."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

server = MCPServer("facts")


@server.tool()
def lookup(topic: str) -> str:
    """Look up a fact about a topic."""
    return f"fact about {topic}: 42"


if __name__ == "__main__":
    server.run("stdio")
