"""The supervisor behind `replaydesk up`: the web server, a Celery worker and Celery beat as child
processes, watched until Ctrl-C or SIGTERM, then stopped with everything they started.

The embedded PostgreSQL and Redis are not ours to stop: console/cli.py started them before Django ran,
and stops them after this returns, so they stay up while the children shut down.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import psutil
from django.conf import settings

from core.processes import die_with_parent

ADMIN_USERNAME = "admin"
# Where `replaydesk up` listens unless told otherwise.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Celery's warm shutdown waits for running tasks; tasks run in slices, so this is plenty.
STOP_TIMEOUT = 20.0
READY_TIMEOUT = 120.0
# A child that dies is started again after a pause that doubles (1, 2, 4 s): one crash is no outage on
# a single machine. This many crashes of one child within CRASH_WINDOW stop everything instead.
MAX_CRASHES = 4
CRASH_WINDOW = 60.0
RESTART_PAUSE = 1.0
_HTTP_DEFAULTS = {"SECURE_SSL_REDIRECT": "false", "SECURE_COOKIES": "false"}


class StartupError(Exception):
    """`up` cannot start; the message says why and what to do."""


@dataclass
class Child:
    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen | None = field(default=None, repr=False)
    # Where this run's lines start in the log (earlier runs' lines come before), when it last crashed,
    # and when it is due to start again.
    log_start: int = 0
    crashes: list[float] = field(default_factory=list)
    restart_at: float | None = None


@dataclass(frozen=True)
class Admin:
    username: str
    password: str | None  # only on the run that created the user


def ensure_admin() -> Admin:
    """Create the `admin` superuser with a random password the first time; later runs leave it alone."""
    from django.contrib.auth import get_user_model

    User = get_user_model()
    if User.objects.filter(username=ADMIN_USERNAME).exists():
        return Admin(ADMIN_USERNAME, None)
    password = secrets.token_urlsafe(12)
    User.objects.create_superuser(ADMIN_USERNAME, email="", password=password)
    return Admin(ADMIN_USERNAME, password)


def check_port_free(host: str, port: int) -> None:
    """Fail before anything starts when the web server could not bind (gunicorn would retry for 5 s
    and then die with a message lost among the others)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise StartupError(
                    f"port {port} on {host} is already in use (another `replaydesk up`?); "
                    "stop that server or choose another port with --port"
                ) from None
            raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def child_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The children's environment: ours, with the HTTPS-only settings off unless the user chose them,
    because `up` serves plain HTTP and a Secure cookie or an https redirect would make login fail."""
    env = dict(os.environ if base is None else base)
    for name, value in _HTTP_DEFAULTS.items():
        env.setdefault(name, value)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def children(*, host: str, port: int, home: Path, schedule: Path | str) -> list[Child]:
    """gunicorn, a Celery worker for every queue and Celery beat, each logging to home/logs/."""
    python = sys.executable
    logs = home / "logs"
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    threads = str(settings.REPLAYDESK_WEB_THREADS)  # the read-wait caps are derived from it
    return [
        Child(
            "web",
            [
                *(python, "-m", "gunicorn", "console.wsgi"),
                *("--bind", bind, "--workers", "2", "--threads", threads),
                *("--graceful-timeout", "5", "--timeout", "60", "--log-level", "warning"),
            ],
            logs / "web.log",
        ),
        Child(
            "worker",
            [
                *(python, "-m", "celery", "-A", "console", "worker"),
                *("--queues", "default,live,recovery", "--concurrency", "4", "--loglevel", "INFO"),
                *("--hostname", f"replaydesk-{port}@%h"),
            ],
            logs / "worker.log",
        ),
        Child(
            "beat",
            [
                *(python, "-m", "celery", "-A", "console", "beat"),
                *("--schedule", str(schedule), "--loglevel", "INFO"),
            ],
            logs / "beat.log",
        ),
        # Wakes consumers the moment events are appended (LISTEN/NOTIFY).
        Child("dispatch", [python, "-m", "console.cli", "dispatch"], logs / "dispatch.log"),
    ]


class ChildExited(Exception):
    def __init__(self, child: Child):
        self.child = child
        super().__init__(f"{child.name} exited with code {child.process.returncode}")


Restarted = Callable[[Child, int, float], None]


class Supervisor:
    """Starts the children, starts one again when it dies (with a growing pause; repeated crashes stop
    everything), and stops the whole process tree of each."""

    def __init__(
        self,
        children: list[Child],
        *,
        env: Mapping[str, str],
        stop_timeout: float = STOP_TIMEOUT,
        on_restart: Restarted | None = None,
    ):
        self.children = children
        self.env = dict(env)
        self.stop_timeout = stop_timeout
        # Told (child, its exit code, the pause before it starts again) when a crashed child is restarted.
        self.on_restart = on_restart
        self.stop_requested = threading.Event()
        self._hurry = threading.Event()
        self._previous_handlers: dict[int, object] = {}

    def __enter__(self) -> Supervisor:
        # SIGHUP too: a closed terminal should stop everything, not orphan it.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.stop()
        finally:
            for signum, handler in self._previous_handlers.items():
                signal.signal(signum, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # The first Ctrl-C stops gracefully; a second one means "now".
        if self.stop_requested.is_set():
            self._hurry.set()
        self.stop_requested.set()

    def start(self) -> None:
        for child in self.children:
            self._launch(child, "started by replaydesk up")

    def _launch(self, child: Child, why: str) -> None:
        child.log.parent.mkdir(parents=True, exist_ok=True)
        with child.log.open("ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} {why}\n".encode())
            child.log_start = log.tell()
            child.process = subprocess.Popen(
                child.argv,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Own process group: a Ctrl-C in the terminal reaches only us, and we stop the children
                # in order instead of all at once.
                process_group=0,
                preexec_fn=die_with_parent,
            )

    def check(self) -> None:
        """Start again a child that is gone although nobody asked it to stop, after its pause; raise
        ChildExited when it has crashed MAX_CRASHES times within CRASH_WINDOW."""
        now = time.monotonic()
        for child in self.children:
            if child.process is None or child.process.poll() is None:
                continue
            if child.restart_at is None:
                child.crashes = [at for at in child.crashes if now - at < CRASH_WINDOW] + [now]
                if len(child.crashes) >= MAX_CRASHES:
                    raise ChildExited(child)
                # What it started and left behind (a dead gunicorn master's workers) would hold its port.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(child.process.pid, signal.SIGKILL)
                pause = RESTART_PAUSE * 2 ** (len(child.crashes) - 1)
                child.restart_at = now + pause
                if self.on_restart is not None:
                    self.on_restart(child, child.process.returncode, pause)
            elif now >= child.restart_at:
                child.restart_at = None
                code = child.process.returncode
                self._launch(child, f"started again by replaydesk up (it had exited with code {code})")

    def wait_ready(self, url: str, *, host_header: str, timeout: float = READY_TIMEOUT) -> bool:
        """Poll `url` until it answers 200. False when a stop was requested first; raises ChildExited
        when a child dies and TimeoutError when the time is up."""
        deadline = time.monotonic() + timeout
        request = urllib.request.Request(url, headers={"Host": host_header})
        while not self.stop_requested.is_set():
            self.check()
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass  # not listening yet, or 503 while the database or Redis is unreachable
            if time.monotonic() > deadline:
                raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f} s")
            self.stop_requested.wait(0.25)
        return False

    def wait(self) -> None:
        """Block until a stop is requested; raises ChildExited when a child dies first."""
        while not self.stop_requested.wait(0.5):
            self.check()

    def stop(self) -> list[psutil.Process]:
        """SIGTERM every child, wait for its whole tree, SIGKILL what is left. Returns the survivors
        that could not be killed (none, in practice)."""
        started = [child for child in self.children if child.process is not None]
        alive = self._tree(started)
        for child in started:
            if child.process.poll() is None:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        while alive and time.monotonic() < deadline and not self._hurry.is_set():
            time.sleep(0.1)
            # Children may fork while stopping (a gunicorn master replacing a worker): look again.
            alive = [p for p in _union(alive, self._tree(started)) if _alive(p)]
        for process in alive:
            _signal(process, signal.SIGKILL)
        own = {child.process.pid for child in started}
        for child in started:
            # Popen reaps its own children, so that their exit codes stay known.
            try:
                child.process.wait(5)
            except subprocess.TimeoutExpired:
                pass
        _, survivors = psutil.wait_procs([p for p in alive if p.pid not in own and _alive(p)], timeout=5)
        return survivors + [psutil.Process(c.process.pid) for c in started if c.process.poll() is None]

    @staticmethod
    def _tree(started: list[Child]) -> list[psutil.Process]:
        # Only children not yet reaped: the pid of a reaped one may already belong to someone else.
        return _trees([child.process.pid for child in started if child.process.poll() is None])


def tail(path: Path, lines: int = 20, *, since: int = 0) -> str:
    """The last lines of a log, from byte `since` on (a child's own run, not earlier runs')."""
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(since, handle.tell() - 16384))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def connect_host(bind_host: str) -> str:
    """The address this machine reaches a server on that listens on bind_host (any address: loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bind_host, bind_host)


def probe_host(bind_host: str, allowed_hosts: list[str]) -> tuple[str, str]:
    """Where to probe the server, and the Host header to send, so that ALLOWED_HOSTS accepts it."""
    connect = connect_host(bind_host)
    candidates = [connect, bind_host, *allowed_hosts]
    for name in candidates:
        if name and (name in allowed_hosts or "*" in allowed_hosts):
            return connect, name
    named = [h.lstrip(".") for h in allowed_hosts if h and h != "*"]
    return connect, (named[0] if named else connect)


def url_for(host: str, port: int, path: str = "/") -> str:
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}{path}"


def _trees(pids: list[int]) -> list[psutil.Process]:
    found: list[psutil.Process] = []
    for pid in pids:
        try:
            process = psutil.Process(pid)
            found.append(process)
            found.extend(process.children(recursive=True))
        except psutil.NoSuchProcess:
            continue
    return found


def _union(*groups: list[psutil.Process]) -> list[psutil.Process]:
    # psutil.Process compares by pid and creation time, so a reused pid is a different process.
    seen: dict[tuple[int, float], psutil.Process] = {}
    for group in groups:
        for process in group:
            try:
                seen.setdefault((process.pid, process.create_time()), process)
            except psutil.NoSuchProcess:
                continue
    return list(seen.values())


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal(process: psutil.Process, signum: int) -> None:
    try:
        process.send_signal(signum)  # refuses a pid that now belongs to another process
    except psutil.NoSuchProcess:
        pass
