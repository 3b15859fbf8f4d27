"""A client for Replaydesk's HTTP API: append events with safe retries, read streams and the global log,
and wait until a consumer has processed your append. See README.md."""

from replaydesk_client._version import __version__
from replaydesk_client.client import Client, ExpectedVersion
from replaydesk_client.errors import (
    ApiError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RateLimited,
    ReplaydeskError,
    ServerError,
    Unauthorized,
    Unavailable,
    Unprocessable,
    Unreachable,
    WaitTimedOut,
    WrongExpectedVersion,
)
from replaydesk_client.models import AppendResult, Event, NewEvent

__all__ = [
    "__version__",
    "ApiError",
    "AppendResult",
    "Client",
    "Conflict",
    "Event",
    "ExpectedVersion",
    "Forbidden",
    "InvalidInput",
    "NewEvent",
    "NotFound",
    "RateLimited",
    "ReplaydeskError",
    "ServerError",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "Unreachable",
    "WaitTimedOut",
    "WrongExpectedVersion",
]
