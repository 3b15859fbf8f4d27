"""Settings come from the environment, and the production posture passes Django's deploy checks."""

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_manage(*args, **env):
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SECURE_") and k not in {"DEBUG", "SECRET_KEY"}
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_reports_nothing_with_debug_off_and_a_real_secret_key(tmp_path):
    result = run_manage(
        "check",
        "--deploy",
        "--fail-level",
        "DEBUG",
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(64),
        REPLAYDESK_HOME=str(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_a_bad_boolean_in_the_environment_is_a_clear_error(tmp_path):
    result = run_manage("check", DEBUG="maybe", REPLAYDESK_HOME=str(tmp_path))
    assert result.returncode != 0
    assert "DEBUG='maybe'" in result.stderr


def test_without_secret_key_a_local_key_is_made_once_and_kept(tmp_path):
    assert run_manage("check", REPLAYDESK_HOME=str(tmp_path)).returncode == 0
    key = (tmp_path / "secret_key").read_text()
    assert len(key) >= 50
    assert run_manage("check", REPLAYDESK_HOME=str(tmp_path)).returncode == 0
    assert (tmp_path / "secret_key").read_text() == key
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"


def test_celery_uses_the_redis_database_a_socket_url_names():
    """REDIS_URL=unix:///path?db=N: Celery's messages go to database N, with everything else in Redis
    (Celery's transport reads the database of a socket URL from `virtual_host` and ignores `db`)."""
    import redis
    from kombu import Connection

    from console.env import redis_url_for_celery
    from tests.chaos.helpers import redis_server_binary

    home = Path(tempfile.mkdtemp(prefix="rd-sock-"))  # short: a socket's path has at most 107 bytes
    sock = home / "redis.sock"
    server = subprocess.Popen(
        [redis_server_binary(), "--port", "0", "--unixsocket", str(sock), "--save", "", "--dir", str(home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not sock.exists():
            assert time.monotonic() < deadline and server.poll() is None, "redis-server did not start"
            time.sleep(0.05)
        with Connection(redis_url_for_celery(f"unix://{sock}?db=3")) as broker:
            queue = broker.SimpleQueue("recovery")
            queue.put({"job": 1})
            queue.close()
        assert redis.Redis(unix_socket_path=str(sock), db=3).llen("recovery") == 1
        assert redis.Redis(unix_socket_path=str(sock), db=0).dbsize() == 0
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(home, ignore_errors=True)
