"""`replaydesk up` as a user runs it: a real process tree, real servers, real signals."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from console import runtime
from console.management.commands.up import DEMO_EVENTS, DEMO_USERS
from demo.services import demo_history
from tests.ports import free_port

REPLAYDESK = str(Path(sys.executable).with_name("replaydesk"))
READY = re.compile(r"Replaydesk is up at (http://\S+)")
PASSWORD = re.compile(r"Log in as admin with password (\S+)")

pytestmark = pytest.mark.timeout(180)


def test_children_get_plain_http_settings_unless_the_user_chose_otherwise():
    assert runtime.child_environment({"PATH": "/bin"}) | {"PATH": "/bin"} == {
        "PATH": "/bin",
        "SECURE_SSL_REDIRECT": "false",
        "SECURE_COOKIES": "false",
        "PYTHONUNBUFFERED": "1",
    }
    chosen = runtime.child_environment({"SECURE_SSL_REDIRECT": "true", "SECURE_COOKIES": "1"})
    assert (chosen["SECURE_SSL_REDIRECT"], chosen["SECURE_COOKIES"]) == ("true", "1")


def test_stop_kills_a_child_tree_that_ignores_sigterm(tmp_path):
    stubborn = (
        "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
        "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']); time.sleep(60)"
    )
    child = runtime.Child("stubborn", [sys.executable, "-c", stubborn], tmp_path / "stubborn.log")
    supervisor = runtime.Supervisor([child], env=dict(os.environ), stop_timeout=1)
    supervisor.start()
    deadline = time.monotonic() + 10
    while len(psutil.Process(child.process.pid).children()) < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    tree = [psutil.Process(child.process.pid), *psutil.Process(child.process.pid).children(recursive=True)]
    assert len(tree) == 2

    started = time.monotonic()
    assert supervisor.stop() == []

    assert time.monotonic() - started < 8
    assert survivors(tree, timeout=1) == []
    assert child.process.returncode == -signal.SIGKILL


def up_environment(home: Path, **overrides: str) -> dict[str, str]:
    """The user's environment for a zero-config start: none of the test session's servers or settings."""
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    # The session sets these for its own clients; `up` must do without them (the HTTPS ones it turns
    # off by itself; the demo's sink is admitted by `up --demo` itself).
    session_only = ("SECURE_SSL_REDIRECT", "SECURE_COOKIES", "DJANGO_ALLOW_ASYNC_UNSAFE", "REPLAYDESK_DEMO")
    for name in (*session_only, "REPLAYDESK_SINK_ALLOW"):
        env.pop(name, None)
    return {**env, "REPLAYDESK_HOME": str(home), **overrides}


@dataclass
class Up:
    process: subprocess.Popen
    lines: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, env: dict[str, str], *args: str) -> Up:
        process = subprocess.Popen(
            [REPLAYDESK, "up", *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        run = cls(process)
        threading.Thread(target=run._read, daemon=True).start()
        return run

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_ready(self, timeout: float = 120) -> str:
        """The URL `up` printed once /readyz answered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = READY.search(self.output)
            if found:
                return found.group(1)
            if self.process.poll() is not None:
                time.sleep(0.2)  # let the reader catch up
                pytest.fail(f"up exited with {self.process.returncode} before it was ready:\n{self.output}")
            time.sleep(0.2)
        pytest.fail(f"up was not ready within {timeout} s:\n{self.output}")

    def tree(self) -> list[psutil.Process]:
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def stop(self, timeout: float = 60) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"up did not exit within {timeout} s of SIGTERM:\n{self.output}")


def cmdline(process: psutil.Process) -> list[str]:
    """Its command line, or nothing for a process that has ended since it was listed."""
    try:
        return process.cmdline()
    except psutil.NoSuchProcess:
        return []


def processes_of(home: Path) -> list[psutil.Process]:
    """Processes that name this home (PostgreSQL is daemonized, so not in up's tree), and their children."""
    markers = [str(home)]
    pointer = home / "redis" / "socket-dir"  # where a deep home keeps its Redis socket
    if pointer.exists():
        markers.append(pointer.read_text().strip())
    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if process.pid != os.getpid() and any(marker in cmdline for marker in markers):
            found.append(process)
            try:
                found.extend(process.children(recursive=True))
            except psutil.NoSuchProcess:
                pass
    return found


def servers_of(home: Path) -> list[psutil.Process]:
    """The embedded PostgreSQL and Redis of this home."""
    return [p for p in processes_of(home) if p.name().startswith(("postgres", "redis-server"))]


def survivors(processes: list[psutil.Process], timeout: float = 10) -> list[str]:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    return [f"{p.pid} {' '.join(p.cmdline())}" for p in alive]


def clean_up(run: Up | None, home: Path) -> None:
    """After a failed test: nothing of it may outlive the test session."""
    processes = processes_of(home)
    if run is not None and run.process.poll() is None:
        processes += run.tree()
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    if run is not None and run.process.poll() is None:
        run.process.wait(10)


def browser() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def log_in(url: str, username: str, password: str) -> urllib.request.OpenerDirector:
    session = browser()
    with session.open(url + "login/", timeout=10) as page:
        assert page.status == 200
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.read().decode())
    assert csrf, "the login page has no CSRF token"
    form = urllib.parse.urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": csrf.group(1)}
    ).encode()
    with session.open(url + "login/", data=form, timeout=10) as landed:
        assert landed.status == 200
        assert urllib.parse.urlsplit(landed.url).path == "/dashboard/", "the login did not go through"
    return session


def token_for(env: dict[str, str], username: str) -> str:
    done = subprocess.run(
        [REPLAYDESK, "token", username], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return done.stdout.strip()


def count_events(url: str, token: str) -> int:
    """The demo's events (users and groups; the console's own audit events are not the demo's)."""
    return sum(count_category(url, token, category) for category in ("user", "group"))


def count_category(url: str, token: str, category: str) -> int:
    count, cursor = 0, None
    while True:
        query = urllib.parse.urlencode(
            {"limit": 1000, "category": category, **({"cursor": cursor} if cursor else {})}
        )
        request = urllib.request.Request(
            f"{url}api/v1/events?{query}", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            page = json.load(response)
        count += len(page["results"])
        cursor = page["next"]
        if cursor is None:
            return count


def caught_up_consumers(url: str, token: str, timeout: float = 90) -> list[dict]:
    """The consumers, once every one has applied the whole log (the worker and dispatcher at work)."""
    deadline = time.monotonic() + timeout
    while True:
        request = urllib.request.Request(
            f"{url}api/v1/consumers", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            consumers = json.load(response)["results"]
        if consumers and all(c["lag_events"] == 0 and c["checkpoint"] == c["head"] for c in consumers):
            return consumers
        assert time.monotonic() < deadline, consumers
        time.sleep(0.5)


@dataclass
class FirstRun:
    home: Path
    output: str
    exit_code: int
    processes: list[psutil.Process]  # up's tree and the servers, while it ran
    commands: list[str]
    events: int
    group_streams: int
    consumers: list[dict]


@pytest.fixture(scope="module")
def home():
    # Short, so that the Redis and PostgreSQL sockets fit inside it (AF_UNIX paths are short).
    path = Path(tempfile.mkdtemp(prefix="rd-up-"))
    yield path
    clean_up(None, path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def first_run(home) -> FirstRun:
    """`up --demo` on an empty home, used the way a person would, then stopped with SIGTERM."""
    env = up_environment(home)
    run = Up.start(env, "--port", str(free_port()), "--demo")
    try:
        url = run.wait_ready()
        password = PASSWORD.search(run.output)
        assert password, run.output
        session = log_in(url, "admin", password.group(1))
        with session.open(url + "api/v1/streams?category=group&limit=1000", timeout=10) as response:
            group_streams = len(json.load(response)["results"])
        token = token_for(env, "admin")
        events = count_events(url, token)
        consumers = caught_up_consumers(url, token)
        processes = run.tree() + processes_of(home)
        commands = [" ".join(command) for command in map(cmdline, processes) if command]
        exit_code = run.stop()
    finally:
        clean_up(run, home)
    return FirstRun(home, run.output, exit_code, processes, commands, events, group_streams, consumers)


def test_first_up_prints_the_admin_password_that_logs_in_over_plain_http(first_run):
    assert PASSWORD.search(first_run.output)
    assert first_run.group_streams == 30  # read with the session the login gave
    assert "behind HTTPS" in first_run.output


def test_first_up_runs_embedded_servers_the_web_server_a_worker_beat_and_the_dispatcher(first_run):
    home = str(first_run.home)

    def running(*parts: str) -> list[str]:
        return [c for c in first_run.commands if all(part in c for part in parts)]

    assert "embedded PostgreSQL and Redis" in first_run.output
    starting = (
        "Starting the web server (gunicorn), the Celery worker, Celery beat and the consumer dispatcher…"
    )
    assert starting in first_run.output
    assert running("postgres", "-D", f"{home}/postgres")
    assert running("redis-server", home)
    assert len(running("gunicorn", "console.wsgi")) == 3  # the master and two workers
    assert len(running("celery", "worker", "--queues default,live,recovery")) == 5  # and its pool of four
    assert running("celery", "beat", f"--schedule {home}/celerybeat-schedule")
    assert running("console.cli", "dispatch")


def test_the_demo_projections_and_its_sink_catch_up_with_the_demo_on_their_own(first_run):
    by_name = {c["name"]: c for c in first_run.consumers}
    assert {"users_directory", "access", "search_index"} <= set(by_name)
    assert all(c["health"] == "healthy" for c in by_name.values())


def test_demo_flag_loads_the_demo(first_run):
    expected = sum(len(append.events) for append in demo_history(users=DEMO_USERS, events=DEMO_EVENTS))

    assert first_run.events == expected
    assert f"Loaded demo data: {expected:,} events" in first_run.output
    # One number format: 1,500 users beside 1,530 streams, not 1500.
    assert f"({DEMO_USERS:,} users, " in first_run.output


def test_sigterm_stops_every_process_of_the_tree_and_the_servers(first_run):
    assert first_run.exit_code == 0, first_run.output
    assert "Stopped." in first_run.output
    assert survivors(first_run.processes) == []
    assert processes_of(first_run.home) == []


def test_second_up_reuses_the_data(first_run, home):
    env = up_environment(home)
    run = Up.start(env, "--port", str(free_port()), "--demo")
    try:
        url = run.wait_ready()
        events = count_events(url, token_for(env, "admin"))
        tree = run.tree() + processes_of(home)
        assert run.stop() == 0, run.output
    finally:
        clean_up(run, home)

    assert not PASSWORD.search(run.output)
    assert "Log in as admin: that user exists already" in run.output
    assert "Demo data already loaded" in run.output
    assert events == first_run.events
    assert survivors(tree) == []


def test_up_refuses_a_port_in_use_and_leaves_nothing_running(first_run, home):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = Up.start(up_environment(home), "--port", str(port))
        try:
            exit_code = run.process.wait(60)
        finally:
            clean_up(run, home)

    assert exit_code != 0
    assert f"port {port} on 127.0.0.1 is already in use" in run.output
    assert "--port" in run.output
    assert survivors(processes_of(home)) == []


def test_a_child_that_dies_is_started_again_and_one_that_keeps_dying_stops_everything(first_run, home):
    run = Up.start(up_environment(home), "--port", str(free_port()))
    killed: list[int] = []
    try:
        url = run.wait_ready()
        tree = run.tree() + processes_of(home)
        deadline = time.monotonic() + 60
        while run.process.poll() is None and time.monotonic() < deadline:
            beats = [p for p in run.tree() if "beat" in cmdline(p) and p.pid not in killed]
            if beats:
                if len(killed) == 1:
                    # Started again after one crash: the console kept serving all along.
                    with urllib.request.urlopen(url + "healthz", timeout=10) as response:
                        assert response.status == 200
                beats[0].kill()
                killed.append(beats[0].pid)
                tree += beats
            time.sleep(0.1)
        exit_code = run.process.wait(30)
    finally:
        clean_up(run, home)

    assert len(killed) == runtime.MAX_CRASHES
    assert "Celery beat was killed by SIGKILL unexpectedly; starting it again in 1 s" in run.output
    assert "Celery beat was killed by SIGKILL unexpectedly, so everything was stopped" in run.output
    assert f"it had crashed {runtime.MAX_CRASHES} times within 60 s" in run.output
    assert exit_code != 0
    assert survivors(tree) == []
    assert processes_of(home) == []


def sleeper(tmp_path: Path, name: str = "sleeper") -> runtime.Child:
    return runtime.Child(
        name, [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / f"{name}.log"
    )


def test_the_supervisor_restarts_a_crashed_child_with_growing_pauses_then_gives_up(tmp_path, monkeypatch):
    monkeypatch.setattr(runtime, "RESTART_PAUSE", 0.05)
    child = sleeper(tmp_path)
    restarts: list[tuple[int, float]] = []
    supervisor = runtime.Supervisor(
        [child], env=dict(os.environ), on_restart=lambda c, code, pause: restarts.append((code, pause))
    )
    supervisor.start()
    try:
        for _ in range(runtime.MAX_CRASHES - 1):
            crashed = child.process.pid
            child.process.kill()
            deadline = time.monotonic() + 10
            while child.process.pid == crashed and time.monotonic() < deadline:
                supervisor.check()
                time.sleep(0.01)
            assert child.process.pid != crashed and child.process.poll() is None
        child.process.kill()
        child.process.wait(5)
        with pytest.raises(runtime.ChildExited):
            supervisor.check()
    finally:
        supervisor.stop()

    assert restarts == [(-signal.SIGKILL, 0.05), (-signal.SIGKILL, 0.1), (-signal.SIGKILL, 0.2)]
    assert child.log.read_text().count("started again by replaydesk up") == runtime.MAX_CRASHES - 1


def test_the_log_tail_of_a_dead_child_is_of_this_run_only(tmp_path):
    child = runtime.Child(
        "web", [sys.executable, "-c", "print('this run'); raise SystemExit(3)"], tmp_path / "web.log"
    )
    child.log.write_text("an old run's last words\n")
    supervisor = runtime.Supervisor([child], env={**os.environ, "PYTHONUNBUFFERED": "1"})
    supervisor.start()
    child.process.wait(10)

    assert runtime.tail(child.log, since=child.log_start) == "this run"
    assert "an old run" in runtime.tail(child.log)


def test_up_without_demo_serves_no_demo_and_runs_no_demo_consumer():
    home = Path(tempfile.mkdtemp(prefix="rd-nodemo-"))
    env = up_environment(home)
    run = Up.start(env, "--port", str(free_port()))
    try:
        url = run.wait_ready()
        token = token_for(env, "admin")
        request = urllib.request.Request(
            f"{url}api/v1/consumers", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            consumers = json.load(response)["results"]
        with pytest.raises(urllib.error.HTTPError) as demo_page:
            browser().open(url + "demo/search/", timeout=10)
        tree = run.tree() + processes_of(home)
        assert run.stop() == 0, run.output
    finally:
        clean_up(run, home)
        shutil.rmtree(home, ignore_errors=True)

    assert consumers == []
    assert demo_page.value.code == 404
    assert "Loading the demo data" not in run.output
    assert survivors(tree) == []


@pytest.fixture
def external_servers():
    """A database of its own on the session's PostgreSQL, and the spare Redis database."""
    from console import testing

    if testing.servers_embedded():
        pytest.skip("the session runs embedded servers; set DATABASE_URL and REDIS_URL to run this")
    import psycopg

    name = f"replaydesk_up_{uuid.uuid4().hex[:8]}"
    admin_url = urllib.parse.urlsplit(os.environ["DATABASE_URL"])._replace(path="/postgres").geturl()
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {
            "DATABASE_URL": urllib.parse.urlsplit(os.environ["DATABASE_URL"])
            ._replace(path=f"/{name}")
            .geturl(),
            "REDIS_URL": testing.spare_redis_url(),
        }
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_with_database_and_redis_urls_up_starts_no_embedded_server(external_servers, tmp_path):
    home = Path(tempfile.mkdtemp(prefix="rd-ext-"))
    run = Up.start(up_environment(home, **external_servers), "--port", str(free_port()))
    try:
        run.wait_ready()
        servers = servers_of(home)
        tree = run.tree()
        names = [p.name() for p in tree]
        assert run.stop() == 0, run.output
    finally:
        clean_up(run, home)
        shutil.rmtree(home, ignore_errors=True)

    assert "PostgreSQL and Redis from DATABASE_URL and REDIS_URL" in run.output
    assert servers == []
    assert not any(name.startswith(("redis-server", "postgres")) for name in names)
    assert not (home / "postgres").exists() and not (home / "redis").exists()
    assert survivors(tree) == []
