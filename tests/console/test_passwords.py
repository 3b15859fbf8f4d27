"""Passwords are hashed with Argon2id; one hashed by an older hasher still logs in, and is hashed again."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.urls import reverse

from console import settings as project
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def real_hashers(settings):
    """The project's own hashers, which the suite swaps for a fast one everywhere else."""
    settings.PASSWORD_HASHERS = project.PASSWORD_HASHERS


def test_a_new_password_is_hashed_with_argon2id(real_hashers, operator):
    operator.set_password("a new long passphrase")
    operator.save()

    assert operator.password.startswith("argon2$argon2id$")
    assert operator.check_password("a new long passphrase")
    assert not operator.check_password("another passphrase")


def test_a_password_hashed_with_pbkdf2_logs_in_and_is_hashed_again_with_argon2(
    real_hashers, operator, client
):
    get_user_model().objects.filter(pk=operator.pk).update(
        password=make_password(PASSWORD, hasher="pbkdf2_sha256")
    )

    response = client.post(reverse("login"), {"username": operator.username, "password": PASSWORD})

    assert response.status_code == 302
    assert response.url == reverse("dashboard")
    operator.refresh_from_db()
    assert operator.password.startswith("argon2$argon2id$")


def test_a_wrong_password_is_refused_and_the_old_hash_kept(real_hashers, operator, client):
    old = make_password(PASSWORD, hasher="pbkdf2_sha256")
    get_user_model().objects.filter(pk=operator.pk).update(password=old)

    response = client.post(reverse("login"), {"username": operator.username, "password": "not it at all"})

    assert response.status_code == 200
    operator.refresh_from_db()
    assert operator.password == old
