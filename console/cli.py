"""The `replaydesk` command: Django's management commands, with the embedded servers started first
when DATABASE_URL / REDIS_URL are not set (see console/embedded.py)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

from console import embedded, runtime, user_apps
from console.env import default_home, env_list
from core import principals

# Commands that never touch the database or Redis start no server.
_OFFLINE = {
    "help",
    "--help",
    "-h",
    "version",
    "--version",
    "makemigrations",
    "check",
    "startapp",
    "startprojection",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # What a command appends (an import, an audit record) is recorded as appended by whoever runs it.
    principals.run_as(principals.command_line())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    # Children (gunicorn, Celery) must agree on the home whatever directory they run in.
    os.environ["REPLAYDESK_HOME"] = str(default_home())
    if wants_demo(argv):
        # Before the settings are read: they install the demo app only when asked (and so do children).
        os.environ["REPLAYDESK_DEMO"] = "1"
        admit_demo_receiver(argv)
    services = None
    want_db = not os.environ.get("DATABASE_URL")
    want_redis = not os.environ.get("REDIS_URL")
    if argv and argv[0] not in _OFFLINE and (want_db or want_redis):
        services = embedded.start(postgres=want_db, redis=want_redis)
        if want_db:
            os.environ["DATABASE_URL"] = services.database_url
        if want_redis:
            os.environ["REDIS_URL"] = services.redis_url
    # SIGTERM (and a closed terminal's SIGHUP) unwinds like Ctrl-C, so that the servers started here
    # are stopped on the way out.
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    try:
        from django.core.management import execute_from_command_line

        execute_from_command_line(["replaydesk", *argv])
    except KeyboardInterrupt:
        return 130  # Ctrl-C: a stop the user asked for, not a crash worth a traceback
    except ImproperlyConfigured as exc:
        # A setting or an app's declaration (REPLAYDESK_APPS, a projection breaking its contract) the
        # message names: what to fix, not a traceback.
        sys.stderr.write(f"replaydesk: {exc}\n")
        return 1
    except Exception as exc:
        failure = user_apps.failure_in(exc, env_list("REPLAYDESK_APPS", []))
        if failure is None:
            raise
        sys.stderr.write(f"replaydesk: {failure}\n")
        return 1
    finally:
        if services is not None:
            services.stop()
    return 0


def wants_demo(argv: list[str]) -> bool:
    """`replaydesk up --demo` and `replaydesk demo` install the demo."""
    return bool(argv) and (argv[0] == "demo" or (argv[0] == "up" and "--demo" in argv[1:]))


def admit_demo_receiver(argv: list[str]) -> None:
    """The demo's search index is a receiver on this machine, which sinks may not reach by default
    (streams/sink_destinations.py): its address, and no other, joins REPLAYDESK_SINK_ALLOW, before the
    settings are read and for the children too."""
    receiver = demo_receiver(argv)
    if receiver is not None:
        given = os.environ.get("REPLAYDESK_SINK_ALLOW", "").strip()
        os.environ["REPLAYDESK_SINK_ALLOW"] = f"{given},{receiver}" if given else receiver


def demo_receiver(argv: list[str]) -> str | None:
    """host:port of the demo's search index: this web server for `up --demo` (where `up` reaches it),
    the --search-index-url given to `demo`; None when there is none or the options are wrong (the
    command says so itself)."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--host", default=runtime.DEFAULT_HOST)
    parser.add_argument("--port", default=str(runtime.DEFAULT_PORT))
    parser.add_argument("--search-index-url")
    options, _ = parser.parse_known_args(argv[1:])
    if argv[0] == "up":
        host, port = runtime.connect_host(options.host), options.port
    elif options.search_index_url:
        parts = urlsplit(options.search_index_url)
        try:
            host, port = parts.hostname, str(parts.port or (443 if parts.scheme == "https" else 80))
        except ValueError:
            return None
    else:
        return None
    if not host or not port.isdigit():
        return None
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


if __name__ == "__main__":
    sys.exit(main())
