"""replaydesk-client is a package of its own, for applications that do not run Django: its wheel needs
httpx only, carries its type information, and importing it loads nothing of the server."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from email.parser import Parser

from packaging.requirements import Requirement

from tests.client.conftest import SOURCE


def test_the_wheel_depends_on_httpx_alone_and_is_typed(tmp_path):
    build = ["wheel", "--no-deps", "--no-build-isolation", "--quiet", "--wheel-dir", tmp_path, SOURCE]
    subprocess.run([sys.executable, "-m", "pip", *build], check=True, capture_output=True, timeout=120)
    (wheel,) = tmp_path.glob("replaydesk_client-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        files = set(archive.namelist())
        (metadata_dir,) = {name.split("/")[0] for name in files if ".dist-info/" in name}
        metadata = Parser().parsestr(archive.read(f"{metadata_dir}/METADATA").decode())

    assert metadata["Name"] == "replaydesk-client"
    assert [Requirement(line).name for line in metadata.get_all("Requires-Dist")] == ["httpx"]
    assert {"replaydesk_client/client.py", "replaydesk_client/py.typed"} <= files
    # Nothing of the server: the client's package and the wheel's own metadata.
    assert {name.split("/")[0] for name in files} == {"replaydesk_client", metadata_dir}
    assert "Client(" in metadata.get_payload()  # the README, with its examples, is the description


def test_importing_the_client_loads_no_django():
    check = "import sys, replaydesk_client; print([m for m in sys.modules if m.startswith('django')])"
    done = subprocess.run(
        [sys.executable, "-c", check],
        env={"PYTHONPATH": str(SOURCE / "src")},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )

    assert done.stdout.strip() == "[]"
