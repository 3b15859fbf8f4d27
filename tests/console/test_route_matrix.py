"""Every route × role × method: allowed (anything but 401/403 and the login page), or refused (403, or the
login page / 401 for nobody). The matrix below is the contract; a route missing from it, or listed but
gone, fails the test, so a new page or endpoint cannot ship without saying who may use it."""

import pytest
from django.test import Client

from core.roles import GRANTS, Can
from tests.conftest import person
from tests.console.routes import all_routes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_projection_schemas")]

PUBLIC = "public"  # anyone, logged in or not
SIGNED = "signed"  # machine-to-machine, authenticated by a signature: refused to everyone without it
METRICS = "metrics"  # a scraper token, or the read permission

READ, APPEND, OPERATE, APPROVE, UNMASK = Can.READ, Can.APPEND, Can.OPERATE, Can.APPROVE, Can.UNMASK

MATRIX: dict[str, dict[str, str]] = {
    "home": {"GET": PUBLIC},
    "login": {"GET": PUBLIC, "POST": PUBLIC},
    "logout": {"POST": PUBLIC},
    "healthz": {"GET": PUBLIC},
    "readyz": {"GET": PUBLIC},
    "metrics": {"GET": METRICS},
    "schema": {"GET": PUBLIC},
    "api-docs": {"GET": PUBLIC},
    # API
    "api:api-stream-list": {"GET": READ},
    "api:api-stream-detail": {"GET": READ},
    "api:api-stream-events": {"GET": READ, "POST": APPEND},
    "api:api-event-list": {"GET": READ},
    "api:api-event-detail": {"GET": READ},
    "api:api-audit-search": {"GET": READ},
    "api:api-stream-state": {"GET": READ},
    "api:api-event-unmask": {"POST": UNMASK},
    "api:api-demo-user": {"GET": READ},
    "api:api-demo-access": {"GET": READ},
    "api:api-job-list": {"GET": READ, "POST": OPERATE},
    "api:api-job-estimate": {"POST": OPERATE},
    "api:api-job-detail": {"GET": READ, "PATCH": OPERATE},
    "api:api-job-approve": {"POST": APPROVE},
    "api:api-job-reject": {"POST": APPROVE},
    "api:api-job-cancel": {"POST": OPERATE},
    "api:api-job-retry": {"POST": OPERATE},
    "api:api-snapshot-list": {"GET": READ, "POST": OPERATE},
    "api:api-snapshot-detail": {"GET": READ},
    "api:api-consumer-rollback": {"POST": OPERATE},
    "api:api-consumer-list": {"GET": READ},
    "api:api-consumer-detail": {"GET": READ},
    "api:api-consumer-lagging": {"GET": READ},
    "api:api-consumer-pause": {"POST": OPERATE},
    "api:api-consumer-resume": {"POST": OPERATE},
    "api:api-consumer-parked": {"GET": READ},
    "api:api-consumer-parked-retry": {"POST": OPERATE},
    "api:api-consumer-parked-skip": {"POST": OPERATE},
    "api:api-subscription-list": {"GET": READ, "POST": OPERATE},
    "api:api-subscription-detail": {"GET": READ, "DELETE": OPERATE},
    "api:api-subscription-fetch": {"POST": READ},
    "api:api-subscription-ack": {"POST": READ},
    "api:api-subscription-nack": {"POST": READ},
    "api:api-source-list": {"GET": READ, "POST": Can.ADMINISTER},
    "api:api-source-detail": {"GET": READ},
    "api:api-source-pause": {"POST": OPERATE},
    "api:api-source-resume": {"POST": OPERATE},
    "api:api-source-parked": {"GET": READ},
    "api:api-source-parked-retry": {"POST": OPERATE},
    "api:api-source-parked-skip": {"POST": OPERATE},
    "api:api-source-write-dsn": {"PUT": Can.ADMINISTER, "DELETE": Can.ADMINISTER},
    # pages
    "dashboard": {"GET": READ},
    "streams:consumers": {"GET": READ},
    "streams:sink-new": {"GET": OPERATE, "POST": OPERATE},
    "streams:consumer": {"GET": READ},
    "streams:subscription-live": {"GET": READ},
    "streams:consumer-live": {"GET": READ},
    "streams:sink-edit": {"GET": OPERATE, "POST": OPERATE},
    "streams:consumer-pause": {"POST": OPERATE},
    "streams:consumer-resume": {"POST": OPERATE},
    "streams:parked-retry": {"POST": OPERATE},
    "streams:parked-skip": {"POST": OPERATE},
    "streams:sources": {"GET": READ},
    "streams:source-new": {"GET": Can.ADMINISTER, "POST": Can.ADMINISTER},
    "streams:source": {"GET": READ},
    "streams:source-live": {"GET": READ},
    "streams:source-pause": {"POST": OPERATE},
    "streams:source-resume": {"POST": OPERATE},
    "streams:source-parked-retry": {"POST": OPERATE},
    "streams:source-parked-skip": {"POST": OPERATE},
    "streams:list": {"GET": READ},
    "streams:detail": {"GET": READ},
    "streams:log": {"GET": READ},
    "streams:event": {"GET": READ},
    "streams:audit": {"GET": READ},
    "streams:lookup": {"GET": READ},
    # Single sign-on: 404 until it is configured; then the provider decides who signs in.
    "oidc_authentication_init": {"GET": PUBLIC},
    "oidc_authentication_callback": {"GET": PUBLIC},
    "streams:audit-export-csv": {"GET": READ},
    "streams:audit-export-json": {"GET": READ},
    "streams:audit-unmask": {"POST": UNMASK},
    "streams:audit-mask": {"POST": READ},
    "recovery:jobs": {"GET": READ},
    "recovery:job-new": {"GET": OPERATE, "POST": OPERATE},
    "recovery:job-estimate": {"POST": OPERATE},
    "recovery:job-kinds-css": {"GET": OPERATE},
    "recovery:running-jobs": {"GET": READ},
    "recovery:job": {"GET": READ},
    "recovery:job-progress": {"GET": READ},
    "recovery:job-cancel": {"POST": OPERATE},
    "recovery:job-retry": {"POST": OPERATE},
    "recovery:drills": {"GET": READ},
    "recovery:drill-start": {"POST": OPERATE},
    "recovery:snapshots": {"GET": READ},
    "recovery:snapshot": {"GET": READ},
    "recovery:consumer-recovery": {"GET": READ},
    "recovery:rollback": {"POST": OPERATE},
    "recovery:approvals": {"GET": READ},
    "recovery:approvals-waiting": {"GET": READ},
    "recovery:approvals-count": {"GET": READ},
    "recovery:approval": {"GET": READ},
    "recovery:approve": {"POST": APPROVE},
    "recovery:reject": {"POST": APPROVE},
    "recovery:job-approvals": {"GET": READ},
    "demo-search-index-receive": {"POST": SIGNED},
    "demo-search": {"GET": READ},
}

ROLES = ("support", "operator", "approver", "admin")
NOBODY, NO_ROLE = "nobody", "no role"


def allowed(rule: str, role: str) -> bool:
    if rule == PUBLIC:
        return True
    if rule == SIGNED:
        return False
    if rule == METRICS:
        rule = Can.READ
    return role in ROLES and Can(rule) in GRANTS[role]


def refused(response, rule: str) -> bool:
    if rule == PUBLIC:
        return response.status_code in (401, 403)  # where a public page sends you is its own business
    if response.status_code in (401, 403):
        return True
    return response.status_code == 302 and "/login/" in response.get("Location", "")


def test_every_route_is_in_the_matrix_and_every_matrix_entry_is_a_route():
    names = {route.name for route in all_routes()}
    assert sorted(names - set(MATRIX)) == [], "routes nobody said who may use: add them to MATRIX"
    assert sorted(set(MATRIX) - names) == [], "MATRIX lists routes that no longer exist"


def test_each_role_gets_exactly_what_the_matrix_allows(world):
    people = {role: person(f"{role}-user", role) for role in ROLES}
    people[NO_ROLE] = person("no-role-user")
    wrong = []
    for route in all_routes():
        rules = MATRIX.get(route.name, {})
        path = route.path(**world)
        for method, rule in rules.items():
            for role in (NOBODY, NO_ROLE, *ROLES):
                client = Client()
                if role != NOBODY:
                    client.force_login(people[role])
                response = client.generic(method, path, data="{}", content_type="application/json")
                expected_allowed = allowed(rule, role)
                if refused(response, rule) == expected_allowed:
                    wrong.append(
                        f"{method} {path} as {role}: {response.status_code} "
                        f"(expected {'allowed' if expected_allowed else 'refused'})"
                    )
    assert wrong == []


def test_methods_a_route_does_not_take_are_refused_for_everyone(world, admin_user):
    client = Client()
    client.force_login(admin_user)
    for route in all_routes():
        rules = MATRIX.get(route.name, {})
        path = route.path(**world)
        for method in {"GET", "POST"} - set(rules):
            response = client.generic(method, path, data="{}", content_type="application/json")
            assert response.status_code in (405, 403), f"{method} {path}: {response.status_code}"
