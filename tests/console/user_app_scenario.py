"""Run as a process of its own by tests/console/test_user_apps.py, with REPLAYDESK_APPS naming a package
built outside the repository: what an operator does with a projection of their own, one step after
another, printed as one JSON object for the test to judge.

Settings are read once per process, so REPLAYDESK_APPS cannot be changed inside the test session.
"""

from __future__ import annotations

import io
import json
import os
import sys

import django

NAME = "orders_by_customer"


def main() -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "console.settings")
    django.setup()

    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from core import principals
    from recovery.models import Job
    from streams.selectors import head
    from streams.services import append_events
    from streams.tasks import run_consumer, running_consumers
    from tests.conftest import person

    principals.run_as(principals.system("tests"))
    call_command("migrate", interactive=False, verbosity=0)

    def totals(schema: str = f"proj_{NAME}") -> dict[str, int]:
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT customer, orders FROM {schema}.totals")
            return dict(cursor.fetchall())

    found = {}
    # Discovered: the workers' tick makes it a consumer, as it does the product's own.
    found["running"] = running_consumers()
    # Live: events appended now reach its table when the worker's task runs it.
    for n, customer in enumerate(["ann", "bob", "ann"]):
        append_events(stream=f"order-{n}", events=[{"type": "OrderPlaced", "data": {"customer": customer}}])
    append_events(stream="invoice-1", events=[{"type": "InvoiceSent", "data": {"customer": "cy"}}])
    run_consumer(NAME)
    found["live"] = totals()
    lag = io.StringIO()
    call_command("lag", "--json", stdout=lag)
    found["lag"] = [json.loads(line) for line in lag.getvalue().splitlines()]
    found["head"] = head()
    # Replayed: a replay job rebuilds it from the log in a fresh schema and swaps it in.
    call_command("replay", NAME, "--reason", "check the rebuild", "--inline", stdout=io.StringIO())
    job = Job.objects.get(kind="replay")
    found["replay"] = {"state": job.state, "result": job.result, "totals": totals()}
    with connection.cursor() as cursor:
        cursor.execute("SELECT nspname FROM pg_namespace WHERE nspname LIKE %s ORDER BY 1", [f"proj_{NAME}%"])
        found["schemas"] = [row[0] for row in cursor.fetchall()]
    # Shown: its consumer page and the consumers API, to an operator.
    client = Client(HTTP_HOST="localhost")
    client.force_login(person("olivia", "operator"))
    page = client.get(f"/consumers/{NAME}/")
    found["page"] = {"status": page.status_code, "html": page.content.decode()}
    api = client.get(f"/api/v1/consumers/{NAME}")
    found["api"] = {"status": api.status_code, "json": api.json()}
    return found


if __name__ == "__main__":
    sys.stdout.write("\n" + json.dumps(main(), default=str) + "\n")
