"""Small helpers for reading settings from the environment."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def default_home() -> Path:
    """REPLAYDESK_HOME, default ./var: where the embedded servers, the secret key and snapshots live."""
    return Path(os.environ.get("REPLAYDESK_HOME") or "var").expanduser().resolve()


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def redis_url_for_celery(url: str) -> str:
    """Celery's Redis transport spells a unix socket `redis+socket://`, and its database `virtual_host`
    (it ignores `db`); redis-py spells them `unix://` and `db`."""
    if not url.startswith("unix://"):
        return url
    path, _, query = url.removeprefix("unix://").partition("?")
    query = urlencode([("virtual_host" if key == "db" else key, value) for key, value in parse_qsl(query)])
    return f"redis+socket://{path}" + (f"?{query}" if query else "")


def local_secret_key(home: Path) -> str:
    """A key made once per home and kept there, so sessions survive a restart of a local console."""
    path = home / "secret_key"
    if path.exists():
        return path.read_text().strip()
    home.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(50)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key)
    return key
