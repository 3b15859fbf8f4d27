"""`replaydesk startprojection NAME --dir DIR`: a package with a working projection, its test against a
real PostgreSQL, and how to install it; a bad name or a directory in the way writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from tests.console.test_without_demo import own_database  # noqa: F401 (a fixture)

REPLAYDESK = str(Path(sys.executable).with_name("replaydesk"))


def test_the_package_it_writes_passes_its_own_tests_against_postgresql(tmp_path, own_database):  # noqa: F811
    made = subprocess.run(
        [REPLAYDESK, "startprojection", "orders_seen", "--dir", str(tmp_path), "--category", "order"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert made.returncode == 0, made.stderr
    package = tmp_path / "orders_seen"
    assert sorted(p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()) == [
        "README.md",
        "__init__.py",
        "apps.py",
        "projections.py",
        "tests/__init__.py",
        "tests/test_orders_seen.py",
    ]
    assert "REPLAYDESK_APPS=orders_seen" in (package / "README.md").read_text()
    assert 'categories = ("order",)' in (package / "projections.py").read_text()

    # As its README says: from the directory that holds it, Replaydesk installed in the same environment.
    env = {**os.environ, **own_database, "DJANGO_SETTINGS_MODULE": "console.settings"}
    env |= {"REPLAYDESK_APPS": "orders_seen", "PYTHONPATH": "."}
    tests = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "orders_seen/tests"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert tests.stdout.strip().splitlines()[-1].startswith("2 passed")


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("Orders", "'Orders' is not a projection name"),
        ("orders-seen", "'orders-seen' is not a projection name"),
        ("class", "'class' is not a projection name"),
        ("json", "'json' is the name of a module Python imports already"),
        ("streams", "'streams' is the name of a module Python imports already"),
    ],
)
def test_a_bad_name_is_refused_and_nothing_is_written(tmp_path, name, says):
    with pytest.raises(CommandError, match=says):
        call_command("startprojection", name, dir=str(tmp_path))

    assert list(tmp_path.iterdir()) == []


def test_a_directory_in_the_way_is_refused_and_left_as_it_was(tmp_path):
    (tmp_path / "orders_seen").mkdir()
    (tmp_path / "orders_seen" / "mine.txt").write_text("keep")

    with pytest.raises(CommandError, match="orders_seen exists already"):
        call_command("startprojection", "orders_seen", dir=str(tmp_path))

    assert [p.name for p in (tmp_path / "orders_seen").iterdir()] == ["mine.txt"]
