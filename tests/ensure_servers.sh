#!/usr/bin/env bash
# Installs what the tests start, from Debian's packages, only when missing: redis-server and
# PostgreSQL (tests/servers.py), bubblewrap and socat (Claude Code's Bash sandbox), git (projects).
# Idempotent and quiet; `make test` runs it.
set -euo pipefail
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
if [ -z "${CCBRIDGE_PG_BIN:-}" ] && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
# Claude Code's Bash sandbox (the isolation tests run it): bubblewrap and socat
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
command -v socat >/dev/null 2>&1 || need+=(socat)
command -v git >/dev/null 2>&1 || need+=(git)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure_servers: please install ${need[*]} (the tests start them)" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq >/dev/null
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
