"""The identity demo as a fault drill's data set (recovery/drill/dataset.py says what a data set is).

People are created, renamed and given new e-mail addresses; the users directory projection is restored;
the downstream is a search index of people; the bad deploy writes wrong names and e-mail addresses and
corrupts rows of the directory.
"""

from __future__ import annotations

import random
from typing import Any

from django.db.backends.utils import CursorWrapper

from demo.services import load_demo
from streams.models import Stream


class Identity:
    projection = "users_directory"
    categories = ("user",)
    types = ("UserCreated", "UserNameSet", "UserEmailSet")
    what = "the demo domain"

    def load(self, *, users: int, events: int) -> int:
        return load_demo(users=users, events=events).events

    def entities(self) -> list[str]:
        return [
            name.removeprefix("user-")
            for name in Stream.objects.filter(category="user").values_list("name", flat=True)
        ]

    def change(self, rng: random.Random, user: str, n: int) -> tuple[str, dict[str, Any]]:
        """An application's append: a rename or a new e-mail address of an existing person."""
        if rng.random() < 0.5:
            return f"user-{user}", {"type": "UserNameSet", "data": {"user_id": user, "name": f"Name {n}"}}
        email = f"{user}.{n}@example.com"
        return f"user-{user}", {"type": "UserEmailSet", "data": {"user_id": user, "email": email}}

    def bad_change(self, user: str, n: int) -> tuple[str, dict[str, Any]]:
        """The bad deploy's append: a wrong e-mail address, or a name of question marks."""
        kind = (
            ("UserNameSet", "name", "?????")
            if n % 2
            else ("UserEmailSet", "email", f"{user}@bad-deploy.invalid")
        )
        return f"user-{user}", {"type": kind[0], "data": {"user_id": user, kind[1]: kind[2]}}

    def damage(self, cursor: CursorWrapper) -> tuple[int, int]:
        """The bad deploy's writes behind the log's back: rows of the directory deleted and rewritten."""
        cursor.execute("DELETE FROM users WHERE random() < 0.05")
        deleted = cursor.rowcount
        cursor.execute(
            "UPDATE users SET name = upper(name), email = 'lost@bug.invalid' WHERE random() < 0.05"
        )
        return deleted, cursor.rowcount

    def projected(self, cursor: CursorWrapper) -> dict[str, dict[str, Any]]:
        """The directory's rows as documents, to compare with a fold of the log."""
        cursor.execute("SELECT user_id, username, name, email FROM users")
        return {row[0]: {"username": row[1], "name": row[2], "email": row[3]} for row in cursor}

    def apply(self, documents: dict[str, dict[str, Any]], event: dict[str, Any]) -> None:
        """One event's effect on the downstream's documents (and on the fold the checks compare with).
        `changes` counts the effects on a document: an event applied twice would show there."""
        data = event.get("data") or {}
        user = data.get("user_id")
        if event["type"] == "UserCreated":
            documents[user] = {key: data.get(key) for key in ("username", "name", "email")}
            documents[user]["changes"] = 1
        elif event["type"] in ("UserNameSet", "UserEmailSet") and user in documents:
            field = "name" if event["type"] == "UserNameSet" else "email"
            documents[user][field] = data.get(field)
            documents[user]["changes"] += 1


IDENTITY = Identity()
