"""Imports go one way (docs/architecture.md): core ← streams ← recovery ← console, and demo → streams.

The store never imports recovery, nothing but the demo imports the demo, and core imports no app.
Function-level imports count as much as module-level ones.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What each app may import, besides itself.
MAY_IMPORT = {
    "core": set(),
    "streams": {"core"},
    "recovery": {"core", "streams"},
    "console": {"core", "streams", "recovery"},
    "demo": {"core", "streams"},
}


def imports_against_the_layers() -> list[str]:
    found = []
    for app, allowed in MAY_IMPORT.items():
        for path in sorted((ROOT / app).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top in MAY_IMPORT and top != app and top not in allowed:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    return found


def test_every_import_goes_down_the_layers():
    assert imports_against_the_layers() == []


def test_the_check_sees_an_import_inside_a_function(tmp_path, monkeypatch):
    app = tmp_path / "streams"
    app.mkdir()
    (app / "lag.py").write_text("def is_rebuilding():\n    from recovery.models import Job\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["ROOT"]), "ROOT", tmp_path)

    assert imports_against_the_layers() == ["streams/lag.py:2 imports recovery.models"]
