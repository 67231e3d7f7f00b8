"""Real servers for the store tests: ``redis-server`` and PostgreSQL, on free 127.0.0.1 ports.

Both listen on 127.0.0.1 only (PostgreSQL's socket is in its own data directory),
keep their data in a temporary directory, and are stopped by whoever started them.
Redis keeps an append-only file, so a server stopped and started again (the fault
tests) still has its data, as a production Redis would.

PostgreSQL refuses to run as root: as root, the servers run as the system user
``ccbridge-test`` (created when missing). ``initdb`` is slow (~2 s), so it runs once
per test session into a template directory (under a file lock shared by the xdist
workers) that each server copies.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg


def _pg_bin() -> Path:
    """$CCBRIDGE_PG_BIN, else the newest /usr/lib/postgresql/<version>/bin (Debian's layout)."""
    if os.environ.get("CCBRIDGE_PG_BIN"):
        return Path(os.environ["CCBRIDGE_PG_BIN"])
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0
    )
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
PG_USER = "ccbridge-test"
PG_SUPERUSER = "ccbridge"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for(probe: object, what: str, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if probe():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start within {seconds:g}s")


class RedisServer:
    """``redis-server`` on 127.0.0.1, with an append-only file in ``workdir``."""

    def __init__(
        self, workdir: Path, port: int | None = None, password: str | None = None, *, tls: bool = False
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed: run tests/ensure_servers.sh (make test does)")
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.password = password  # requirepass: clients must AUTH
        self.tls = tls  # TLS only (no plain port), with a certificate of a CA of its own: ca_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def ca_file(self) -> Path:
        return self.workdir / "tls" / "ca.crt"

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        if self.tls:
            return f"rediss://{auth}127.0.0.1:{self.port}/0?ssl_ca_certs={self.ca_file}"
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def _make_certificates(self) -> list[str]:
        """A CA and a server certificate for 127.0.0.1 (openssl), as redis-server's TLS arguments."""
        tls = self.ca_file.parent
        tls.mkdir(parents=True, exist_ok=True)

        def openssl(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=tls, check=True, capture_output=True)

        new_key = ["-newkey", "rsa:2048", "-nodes"]
        openssl(
            "req",
            "-x509",
            *new_key,
            "-days",
            "2",
            "-subj",
            "/CN=ccbridge test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        )
        openssl("req", *new_key, "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
        (tls / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", "san.ext", "-out", "server.crt")  # fmt: skip
        return ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(tls / "server.crt"),
                "--tls-key-file", str(tls / "server.key"), "--tls-ca-cert-file", str(self.ca_file),
                "--tls-auth-clients", "no"]  # fmt: skip

    def _connect(self) -> socket.socket:
        conn = socket.create_connection(("127.0.0.1", self.port), timeout=0.2)
        if not self.tls:
            return conn
        import ssl

        context = ssl.create_default_context(cafile=str(self.ca_file))
        return context.wrap_socket(conn, server_hostname="127.0.0.1")

    def _pong(self) -> bool:
        hello = f"AUTH {self.password}\r\nPING\r\n" if self.password else "PING\r\n"
        try:
            with self._connect() as conn:
                conn.sendall(hello.encode())
                answer = b""
                while b"PONG" not in answer and not answer.startswith(b"-"):
                    chunk = conn.recv(64)
                    if not chunk:
                        break
                    answer += chunk
                return b"+PONG" in answer
        except OSError:
            return False

    def start(self) -> RedisServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--protected-mode", "yes", "--save", ""]
        if self.tls:
            args = [*self._make_certificates(), *args[2:]]
        args += ["--appendonly", "yes", "--appendfsync", "no", "--dir", str(self.workdir), "--daemonize", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(
            [self.binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        _wait_for(self._pong, f"redis-server on port {self.port}")
        return self

    def stop(self) -> None:
        """SIGTERM: the server writes its append-only file and exits."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


# -- PostgreSQL -----------------------------------------------------------------


def _pg_account() -> tuple[int, int] | None:
    """(uid, gid) to run PostgreSQL as: ``ccbridge-test`` when we are root, else None (ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
            check=True,
            capture_output=True,
        )
        entry = pwd.getpwnam(PG_USER)
    return entry.pw_uid, entry.pw_gid


def _as_pg_user(cmd: list[str], account: tuple[int, int] | None, **kw: object) -> subprocess.CompletedProcess[bytes]:
    if account is not None:
        uid, gid = account
        cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *cmd]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": "/tmp"}
    return subprocess.run(cmd, env=env, capture_output=True, **kw)  # type: ignore[call-overload, no-any-return]


def _private_dir(prefix: str, account: tuple[int, int] | None) -> Path:
    """A directory the PostgreSQL account owns (outside pytest's root-only temp directories)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if account is not None:
        os.chown(path, *account)
    return path


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    with open(lock_file, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def pg_template(shared_dir: Path) -> Path:
    """An initialized PostgreSQL data directory in ``shared_dir``, made once for every worker of the session.

    It lives in pytest's temporary directory (removed with it); servers run on copies.
    """
    account = _pg_account()
    template = shared_dir / "pg-template"
    with _locked(shared_dir / "pg-template.lock"):
        if (template / "PG_VERSION").is_file():
            return template
        if not (PG_BIN / "initdb").is_file():
            raise RuntimeError(f"PostgreSQL is not installed in {PG_BIN}: run tests/ensure_servers.sh")
        base = _private_dir("ccbridge-pg-template-", account)
        try:
            done = _as_pg_user(
                [str(PG_BIN / "initdb"), "-D", str(base / "data"), "-U", PG_SUPERUSER, "--auth=trust", "-E", "UTF8"]
                + ["--no-sync", "--no-instructions"],
                account,
            )
            if done.returncode != 0:
                raise RuntimeError(f"initdb failed: {done.stderr.decode(errors='replace')}")
            shutil.rmtree(template, ignore_errors=True)
            shutil.move(base / "data", template)
        finally:
            shutil.rmtree(base, ignore_errors=True)
        return template


class PostgresServer:
    """A PostgreSQL server on 127.0.0.1 with its own copy of the template data directory."""

    def __init__(self, template: Path, port: int | None = None) -> None:
        self.account = _pg_account()
        self.base = _private_dir("ccbridge-pg-", self.account)
        self.data = self.base / "data"
        done = subprocess.run(["cp", "-a", str(template), str(self.data)], capture_output=True)
        if done.returncode != 0:
            raise RuntimeError(f"could not copy the PostgreSQL template: {done.stderr.decode(errors='replace')}")
        self.port = port or free_port()
        self.running = False

    def dsn(self, database: str = "postgres", password: str | None = None) -> str:
        auth = f"{PG_SUPERUSER}:{password}" if password else PG_SUPERUSER
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def start(self) -> PostgresServer:
        options = (
            f"-p {self.port} -k {self.base} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100 -c shared_buffers=16MB"
        )
        log = self.base / "server.log"
        done = _as_pg_user(
            [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(log), "-o", options, "-w", "-t", "30", "start"],
            self.account,
        )
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"PostgreSQL did not start: {done.stderr.decode(errors='replace')}{tail}")
        self.running = True
        return self

    def stop(self, mode: str = "fast") -> None:
        if self.running:
            _as_pg_user([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"], self.account)
            self.running = False

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.base, ignore_errors=True)


async def new_database(server: PostgresServer) -> str:
    """A DSN on an empty schema of its own (asyncpg sends unknown DSN parameters as server settings)."""
    name = f"t{uuid.uuid4().hex[:16]}"
    conn = await asyncpg.connect(server.dsn())
    try:
        await conn.execute(f'CREATE SCHEMA "{name}"')
    finally:
        await conn.close()
    return f"{server.dsn()}?search_path={name}"
