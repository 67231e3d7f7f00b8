# syntax=docker/dockerfile:1
# ccbridge: Claude Code in your team's chats.
#   docker build -t ccbridge .
#   docker run --rm -it -v ccbridge-data:/data -v "$PWD/config.yaml:/config/config.yaml:ro" --env-file .env ccbridge
# compose.yaml runs it for you (one instance with SQLite, or PostgreSQL + Redis with --profile shared).
FROM python:3.11-slim

# bubblewrap + socat: Claude Code's sandbox, in which ccbridge runs the Bash commands users approve.
# git: Claude Code works better in repositories. ca-certificates: TLS to the model and chat APIs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap socat git ca-certificates \
 && rm -rf /var/lib/apt/lists/*

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/ccbridge
COPY pyproject.toml README.md LICENSE run_bot.py ./
COPY core ./core
COPY adapters ./adapters
COPY bots ./bots
# Every platform and store; the claude-agent-sdk wheel bundles the Claude Code CLI, linked as `claude`
# (so `claude auth login` works in the container) and run once to prove it starts on this base.
RUN pip install '.[all]' \
 && ln -s "$(python -c 'import claude_agent_sdk, pathlib; print(pathlib.Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude")')" /usr/local/bin/claude \
 && HOME=/tmp claude --version && rm -rf /tmp/.claude* \
 && ccbridge --version

# A non-root user; everything it writes lives in the /data volume.
RUN useradd --create-home --home-dir /home/ccbridge --uid 10001 --user-group --shell /usr/sbin/nologin ccbridge \
 && mkdir -p /data /config \
 && chown ccbridge:ccbridge /data

ENV HOME=/home/ccbridge \
    CCBRIDGE_WORKSPACE__BASE_DIR=/data/workspaces \
    CCBRIDGE_AGENT__SESSIONS_DIR=/data/sessions \
    CCBRIDGE_STORE__PATH=/data/ccbridge.db \
    CLAUDE_CONFIG_DIR=/data/claude

VOLUME ["/data"]
USER ccbridge
WORKDIR /data

# The HTTP API bot's port, when it is enabled (set its host to 0.0.0.0 in config.yaml to serve outside).
EXPOSE 8080

# Probes CCBRIDGE_HEALTHCHECK_URL (e.g. http://127.0.0.1:8080/health of the HTTP API bot) when it is set;
# without it the container is healthy while ccbridge runs.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, sys, urllib.request; url = os.environ.get('CCBRIDGE_HEALTHCHECK_URL'); sys.exit(0 if not url or urllib.request.urlopen(url, timeout=4).status == 200 else 1)"]

ENTRYPOINT ["ccbridge"]
CMD ["--config", "/config/config.yaml"]
