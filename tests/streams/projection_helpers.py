"""Folds of the demo log computed in Python, the obvious way, to compare projections with."""

from django.db import connection

from streams.models import Event
from streams.services import append_events


def fold_users() -> dict[str, tuple]:
    users: dict[str, dict] = {}
    for event in Event.objects.filter(stream__category="user").order_by("position"):
        data = event.data
        if event.type == "UserCreated":
            users[data["user_id"]] = {k: data[k] for k in ("username", "name", "email")}
        elif event.type == "UserNameSet":
            users[data["user_id"]]["name"] = data["name"]
        elif event.type == "UserEmailSet":
            users[data["user_id"]]["email"] = data["email"]
    return {uid: (u["username"], u["name"], u["email"]) for uid, u in users.items()}


def fold_access() -> tuple[set, set]:
    grants: set[tuple] = set()
    members: set[tuple] = set()
    for event in Event.objects.order_by("position"):
        data = event.data
        if event.type == "PermissionGranted":
            grants.add((data["user_id"], data["resource"], data["permission"]))
        elif event.type == "PermissionRevoked":
            grants.discard((data["user_id"], data["resource"], data["permission"]))
        elif event.type == "MemberAdded":
            members.add((data["group_id"], data["user_id"]))
        elif event.type == "MemberRemoved":
            members.discard((data["group_id"], data["user_id"]))
    return grants, members


def projected_users() -> dict[str, tuple]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT user_id, username, name, email FROM proj_users_directory.users")
        return {row[0]: tuple(row[1:]) for row in cursor.fetchall()}


def projected_access() -> tuple[set, set]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT user_id, resource, permission FROM proj_access.grants")
        grants = set(cursor.fetchall())
        cursor.execute("SELECT group_id, user_id FROM proj_access.memberships")
        return grants, set(cursor.fetchall())


def checkpoint(schema: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT position FROM {schema}.checkpoint")
        return cursor.fetchone()[0]


def create_user(uid: str) -> int:
    """Append a demo-shaped UserCreated for `uid`; its position."""
    data = {"user_id": uid, "username": f"u{uid}", "name": f"User {uid}", "email": f"u{uid}@example.com"}
    return append_events(stream=f"user-{uid}", events=[{"type": "UserCreated", "data": data}]).last_position
