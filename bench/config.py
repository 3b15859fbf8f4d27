"""Sizes of a run: the full run is what the benchmark's targets are stated for; --quick scales it down."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Sizes:
    name: str
    repetitions: int
    # Seconds each append measurement runs (every system, every repetition).
    append_seconds: float
    writers: tuple[int, ...]
    batches: tuple[int, ...]
    # Streams the appends spread over, with skewed activity (a few hot streams).
    append_streams: int
    http_clients: int
    # The demo history loaded for replay, audit and lag: events, and users (≈ streams).
    events: int
    users: int
    # Events appended after the snapshot, which a restore replays.
    tail_events: int
    # The log is grown to this many events for the deep global-log page.
    deep_log: int
    consumers: int
    # Timed calls per query for the latency figures (p50, p95).
    samples: int
    # The eventsourcing catch-ups fold at most this many events of the log (their rates are compared):
    # the library's ProjectionRunner (one transaction per event), and pages folded by hand.
    es_runner_events: int
    es_catch_up_events: int
    # Events a subscription's reader fetches over HTTP (and the projection runner reads) per measurement:
    # the last so many of the log.
    subscription_events: int
    # Events of each source's history a backfill copies, and seconds of the live writer (1,000 events/s).
    source_events: int
    source_live_seconds: float
    # The pages section's store (the demo history grown with filler streams), its jobs, and the rounds
    # of every page timed per repetition.
    page_events: int
    page_streams: int
    page_jobs: int
    page_samples: int

    def as_dict(self) -> dict:
        return asdict(self)


FULL = Sizes(
    name="full",
    repetitions=3,
    append_seconds=5.0,
    writers=(1, 4, 16),
    batches=(100, 1000),
    append_streams=100_000,
    http_clients=4,
    events=1_000_000,
    users=100_000,
    tail_events=1_000_000,
    deep_log=5_000_000,
    consumers=10,
    samples=200,
    es_runner_events=10_000,
    es_catch_up_events=1_000_000,
    subscription_events=200_000,
    source_events=1_000_000,
    source_live_seconds=30.0,
    page_events=10_000_000,
    page_streams=1_000_000,
    page_jobs=1000,
    page_samples=20,
)

QUICK = Sizes(
    name="quick",
    repetitions=3,
    append_seconds=0.5,
    writers=(1, 4, 16),
    batches=(100, 1000),
    append_streams=10_000,
    http_clients=4,
    events=50_000,
    users=10_000,
    tail_events=50_000,
    deep_log=100_000,
    consumers=10,
    samples=40,
    es_runner_events=1_000,
    es_catch_up_events=50_000,
    subscription_events=10_000,
    source_events=10_000,
    source_live_seconds=1.0,
    page_events=100_000,
    page_streams=20_000,
    page_jobs=300,
    page_samples=3,
)
