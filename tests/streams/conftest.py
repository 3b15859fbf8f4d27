"""Fixtures every test of the store may ask for by name."""

from tests.streams.messagedb_helpers import messagedb  # noqa: F401 - Message DB in a scratch database
from tests.streams.source_helpers import source_db  # noqa: F401 - a source's scratch database
