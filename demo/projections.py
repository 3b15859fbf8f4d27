"""The identity demo's read models: a users directory, and an access table of who may do what where.

Both fold a batch with a few set-based statements over the batch relation (streams/batches.py), so the
events never leave PostgreSQL: within a batch the last event per key wins, which is what applying the
events one by one in position order would leave behind.
"""

from __future__ import annotations

from django.db.backends.utils import CursorWrapper

from streams.models import Event
from streams.projections import Projection


class UsersDirectory(Projection):
    name = "users_directory"
    version = 1
    categories = ("user",)
    types = ("UserCreated", "UserNameSet", "UserEmailSet")
    fold_reads_indexes = False  # its fold finds users by their primary key
    tables = (
        """CREATE TABLE users (
               user_id text PRIMARY KEY,
               username text NOT NULL,
               name text NOT NULL,
               email text NOT NULL,
               updated_at timestamptz NOT NULL
           )""",
        "CREATE INDEX users_email ON users (lower(email))",
    )

    def fold_stream(self, state: dict, event: Event) -> dict:
        """A user as of an event, for the stream page's timeline: the profile, and the permissions held
        on each resource (a grant and a revoke read as what they did, not as a field overwritten)."""
        data = event.data if isinstance(event.data, dict) else {}
        if event.type == "UserCreated":
            return {
                **{key: data.get(key) for key in ("user_id", "username", "name", "email")},
                "permissions": {},
            }
        if event.type in ("UserNameSet", "UserEmailSet"):
            field = "name" if event.type == "UserNameSet" else "email"
            return {**state, field: data.get(field)}
        if event.type in ("PermissionGranted", "PermissionRevoked"):
            held = {resource: set(granted) for resource, granted in state.get("permissions", {}).items()}
            permissions = held.setdefault(data.get("resource"), set())
            if event.type == "PermissionGranted":
                permissions.add(data.get("permission"))
            else:
                permissions.discard(data.get("permission"))
            return {**state, "permissions": {r: sorted(p) for r, p in sorted(held.items()) if p}}
        return state

    def forget(self, cursor: CursorWrapper, stream: str) -> None:
        """What one stream put here, before a single-stream repair applies it again."""
        if stream.startswith("user-"):
            cursor.execute("DELETE FROM users WHERE user_id = %s", [stream.removeprefix("user-")])

    def apply_rows(self, cursor: CursorWrapper, rows: str) -> None:
        cursor.execute(
            f"""
            INSERT INTO users (user_id, username, name, email, updated_at)
            SELECT data->>'user_id', data->>'username', data->>'name', data->>'email', recorded_at
              FROM {rows} WHERE type = 'UserCreated' ORDER BY position
            """
        )
        for event_type, column in (("UserNameSet", "name"), ("UserEmailSet", "email")):
            cursor.execute(
                f"""
                UPDATE users u SET {column} = last.value, updated_at = last.recorded_at
                  FROM (SELECT DISTINCT ON (data->>'user_id') data->>'user_id' AS user_id,
                               data->>'{column}' AS value, recorded_at
                          FROM {rows} WHERE type = %s
                         ORDER BY data->>'user_id', position DESC) last
                 WHERE u.user_id = last.user_id
                """,
                [event_type],
            )


class AccessTable(Projection):
    name = "access"
    version = 1
    categories = ("user", "group")
    types = ("PermissionGranted", "PermissionRevoked", "MemberAdded", "MemberRemoved")
    fold_reads_indexes = False  # its fold finds grants and memberships by their primary keys
    tables = (
        """CREATE TABLE grants (
               user_id text NOT NULL,
               resource text NOT NULL,
               permission text NOT NULL,
               granted_at timestamptz NOT NULL,
               PRIMARY KEY (resource, user_id, permission)
           )""",
        "CREATE INDEX grants_user ON grants (user_id)",
        """CREATE TABLE memberships (
               group_id text NOT NULL,
               user_id text NOT NULL,
               added_at timestamptz NOT NULL,
               PRIMARY KEY (group_id, user_id)
           )""",
        "CREATE INDEX memberships_user ON memberships (user_id)",
    )

    def forget(self, cursor: CursorWrapper, stream: str) -> None:
        # Grants are written by a user's stream, memberships by a group's.
        if stream.startswith("user-"):
            cursor.execute("DELETE FROM grants WHERE user_id = %s", [stream.removeprefix("user-")])
        elif stream.startswith("group-"):
            cursor.execute("DELETE FROM memberships WHERE group_id = %s", [stream.removeprefix("group-")])

    def apply_rows(self, cursor: CursorWrapper, rows: str) -> None:
        # The last grant or revoke per (user, resource, permission) decides; likewise per membership. A
        # key's last event is either a revoke or a grant, so the DELETE and the INSERT of one statement
        # never touch the same row.
        cursor.execute(
            f"""
            WITH last AS (
                SELECT DISTINCT ON (data->>'user_id', data->>'resource', data->>'permission')
                       data->>'user_id' AS user_id, data->>'resource' AS resource,
                       data->>'permission' AS permission, type, recorded_at
                  FROM {rows} WHERE type IN ('PermissionGranted', 'PermissionRevoked')
                 ORDER BY data->>'user_id', data->>'resource', data->>'permission', position DESC
            ), revoked AS (
                DELETE FROM grants g USING last l
                 WHERE l.type = 'PermissionRevoked'
                   AND (g.user_id, g.resource, g.permission) = (l.user_id, l.resource, l.permission)
            )
            INSERT INTO grants (user_id, resource, permission, granted_at)
            SELECT user_id, resource, permission, recorded_at FROM last WHERE type = 'PermissionGranted'
            ON CONFLICT (resource, user_id, permission) DO NOTHING
            """
        )
        cursor.execute(
            f"""
            WITH last AS (
                SELECT DISTINCT ON (data->>'group_id', data->>'user_id')
                       data->>'group_id' AS group_id, data->>'user_id' AS user_id, type, recorded_at
                  FROM {rows} WHERE type IN ('MemberAdded', 'MemberRemoved')
                 ORDER BY data->>'group_id', data->>'user_id', position DESC
            ), removed AS (
                DELETE FROM memberships m USING last l
                 WHERE l.type = 'MemberRemoved' AND (m.group_id, m.user_id) = (l.group_id, l.user_id)
            )
            INSERT INTO memberships (group_id, user_id, added_at)
            SELECT group_id, user_id, recorded_at FROM last WHERE type = 'MemberAdded'
            ON CONFLICT (group_id, user_id) DO NOTHING
            """
        )
