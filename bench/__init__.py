"""Replaydesk's benchmark harness: `python -m bench` (see bench/README.md).

Replaydesk is measured side by side, in the same run and on the same PostgreSQL, with the `eventsourcing`
library's PostgreSQL recorder (the Python peer) and with raw psycopg on the same table shapes (the
physical reference). Systems are interleaved within each repetition and every figure is a median.
Not part of the test suite.
"""
