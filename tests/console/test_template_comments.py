"""Django's {# … #} comments end on the line they start on; one that runs on is shown to the user as text
(a job's page showed its log's comment under the result). Every template keeps them to one line and
uses {% comment %} for more."""

from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


def test_no_template_shows_a_comment_that_runs_over_a_line():
    running_on = [
        f"{path.relative_to(TEMPLATES)}:{number}"
        for path in sorted(TEMPLATES.rglob("*.html"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if "{#" in line and "#}" not in line.split("{#", 1)[1]
    ]
    assert running_on == []
