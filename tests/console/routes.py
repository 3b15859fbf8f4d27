"""Every route of the URL configuration, with a concrete path to request it by (tests that must cover all
routes generate their cases from here, so a new route cannot slip past them)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver

# Third-party sites with their own rules, tested by their authors; ours is what is mounted around them.
SKIPPED_PREFIXES = ("admin/", "static/")


@dataclass(frozen=True)
class Route:
    name: str
    pattern: str

    def path(self, **values: str) -> str:
        """The pattern with each <converter:name> replaced by values[name] (or a sample)."""

        def fill(match: re.Match) -> str:
            converter, name = match.group(1) or "str", match.group(2)
            return str(values.get(name, SAMPLES.get(name, SAMPLES_BY_CONVERTER[converter])))

        return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", fill, self.pattern)


SAMPLES = {"name": "users_directory", "stream": "user-1", "user_id": "1"}
SAMPLES_BY_CONVERTER = {"str": "x", "int": "1", "uuid": "00000000-0000-0000-0000-000000000001", "path": "x"}


def all_routes() -> list[Route]:
    routes: list[Route] = []

    def walk(patterns, prefix: str, namespace: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
                walk(entry.url_patterns, prefix + str(entry.pattern), inner)
            elif isinstance(entry, URLPattern):
                pattern = prefix + str(entry.pattern)
                if pattern.startswith(SKIPPED_PREFIXES):
                    continue
                routes.append(Route(name=f"{namespace}{entry.name or pattern}", pattern=pattern))

    walk(get_resolver().url_patterns, "", "")
    return routes
