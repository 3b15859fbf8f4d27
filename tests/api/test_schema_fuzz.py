"""The API against its own OpenAPI schema: schemathesis generates requests for every operation (valid
and invalid) in every phase (examples, coverage, fuzzing, and stateful sequences that follow the links
between operations), sends them through the production WSGI app with an admin's token, and runs every
check: no 500, every answer (status, content type, headers, body) one the schema describes, invalid input
refused, valid input accepted. How it judges is the repository's schemathesis.toml, as for `st run`.

Every operation is covered; none needs an outside server (a job is only queued: its Celery task is sent
on commit, and the test's transaction never commits)."""

from pathlib import Path

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from console.wsgi import application
from streams.consumers import run_projection
from tests.conftest import bearer_token, person

CONFIG = SchemathesisConfig.from_path(str(Path(__file__).parents[2] / "schemathesis.toml"))
# Loaded once at collection through the app itself (the schema view needs no database). The eager
# schema gives each operation its own test; the fixture-based loader does not run on pytest 9.
schema = schemathesis.openapi.from_wsgi("/api/schema/", application, config=CONFIG)
HYPOTHESIS = settings(
    max_examples=40,
    deadline=None,
    # The same examples on every run: a suite that passed passes again (failures found while exploring
    # with other seeds are kept as plain tests in test_fuzz_findings.py).
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)


@pytest.fixture(autouse=True)
def _requests_share_the_tests_transaction(db):
    """Generated requests run inside the test's transaction, rolled back after each operation. Django
    closes a connection that is in a transaction at the end of each request (close_old_connections),
    which would end the test's own; its test client turns that off the same way."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def _demo_projections_have_run(db, settings):
    """The demo's read endpoints answer 503 until their projection has run once; a read that waits for
    a position never written answers 503 at once instead of after 5 s, and a fetch does not wait."""
    run_projection("users_directory")
    run_projection("access")
    settings.REPLAYDESK_READ_WAIT_SECONDS = 0
    settings.REPLAYDESK_FETCH_WAIT_MAX_SECONDS = 0


@pytest.fixture(autouse=True)
def _no_rate_limits(settings):
    """Thousands of requests from one token in seconds: the limits have tests of their own."""
    settings.REPLAYDESK_RATES = {}


@pytest.fixture
def admin_token(db) -> str:
    """Ada may do everything, so that generated requests reach every write path, not only a 403."""
    return bearer_token(person("ada", "admin"))


@schema.parametrize()
@HYPOTHESIS
def test_every_operation_answers_as_its_schema_says(case, admin_token):
    case.call_and_validate(headers={"Authorization": f"Bearer {admin_token}"})


def test_sequences_of_operations_answer_as_the_schema_says(admin_token):
    machine = schema.as_state_machine()
    machine.run(settings=HYPOTHESIS)
