"""How a drill's outcome reads in its job's log and error: sentences with the checks' names, not a dict."""

from __future__ import annotations

from recovery.drill import CHECK_NAMES, check_name, verdict_line
from recovery.kinds.base import get
from recovery.models import Job


def test_a_passed_drill_says_how_many_checks_found_nothing():
    assert verdict_line(True, dict.fromkeys(CHECK_NAMES, 0)) == "passed: all 9 checks found nothing wrong"


def test_a_failed_drill_names_only_the_checks_that_found_something():
    line = verdict_line(False, {"projection_rows_wrong": 3, "downstream_events_missing": 0})
    assert line == "FAILED: projection rows that differ from a fold of the log: 3"


def test_every_check_of_both_drills_has_a_name_and_an_unknown_one_is_still_readable():
    assert all(" " in name and "_" not in name for name in CHECK_NAMES.values())
    assert check_name("rows_gone_missing") == "Rows gone missing"


def test_a_drill_job_is_titled_by_its_size_not_by_its_lock():
    drill = get("drill")
    quick, full = ({"quick": True}, {"quick": False})
    assert drill.title(Job(kind="drill", target="drill-sandbox", params=quick)) == "quick fault drill"
    assert drill.title(Job(kind="drill", target="drill-sandbox", params=full)) == "full fault drill"
    assert get("replay").title(Job(kind="replay", target="users_directory")) == "replay of users_directory"
