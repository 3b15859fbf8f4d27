from __future__ import annotations

import os
import signal

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from console import embedded, runtime

# What `up --demo` loads: enough to browse, page and chart, small enough to load in seconds.
DEMO_USERS = 1500
DEMO_EVENTS = 40_000

_ROLES = {
    "web": "the web server (gunicorn)",
    "worker": "the Celery worker",
    "beat": "Celery beat",
    "dispatch": "the consumer dispatcher",
}


class Command(BaseCommand):
    help = (
        "Start Replaydesk: migrate, then the web server, a Celery worker, Celery beat and the consumer "
        "dispatcher, until Ctrl-C. "
        "Without DATABASE_URL / REDIS_URL it runs embedded PostgreSQL and Redis under REPLAYDESK_HOME."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--host",
            default=runtime.DEFAULT_HOST,
            help=f"address to listen on (default {runtime.DEFAULT_HOST})",
        )
        parser.add_argument(
            "--port",
            type=int,
            default=runtime.DEFAULT_PORT,
            help=f"port to listen on (default {runtime.DEFAULT_PORT})",
        )
        parser.add_argument("--demo", action="store_true", help="load the demo data set if not loaded yet")

    def handle(self, *args, host: str, port: int, demo: bool, **options) -> None:
        home = settings.REPLAYDESK_HOME
        try:
            runtime.check_port_free(host, port)
        except runtime.StartupError as exc:
            raise CommandError(str(exc)) from None
        self.say(f"Replaydesk home: {home} ({self._servers()})")
        self.say("Migrating the database…")
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        admin = runtime.ensure_admin()
        connect, host_header = runtime.probe_host(host, settings.ALLOWED_HOSTS)
        if demo:
            self.say("Loading the demo data…")
            call_command(
                "demo",
                "--users",
                str(DEMO_USERS),
                "--events",
                str(DEMO_EVENTS),
                # The demo's downstream search index is served by this same web server.
                "--search-index-url",
                runtime.url_for(connect, port),
                stdout=self.stdout,
            )
        children = runtime.children(
            host=host, port=port, home=home, schedule=settings.CELERY_BEAT_SCHEDULE_FILENAME
        )
        supervisor = runtime.Supervisor(
            children, env=runtime.child_environment(), on_restart=self._restarting
        )
        # Every process it starts, by name: the dispatcher too, whose log a stuck consumer leads to.
        self.say(f"Starting {_listed([_ROLES.get(child.name, child.name) for child in children])}…")
        announced = False
        try:
            with supervisor:
                supervisor.start()
                if supervisor.wait_ready(runtime.url_for(connect, port, "/readyz"), host_header=host_header):
                    self._announce(runtime.url_for(connect, port), host, admin)
                    announced = True
                    supervisor.wait()
                self.say("Stopping…")
        except runtime.ChildExited as exc:
            raise CommandError(self._explain_exit(exc.child, host, port)) from None
        except TimeoutError as exc:
            raise CommandError(f"{exc}; see the logs in {home / 'logs'}") from None
        finally:
            if admin.password and not announced:
                # The only chance to see it: it is never shown again.
                self.say(f"The admin user was created with password {admin.password}")
        self.say("Stopped.")

    def say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()  # the line must reach a pipe now, not at exit

    def _servers(self) -> str:
        services = embedded.current()
        if services is None:
            return "PostgreSQL and Redis from DATABASE_URL and REDIS_URL"
        started = [
            name
            for name, url in (("PostgreSQL", services.database_url), ("Redis", services.redis_url))
            if url
        ]
        return f"embedded {' and '.join(started)}"

    def _announce(self, url: str, host: str, admin: runtime.Admin) -> None:
        lines = [f"Replaydesk is up at {url}"]
        if admin.password:
            lines.append(
                f"  Log in as {admin.username} with password {admin.password}"
                f" (shown only this once; `replaydesk changepassword {admin.username}` sets another)"
            )
        else:
            lines.append(
                f"  Log in as {admin.username}: that user exists already; its password was shown on the"
                f" first run (`replaydesk changepassword {admin.username}` sets another)"
            )
        lines.append(f"  API: {url}api/docs/ ; a token for it: `replaydesk token {admin.username}`")
        lines.append(
            "  Replays, restores and resyncs need a second person's approval; add people with "
            "`replaydesk user NAME --role operator|approver|support|admin` (password on standard input)"
        )
        lines.append(f"  Logs: {settings.REPLAYDESK_HOME / 'logs'}")
        if host not in ("127.0.0.1", "localhost", "::1") and "ALLOWED_HOSTS" not in os.environ:
            lines.append("  Set ALLOWED_HOSTS to the names that clients use to reach this machine.")
        lines.append(
            "  Note: this serves plain HTTP for local use; in production run Replaydesk behind HTTPS."
        )
        lines.append("  Press Ctrl-C to stop.")
        self.say("\n".join(lines))

    def _restarting(self, child: runtime.Child, code: int, pause: float) -> None:
        self.say(
            f"{_ROLES.get(child.name, child.name)} {_how(code)} unexpectedly; starting it again in "
            f"{pause:g} s (its log: {child.log})"
        )

    def _explain_exit(self, child: runtime.Child, host: str, port: int) -> str:
        why = (
            f"{_ROLES.get(child.name, child.name)} {_how(child.process.returncode)} unexpectedly, so "
            f"everything was stopped: it had crashed {len(child.crashes)} times within "
            f"{runtime.CRASH_WINDOW:g} s."
        )
        if child.name == "web":
            why += f" If it could not listen on {host}:{port}, choose another port with --port."
        last = runtime.tail(child.log, since=child.log_start)
        return f"{why}\nLast lines of {child.log} from this run:\n{last}" if last else why


def _how(code: int) -> str:
    return f"was killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"


def _listed(names: list[str]) -> str:
    """'a, b and c'."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
