import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

PASSWORD = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # The default hasher is slow on purpose; the tests log in hundreds of times.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def operator(db):
    return get_user_model().objects.create_user("olivia", email="olivia@example.com", password=PASSWORD)


@pytest.fixture
def api(operator):
    """An application's client: token auth, JSON."""
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=operator)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token.key}")
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
