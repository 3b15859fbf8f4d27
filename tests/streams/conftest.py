"""Fixtures every test of the store may ask for by name."""

from tests.streams.source_helpers import source_db  # noqa: F401 - a source's scratch database
