"""An entity's timeline: its stream folded event by event into a state, each event with what it changed.

The default fold merges each event's data object into the state (later keys win). A projection that
follows the stream's category may fold it its own way by defining

    def fold_stream(self, state: dict, event: Event) -> dict

returning the state after the event (a new dict; the one given must not be changed). The first such
projection in registration order is used. Its state fields should be named as the event's data fields
are: personal data is masked in the events before they are folded, so a fold never sees it unmasked
unless the viewer unmasked the view.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import Max

from streams import masking
from streams.models import Event, Stream
from streams.projections import projections
from streams.selectors import iter_data_within, iter_within

Fold = Callable[[dict[str, Any], Event], dict[str, Any]]
MISSING = object()
CHUNK = 1000


def merge_data(state: dict[str, Any], event: Event) -> dict[str, Any]:
    return {**state, **event.data} if isinstance(event.data, dict) else state


def fold_for(category: str) -> tuple[Fold, str | None]:
    """The fold of a category and the name of the projection that provides it (None: the default)."""
    for projection in projections().values():
        if projection.folds_streams and category in projection.categories:
            return projection.fold_stream, projection.name
    return merge_data, None


@dataclass(frozen=True)
class Change:
    field: str
    kind: str  # "set", "changed" or "removed"
    before: Any = None
    after: Any = None

    @property
    def before_text(self) -> str:
        return shown(self.before)

    @property
    def after_text(self) -> str:
        return shown(self.after)


def shown(value: Any) -> str:
    """A value as a person reads it in a diff: strings bare, everything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def diff(before: dict[str, Any], after: dict[str, Any], prefix: str = "") -> list[Change]:
    """Field by field, nested objects by their dotted paths (`address.city`), in the order of the keys."""
    changes: list[Change] = []
    for key in [*before, *(k for k in after if k not in before)]:
        field = f"{prefix}{key}"
        old, new = before.get(key, MISSING), after.get(key, MISSING)
        if old == new:
            continue
        nested_old, nested_new = ({} if v is MISSING else v for v in (old, new))
        if isinstance(nested_old, dict) and isinstance(nested_new, dict) and (nested_old or nested_new):
            # An object set, removed or changed shows as the fields inside it that were.
            changes.extend(diff(nested_old, nested_new, prefix=f"{field}."))
        elif old is MISSING:
            changes.append(Change(field=field, kind="set", after=new))
        elif new is MISSING:
            changes.append(Change(field=field, kind="removed", before=old))
        else:
            changes.append(Change(field=field, kind="changed", before=old, after=new))
    return changes


def fields(state: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """A state as (dotted field, value as shown) rows, nested objects flattened as diff() names them."""
    rows: list[tuple[str, str]] = []
    for key, value in state.items():
        if isinstance(value, dict) and value:
            rows.extend(fields(value, prefix=f"{prefix}{key}."))
        else:
            rows.append((f"{prefix}{key}", shown(value)))
    return rows


@dataclass(frozen=True)
class Step:
    event: Event
    changes: list[Change]
    state: dict[str, Any]


def _events(stream: Stream, *, after: int = 0, upto: int | None = None) -> Iterator[Event]:
    """The stream's events after sequence `after` (up to `upto`), in sequence order, loaded at most
    selectors.CHUNK_BYTES at a time."""
    return _keyset(
        stream, after, upto, lambda chunk: ((e.sequence, e) for e in iter_within(chunk, stream=stream))
    )


def _data(stream: Stream, *, before: int) -> Iterator[Any]:
    """The data of the stream's events before sequence `before`, in sequence order, in the same chunks."""
    return _keyset(stream, 0, before - 1, iter_data_within)


def _keyset(
    stream: Stream, after: int, upto: int | None, read: Callable[[Any], Iterator[tuple[int, Any]]]
) -> Iterator[Any]:
    """What `read` makes of the stream's events after sequence `after` (up to `upto`), in sequence order,
    asked in keyset chunks of at most CHUNK events: a long stream, or one of big events, is never one
    query or one load. `read` gives (sequence, item) for each event of a chunk."""
    while True:
        chunk = Event.objects.filter(stream=stream, sequence__gt=after)
        if upto is not None:
            chunk = chunk.filter(sequence__lte=upto)
        seen = 0
        for after, item in read(chunk.order_by("sequence")[:CHUNK]):  # noqa: B007 (the keyset)
            seen += 1
            yield item
        if seen < CHUNK:
            return


def _state_before(stream: Stream, since: int, *, fold: Fold, masked: bool) -> dict[str, Any]:
    """The state after the events before sequence `since`. The default fold reads only their data, and
    merges it into one dict that nobody else holds; a projection's fold is given each event."""
    state: dict[str, Any] = {}
    if since <= 1:
        return state
    if fold is merge_data:
        for data in _data(stream, before=since):
            data = masking.mask_document(data, "data", in_place=True) if masked else data
            if isinstance(data, dict):
                state.update(data)  # merge_data, in place
        return state
    for raw in _events(stream, upto=since - 1):
        state = fold(state, masking.mask_event(raw) if masked else raw)
    return state


def steps(*, stream: Stream, masked: bool, upto: int | None = None, since: int = 1) -> Iterator[Step]:
    """Each event from sequence `since` up to sequence `upto`, with the state after it and what it
    changed. The events before `since` are folded into the state first, and are not shown."""
    fold, _ = fold_for(stream.category)
    state = _state_before(stream, since, fold=fold, masked=masked)
    for raw in _events(stream, after=max(since, 1) - 1, upto=upto):
        event = masking.mask_event(raw) if masked else raw
        after = fold(state, event)
        yield Step(event=event, changes=diff(state, after), state=after)
        state = after


def stream_timeline(*, stream: Stream, events: list[Event], masked: bool) -> dict[int, Step]:
    """The steps of the given events (a page of the stream), by sequence: the fold runs from the first
    event to the newest on the page, since what an event changed depends on everything before it."""
    if not events:
        return {}
    wanted = {event.sequence for event in events}
    return {
        step.event.sequence: step
        for step in steps(stream=stream, masked=masked, upto=max(wanted), since=min(wanted))
        if step.event.sequence in wanted
    }


@dataclass(frozen=True)
class StateAsOf:
    stream: Stream
    state: dict[str, Any]
    sequence: int  # 0: before the first event
    recorded_at: dt.datetime | None
    fold: str  # "merge" or the name of the projection whose fold_stream made it


def state_as_of(
    *, stream: Stream, masked: bool, sequence: int | None = None, at: dt.datetime | None = None
) -> StateAsOf:
    """The state after event `sequence`, or at time `at`: after the last event recorded at or before it
    (an imported stream may carry times out of sequence order; the stream's order is the sequence)."""
    if at is not None:
        recorded = Event.objects.filter(stream=stream, recorded_at__lte=at)
        sequence = recorded.aggregate(last=Max("sequence"))["last"] or 0
    last: Step | None = None
    if sequence != 0:
        # The last step only: the events before it are folded without their changes.
        since = stream.version if sequence is None else min(sequence, stream.version)
        for last in steps(stream=stream, masked=masked, upto=sequence, since=since):  # noqa: B007
            pass
    _, provider = fold_for(stream.category)
    return StateAsOf(
        stream=stream,
        state=last.state if last else {},
        sequence=last.event.sequence if last else 0,
        recorded_at=last.event.recorded_at if last else None,
        fold=provider or "merge",
    )
