"""A client for Replaydesk's HTTP API: append events with safe retries, read streams and the global log,
wait until a consumer has processed your append, and consume a subscription. See README.md."""

from replaydesk_client._version import __version__
from replaydesk_client.client import Client, ExpectedVersion
from replaydesk_client.errors import (
    ApiError,
    Conflict,
    Forbidden,
    InvalidInput,
    LeaseLost,
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
from replaydesk_client.models import Acknowledged, AppendResult, Batch, Event, Nacked, NewEvent

__all__ = [
    "__version__",
    "Acknowledged",
    "ApiError",
    "AppendResult",
    "Batch",
    "Client",
    "Conflict",
    "Event",
    "ExpectedVersion",
    "Forbidden",
    "InvalidInput",
    "LeaseLost",
    "Nacked",
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
