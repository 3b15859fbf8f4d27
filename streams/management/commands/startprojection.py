"""replaydesk startprojection NAME [--dir DIR] [--category CATEGORY]: a package with a working projection,
its test against a real PostgreSQL and how to install it, from the files in streams/projection_template/."""

from __future__ import annotations

import importlib.util
import keyword
from pathlib import Path
from string import Template

from django.core.management.base import BaseCommand, CommandError, CommandParser

from streams.projections import NAME_RE

TEMPLATE = Path(__file__).resolve().parent.parent.parent / "projection_template"
SUFFIX = "-tpl"


class Command(BaseCommand):
    help = (
        "Write DIR/NAME/: a Django app with a projection named NAME (projections.py), its tests against "
        "a real PostgreSQL, and a README saying how to install it with REPLAYDESK_APPS."
    )
    requires_system_checks = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the projection's name, also the package's: a-z, 0-9 and _")
        parser.add_argument("--dir", default=".", help="where to write the package (default: here)")
        parser.add_argument(
            "--category", help="the stream category it follows (the part before the first '-'; default NAME)"
        )

    def handle(self, *args, name: str, dir: str, category: str | None, **options) -> None:
        check_name(name)
        category = category or name
        if not category or "-" in category or not category.replace("_", "").isalnum():
            raise CommandError(f"category {category!r}: letters, digits and _, without '-'")
        target = Path(dir) / name
        if target.exists():
            raise CommandError(f"{target} exists already; choose another --dir or NAME (nothing was written)")
        files = render(name=name, category=category)
        for relative, text in files.items():
            path = target / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        self.stdout.write(
            f"Wrote the projection {name} in {target}. Install it with "
            f"PYTHONPATH={target.parent.resolve()} REPLAYDESK_APPS={name}; see {target / 'README.md'}."
        )


def check_name(name: str) -> None:
    if not NAME_RE.fullmatch(name) or keyword.iskeyword(name):
        raise CommandError(
            f"{name!r} is not a projection name: 1–40 of a-z, 0-9 and _, starting with a letter, not a "
            "Python keyword (nothing was written)"
        )
    if importlib.util.find_spec(name) is not None:
        raise CommandError(
            f"{name!r} is the name of a module Python imports already; choose another (nothing was written)"
        )


def render(*, name: str, category: str) -> dict[str, str]:
    """Each template file, its `$name`, `$label` and `$category` filled in, by its path in the package."""
    values = {"name": name, "label": "".join(part.title() for part in name.split("_")), "category": category}
    files = {}
    for source in sorted(TEMPLATE.rglob(f"*{SUFFIX}")):
        relative = source.relative_to(TEMPLATE).as_posix().removesuffix(SUFFIX)
        relative = relative.replace("test_projection.py", f"test_{name}.py")
        files[relative] = Template(source.read_text()).substitute(values)
    return files
