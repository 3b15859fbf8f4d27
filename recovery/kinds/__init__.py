"""Job kinds: one JobKind subclass a module (recovery/kinds/base.py is the base class and the registry).

- snapshot: one slice, one REPEATABLE READ transaction (recovery/snapshots.py), catalogued.
- replay, restore, verify: a rebuild (recovery/kinds/rebuilds.py, recovery/rebuild.py): prepare a fresh
  schema (empty, or loaded from a snapshot), replay the log into it in parallel lanes up to the head at
  the start, follow the tail in order, then swap it in (replay, restore) or compare it with the live
  schema (verify). A replay of one stream repairs it in place instead.
- resync: re-deliver a range of the log to a sink, in order, at a rate limit.
- drill: a fault drill in a scratch database (recovery/drill), its report as the result.

The registry imports every module here on first use, so a new kind is found without being listed.
"""
