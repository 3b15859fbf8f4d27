"""Changes to people and roles made in the Django admin are in the console's audit trail, as those made
with `replaydesk user` are: who made them, and the roles or members as they are after the change."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from streams.models import Event

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "a long and unusual passphrase"


def audit_events(stream: str) -> list[Event]:
    return list(Event.objects.filter(stream__name=stream).order_by("position"))


def test_a_user_added_in_the_admin_is_audited_with_who_added_it(client, admin_user):
    client.force_login(admin_user)
    response = client.post(
        "/admin/auth/user/add/",
        {"username": "mallory", "password1": PASSWORD, "password2": PASSWORD, "usable_password": "true"},
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    assert get_user_model().objects.filter(username="mallory").exists()
    [created] = audit_events("console-user.mallory")
    assert (created.type, created.actor) == ("UserCreated", "ada")
    assert created.data["user"] == "mallory" and created.data["roles"] == []


def test_a_role_created_and_deleted_in_the_admin_is_audited(client, admin_user):
    client.force_login(admin_user)
    client.post("/admin/auth/group/add/", {"name": "auditors"})
    group = Group.objects.get(name="auditors")
    admin_user.groups.add(group)
    client.post(f"/admin/auth/group/{group.pk}/delete/", {"post": "yes"})

    events = audit_events("console-group.auditors")
    assert [(event.type, event.actor) for event in events] == [
        ("GroupCreated", "ada"),
        ("GroupDeleted", "ada"),
    ]
    assert events[0].data["members"] == []
    assert not Group.objects.filter(name="auditors").exists()
