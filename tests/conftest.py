import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from rest_framework.test import APIClient

PASSWORD = "correct horse battery staple"

# Fixtures that lend a test something only one test at a time may use: the tests that ask for them run
# in one xdist worker, one after another (pyproject.toml's --dist loadgroup).
ONE_AT_A_TIME = {
    # The session's spare Redis database (console/testing.py's spare_redis_url).
    "own_database": "spare_redis",
    "external_servers": "spare_redis",
}


@pytest.hookimpl(tryfirst=True)  # before xdist's, which reads the groups
def pytest_collection_modifyitems(config, items):
    """A module whose tests share a module's fixture (a Chromium, a `replaydesk up`, a Celery worker)
    runs whole in one worker, in its order, as it would alone; tests that share a package's fixture run
    in one worker too. Each is started once, not once in every worker."""
    groups: dict[str, set[str]] = {}
    modules: set[str] = set()
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        found = groups.setdefault(item.nodeid, set())
        found |= {ONE_AT_A_TIME[name] for name in ONE_AT_A_TIME.keys() & set(info.names_closure)}
        for name, definitions in info.name2fixturedefs.items():
            if definitions[-1].scope == "module":
                modules.add(item.nodeid.split("::")[0])
            elif definitions[-1].scope == "package":
                found.add(f"{definitions[-1].baseid}::{name}")
    for item in items:
        module = item.nodeid.split("::")[0]
        for group in sorted(groups.get(item.nodeid, set()) | ({module} if module in modules else set())):
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(autouse=True)
def _jobs_run_without_approval(settings):
    """Most tests are about what a job does, not who approved it: no kind needs an approval unless a
    test asks for the production rule with the `four_eyes` fixture."""
    from recovery.kinds.base import default_approvals

    settings.REPLAYDESK_APPROVALS_REQUIRED = dict.fromkeys(default_approvals(), 0)


@pytest.fixture
def four_eyes(settings):
    """The production rule: replay, restore and resync need one approval; snapshot and verify none."""
    from recovery.kinds.base import default_approvals

    settings.REPLAYDESK_APPROVALS_REQUIRED = dict(default_approvals())


@pytest.fixture(autouse=True, scope="session")
def _rate_limit_windows_start_empty():
    """Rate-limit counters live in Redis for minutes: a run must not inherit the last run's failed
    logins (console/limits.py)."""
    from core import limits

    limits.reset()


@pytest.fixture(autouse=True, scope="session")
def _append_watch_closed_before_the_database_goes(django_db_setup):
    """A waiting fetch starts its process's append watch (streams/wakeups.py), a connection of its own
    to the test database: it is closed before the database is dropped."""
    yield
    from streams import wakeups

    wakeups.appends.stop()


@pytest.fixture(autouse=True, scope="session")
def _tests_append_as_themselves():
    """A test that calls a service appends as the tests (core/principals.py); what the test client sends
    is recorded as the user it signed in, as in production."""
    from core import principals

    principals.run_as(principals.system("tests"))


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The default hasher is slow on purpose; the tests log in hundreds of times.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def person(username: str, *roles: str):
    """A user with a password (PASSWORD) and the given roles (console/roles.py)."""
    from core.roles import ensure_groups

    ensure_groups()
    user = get_user_model().objects.create_user(
        username,
        email=f"{username}@example.com",
        password=PASSWORD,
        # As `replaydesk user NAME --role admin` makes them: the Django admin is the admins'.
        is_staff="admin" in roles,
        is_superuser="admin" in roles,
    )
    user.groups.set(Group.objects.filter(name__in=roles))
    return user


def bearer_token(user) -> str:
    """An API token for `user`, made as `replaydesk token` makes one but without its audit event (as
    person() makes users without theirs): tests count the events they write."""
    from console import tokens
    from console.models import ApiToken

    token = tokens.generate()
    ApiToken.objects.create(user=user, prefix=tokens.prefix_of(token), digest=tokens.digest(token))
    return token


@pytest.fixture
def operator(db):
    """Olivia runs the event store: she appends, requests jobs, pauses consumers."""
    return person("olivia", "operator")


@pytest.fixture
def approver(db):
    """Avery approves or rejects other people's jobs."""
    return person("avery", "approver")


@pytest.fixture
def support_agent(db):
    """Sam answers customers: reads streams and audit trails, with personal data masked."""
    return person("sam", "support")


@pytest.fixture
def admin_user(db):
    """Ada manages users and settings."""
    return person("ada", "admin")


@pytest.fixture
def api(operator):
    """An application's client: token auth, JSON."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {bearer_token(operator)}")
    return client


@pytest.fixture
def anonymous_api():
    return APIClient()


@pytest.fixture
def browser_client(client, operator):
    """A logged-in browser session (Django's test client)."""
    client.force_login(operator)
    return client


@pytest.fixture
def fresh_projection_schemas(django_db_blocker):
    """Projection schemas are not Django tables, so tests that commit must drop them before and after."""
    from streams.projections import drop_schemas

    with django_db_blocker.unblock():
        drop_schemas()
    yield
    with django_db_blocker.unblock():
        drop_schemas()


@pytest.fixture
def no_waiting_slots():
    """No waiting read or fetch holds a slot in Redis (streams/read_waits.py), before and after."""
    from core.redis import client as redis_client
    from streams import read_waits

    def clear():
        for key in redis_client().scan_iter(f"{read_waits.KEY_PREFIX}*"):
            redis_client().delete(key)

    clear()
    yield
    clear()
