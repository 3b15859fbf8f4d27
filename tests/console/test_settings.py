"""Settings come from the environment, and the production posture passes Django's deploy checks."""

import os
import secrets
import subprocess
import sys
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
