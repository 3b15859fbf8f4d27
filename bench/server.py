"""The PostgreSQL the benchmark runs on, its own database there, and Django set up against it.

With DATABASE_URL the server it names is used (the database in the URL is only where we connect to
create ours); without it, the embedded server of `replaydesk up` (console/embedded.py).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
from psycopg.conninfo import conninfo_to_dict

DEFAULT_DATABASE = "rd_bench"
REDIS_DB = 10


@dataclass(frozen=True)
class Server:
    admin_url: str
    url: str
    database: str
    embedded: object | None = None

    def conninfo(self) -> dict:
        """Connection keywords for libraries that take them apart (eventsourcing's datastore)."""
        parts = conninfo_to_dict(self.url)
        return {
            "dbname": self.database,
            "host": parts.get("host", ""),
            "port": parts.get("port", 5432),
            "user": parts.get("user", "postgres"),
            "password": parts.get("password", ""),
        }


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


def connect(*, database: str = DEFAULT_DATABASE) -> Server:
    """The server, with a fresh database `database` on it (dropped first if it exists)."""
    embedded = None
    base = os.environ.get("DATABASE_URL")
    if not base:
        from console import embedded as embedded_servers

        embedded = embedded_servers.start(redis=False)
        base = embedded.database_url
    admin_url = _with_database(base, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{database}"')
    url = _with_database(base, database)
    return Server(admin_url=admin_url, url=url, database=database, embedded=embedded)


def environment(server: Server) -> dict[str, str]:
    """What every process of the run (this one, writers, gunicorn) needs in its environment."""
    redis = os.environ.get("REDIS_URL") or f"redis://127.0.0.1:6379/{REDIS_DB}"
    return {
        "DJANGO_SETTINGS_MODULE": "console.settings",
        "DATABASE_URL": server.url,
        "REDIS_URL": redis,
        # Jobs run inline here, with nobody to approve them.
        "REPLAYDESK_APPROVALS": "replay=0,restore=0,resync=0,snapshot=0,verify=0",
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_COOKIES": "false",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        # The API's per-user rate limits would measure the limit, not the API.
        "REPLAYDESK_RATE_APPEND": "off",
        "REPLAYDESK_RATE_WRITE": "off",
        "REPLAYDESK_RATE_SUBSCRIBE": "off",
        "REPLAYDESK_RATE_READ": "off",
        "REPLAYDESK_SNAPSHOT_DIR": snapshot_dir(server),
        # The sources section's scratch databases are on the run's own server.
        "REPLAYDESK_SOURCE_ALLOW": "127.0.0.0/8,::1,localhost",
    }


def snapshot_dir(server: Server) -> str:
    """Snapshots taken by the run go to a directory of its own, removed with the database."""
    path = Path(tempfile.gettempdir()) / f"{server.database}-snapshots"
    path.mkdir(exist_ok=True)
    return str(path)


def setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django

    django.setup()
    from core import principals

    # The run's jobs and their audit records are appended in this process (core/principals.py).
    principals.run_as(principals.system("bench"))


def migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def drop(server: Server) -> None:
    shutil.rmtree(snapshot_dir(server), ignore_errors=True)
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{server.database}" WITH (FORCE)')


def version(url: str) -> str:
    with psycopg.connect(url) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def web_server(argv: list[str], env: dict[str, str], port: int) -> subprocess.Popen:
    """A web server of the run (gunicorn with `argv`), once it answers /healthz on `port`."""
    process = subprocess.Popen(
        argv,
        env={**os.environ, **env, "PYTHONWARNINGS": "ignore"},
        cwd=Path(__file__).resolve().parent.parent,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        time.sleep(0.2)
    stop_web_server(process)
    raise RuntimeError("gunicorn did not answer /healthz within 60 s")


def up_web_argv(port: int) -> list[str]:
    """gunicorn as `replaydesk up` starts it (console/runtime.py: its workers, threads and timeouts),
    bound to `port` on the loopback."""
    from console import runtime

    home = Path(tempfile.gettempdir())  # where `up` would put the children's logs: not used here
    children = runtime.children(host="127.0.0.1", port=port, home=home, schedule="-")
    return list(next(child for child in children if child.name == "web").argv)


def stop_web_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
