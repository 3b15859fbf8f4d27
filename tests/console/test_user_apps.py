"""Your own projections: a package outside the repository, named in REPLAYDESK_APPS, is discovered,
applies live events, replays and shows on the pages; a package that fails to import, or a projection
that breaks the contract, stops the start with a message naming it.

Settings are read once per process, so each case runs Replaydesk in a process of its own
(tests/console/user_app_scenario.py for the whole story, `replaydesk` for the refusals).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.console.test_without_demo import own_database  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parent.parent.parent
REPLAYDESK = str(Path(sys.executable).with_name("replaydesk"))

ORDERS_BY_CUSTOMER = """
from streams.projections import Projection


class OrdersByCustomer(Projection):
    name = "orders_by_customer"
    categories = ("order",)
    types = ("OrderPlaced",)
    tables = ("CREATE TABLE totals (customer text PRIMARY KEY, orders bigint NOT NULL)",)

    def apply(self, cursor, events):
        for event in events:
            cursor.execute(
                "INSERT INTO totals VALUES (%s, 1)"
                " ON CONFLICT (customer) DO UPDATE SET orders = totals.orders + 1",
                [event.data["customer"]],
            )
"""


def package(root: Path, name: str, projections: str | None = None, init: str = "") -> Path:
    """A Django app written into `root` (outside the repository), with a projections module."""
    (root / name).mkdir()
    (root / name / "__init__.py").write_text(init)
    if projections is not None:
        (root / name / "projections.py").write_text(textwrap.dedent(projections))
    return root


def replaydesk(*args: str, apps: str, path: Path, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(
        [REPLAYDESK, *args],
        env={**os.environ, **(env or {}), "REPLAYDESK_APPS": apps, "PYTHONPATH": str(path)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_projection_of_your_own_is_discovered_applies_live_events_replays_and_shows(tmp_path, own_database):  # noqa: F811
    package(tmp_path, "shop", ORDERS_BY_CUSTOMER)
    env = {
        **os.environ,
        **own_database,
        "REPLAYDESK_APPS": "shop",
        "REPLAYDESK_APPROVALS": "replay=0",
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
    }
    run = subprocess.run(
        [sys.executable, "-m", "tests.console.user_app_scenario"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])

    assert "orders_by_customer" in found["running"]
    assert found["live"] == {"ann": 2, "bob": 1}
    lag = {row["name"]: row for row in found["lag"]}["orders_by_customer"]
    assert (lag["kind"], lag["checkpoint"], lag["lag_events"]) == ("projection", found["head"], 0)
    assert found["replay"]["state"] == "succeeded"
    assert found["replay"]["totals"] == {"ann": 2, "bob": 1}
    # Swapped in: the schema it replaced is kept for a rollback.
    assert found["schemas"] == ["proj_orders_by_customer", "proj_orders_by_customer__previous"]
    assert found["page"]["status"] == 200
    assert "orders_by_customer" in found["page"]["html"]
    assert found["api"]["status"] == 200
    assert found["api"]["json"]["name"] == "orders_by_customer"
    assert found["api"]["json"]["lag_events"] == 0


@pytest.mark.parametrize(
    ("apps", "init", "says"),
    [
        ("shopp", "", "REPLAYDESK_APPS: 'shopp' fails to import: no such package"),
        ("shop.orders", "", "REPLAYDESK_APPS: 'shop.orders' fails to import: no such package"),
        (
            "nowhere.orders",
            "",
            "REPLAYDESK_APPS: 'nowhere.orders' fails to import: No module named 'nowhere'",
        ),
        ("shop-orders", "", "REPLAYDESK_APPS: 'shop-orders' is not a Python package name"),
        ("shop,streams", "", "REPLAYDESK_APPS: 'streams' is installed already"),
        (
            "shop",
            "import json\nimport no_such_dependency\n",
            "REPLAYDESK_APPS: 'shop' fails to import: ModuleNotFoundError: No module named "
            "'no_such_dependency' ({tmp_path}/shop/__init__.py, line 2)",
        ),
    ],
)
def test_a_package_that_cannot_be_imported_stops_replaydesk_with_its_name(tmp_path, apps, init, says):
    package(tmp_path, "shop", init=init)

    refused = replaydesk("lag", apps=apps, path=tmp_path)

    assert refused.returncode == 1
    assert refused.stderr.startswith(f"replaydesk: {says.format(tmp_path=tmp_path)}"), refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_projection_that_breaks_the_contract_stops_up_with_its_name(tmp_path):
    broken = ORDERS_BY_CUSTOMER.replace('("order",)', '("order")').replace(
        "CREATE TABLE totals", "CREATE TABLE public.totals"
    )
    package(tmp_path, "shop", broken)

    refused = replaydesk("up", "--port", "1", apps="shop", path=tmp_path)

    assert refused.returncode == 1
    assert refused.stderr.startswith(
        "replaydesk: projection 'orders_by_customer' (shop.projections.OrdersByCustomer) breaks the "
        "projection contract (docs/projections.md): categories is a tuple of strings (write ('order',) for "
        "one), not 'order'; tables: 'CREATE TABLE public.totals (customer text PRIMARY KEY, order…' names a "
        "schema; names are unqualified"
    ), refused.stderr
    assert "Replaydesk home" not in refused.stdout  # it stopped before it started anything


def test_two_apps_with_a_projection_of_one_name_stop_the_start_naming_both(tmp_path):
    package(tmp_path, "shop", ORDERS_BY_CUSTOMER)
    package(tmp_path, "shop2", ORDERS_BY_CUSTOMER)

    refused = replaydesk("check", apps="shop,shop2", path=tmp_path)

    assert refused.returncode == 1
    assert refused.stderr.startswith(
        "replaydesk: two projections are named 'orders_by_customer': shop.projections.OrdersByCustomer and "
        "shop2.projections.OrdersByCustomer"
    ), refused.stderr


def test_a_projections_module_that_fails_names_its_package_and_line(tmp_path):
    package(tmp_path, "shop", "import streams.projections\nraise RuntimeError('half-written')\n")

    refused = replaydesk("check", apps="shop", path=tmp_path)

    assert refused.returncode == 1
    assert refused.stderr == (
        "replaydesk: REPLAYDESK_APPS: 'shop' fails to import: RuntimeError: half-written "
        f"({tmp_path}/shop/projections.py, line 2)\n"
    )
