"""API tokens in the Django admin: who holds which and until when, never a token or its hash; revoking
there is audited, and the old page that listed every user's token in plain text is gone."""

import pytest
from rest_framework.test import APIClient

from console import tokens
from console.models import ApiToken
from streams.models import Event


@pytest.fixture
def issued(operator):
    return tokens.issue_token(user=operator, actor="ada", name="billing service")


def test_the_token_pages_show_prefixes_and_dates_never_a_token_or_its_hash(client, admin_user, issued):
    client.force_login(admin_user)
    record = issued.record
    secret = issued.token.rsplit("_", 1)[1]

    listing = client.get("/admin/console/apitoken/")
    detail = client.get(f"/admin/console/apitoken/{record.pk}/change/")

    for page in (listing, detail):
        assert page.status_code == 200
        html = page.content.decode()
        assert record.prefix in html and "billing service" in html
        assert secret not in html and record.digest not in html


def test_the_admin_adds_edits_and_deletes_no_token(client, admin_user, issued):
    client.force_login(admin_user)

    assert client.get("/admin/console/apitoken/add/").status_code == 403
    assert client.get(f"/admin/console/apitoken/{issued.record.pk}/delete/").status_code == 403
    client.post(f"/admin/console/apitoken/{issued.record.pk}/change/", {"name": "renamed", "expires_at": ""})
    assert ApiToken.objects.get().name == "billing service"


def test_the_plain_token_page_is_gone(client, admin_user):
    client.force_login(admin_user)

    assert client.get("/admin/authtoken/tokenproxy/").status_code == 404


def test_revoking_in_the_admin_stops_the_token_and_is_audited(client, admin_user, issued):
    client.force_login(admin_user)

    response = client.post(
        "/admin/console/apitoken/",
        {"action": "revoke", "_selected_action": [issued.record.pk]},
        REMOTE_ADDR="192.0.2.10",
    )

    assert response.status_code == 302
    assert ApiToken.objects.get().revoked_at is not None
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.token}")
    assert api.get("/api/v1/streams").status_code == 401
    [revoked] = Event.objects.filter(type="ApiTokenRevoked")
    assert revoked.actor == "ada" and revoked.metadata["ip"] == "192.0.2.10"
    assert revoked.data == {"user": "olivia", "token": issued.record.prefix, "name": "billing service"}
