"""REPLAYDESK_APPS: your own Django apps, whose `projections` modules declare projections
(docs/projections.md). Each name is checked before Django imports anything, so that a typo or a package
missing from this environment stops the start with a message naming it, in every process; a package
found but failing in its own code is named by the command line (`failure_in`), with the line that
failed."""

from __future__ import annotations

import importlib.util
import traceback
from pathlib import Path

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


def failure_in(exc: BaseException, names: list[str]) -> str | None:
    """What stopped Django importing one of the packages named, as a line naming it and where its own
    code failed; None when the start failed for another reason, or the apps were ready already."""
    from django.apps import apps

    if apps.ready:
        return None
    places = {name: _places(name) for name in names}
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):  # the deepest is where it failed
        for name, found in places.items():
            if any(Path(frame.filename).is_relative_to(place) for place in found):
                error = traceback.format_exception_only(exc)[-1].strip()
                return f"{SETTING}: {name!r} fails to import: {error} ({frame.filename}, line {frame.lineno})"
    return None


def _places(name: str) -> list[str]:
    """The directory of a package (or the file of a module) Python would import as `name`."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    if spec is None:
        return []
    return list(spec.submodule_search_locations or []) or ([spec.origin] if spec.origin else [])
