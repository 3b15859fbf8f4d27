"""The Django admin says it is Replaydesk's and wears the console's icon; the API docs lead back to the
console."""

import re

import pytest
from pytest_django.asserts import assertContains, assertNotContains

pytestmark = pytest.mark.django_db


def icon(page: str) -> str:
    match = re.search(r'<link rel="icon" href="([^"]+)">', page)
    return match.group(1) if match else ""


def test_the_admin_is_branded_replaydesk_with_the_consoles_icon(client, admin_user, operator):
    client.force_login(operator)
    console_icon = icon(client.get("/dashboard/").content.decode())
    client.force_login(admin_user)

    for path in ("/admin/", "/admin/console/apitoken/"):
        response = client.get(path)
        assertContains(response, "<title>", count=1)
        assert "| Replaydesk administration</title>" in response.content.decode()
        assertContains(response, '<a href="/admin/">Replaydesk administration</a>', html=True)
        assertNotContains(response, "Django administration")
        assert console_icon.startswith("data:image/svg+xml")
        assert icon(response.content.decode()) == console_icon


def test_the_admin_login_page_is_branded_too(client):
    response = client.get("/admin/login/")

    assertContains(response, "Replaydesk administration")
    assertNotContains(response, "Django")
    assert icon(response.content.decode()).startswith("data:image/svg+xml")


def test_the_api_docs_link_back_to_the_dashboard(client):
    response = client.get("/api/docs/")

    assertContains(response, '<a href="/dashboard/">← Back to the console</a>', html=True)
    assertContains(response, 'id="swagger-ui"')
    assert icon(response.content.decode()).startswith("data:image/svg+xml")
