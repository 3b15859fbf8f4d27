"""REPLAYDESK_APPS: your own Django apps, whose `projections` modules declare projections
(docs/projections.md). Each name is checked before Django imports anything, so that a typo or a package
missing from this environment stops the start with a message naming it, in every process."""

from __future__ import annotations

import importlib.util

from django.core.exceptions import ImproperlyConfigured

SETTING = "REPLAYDESK_APPS"


def checked(names: list[str], *, installed: list[str]) -> list[str]:
    """The packages named, once each is a dotted Python name, not installed already, and importable."""
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise ImproperlyConfigured(f"{SETTING}: {name!r} is not a Python package name")
        if name in installed or names.count(name) > 1:
            raise ImproperlyConfigured(f"{SETTING}: {name!r} is installed already (name each app once)")
        try:
            found = importlib.util.find_spec(name)
        except ImportError as exc:  # a parent package that is missing or fails to import
            raise ImproperlyConfigured(f"{SETTING}: {name!r} fails to import: {exc}") from exc
        if found is None:
            raise ImproperlyConfigured(
                f"{SETTING}: {name!r} fails to import: no such package in this Python environment "
                "(install it, e.g. `pip install -e DIR`, or put the directory that holds it on PYTHONPATH)"
            )
    return list(names)
