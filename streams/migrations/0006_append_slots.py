# Global order without a lock held through commit (docs/architecture.md, The store's guarantees): appends take one of a fixed set of
# "append slots" and readers stop before the lowest position any slot holder may still commit. The
# argument is in streams/services.py; the SQL lives here so that every writer and reader, in whatever
# process, uses the same functions.

from django.db import migrations

SLOTS = 64
# The first half of the two-int advisory lock key; job and consumer locks use the bigint form, a
# different key space.
SLOT_LOCK_CLASS = 0x7270  # "rp"
POSITIONS = "streams_event_position_seq"

# Unlogged: a floor matters only while its slot is held, and no slot outlives a crash; setting an
# unlogged sequence writes no WAL.
FLOORS = "\n".join(
    f"CREATE UNLOGGED SEQUENCE streams_append_floor_{k} MINVALUE 0 START 0 CACHE 1;" for k in range(SLOTS)
)

FLOOR_ARRAY = "ARRAY[" + ", ".join(f"'streams_append_floor_{k}'" for k in range(SLOTS)) + "]::regclass[]"

# Written for speed: every statement is an assignment or a condition (PL/pgSQL evaluates those directly;
# PERFORM would run a query), and the floors are an array of constants (no name look-up per call).
# The last position handed out (0 for a fresh store). The positions sequence must keep CACHE 1: a
# session's cache would hand out positions below a value a reader has already read.
LAST_POSITION = f"coalesce(pg_sequence_last_value('{POSITIONS}'::regclass), 0)"

FUNCTIONS = f"""
-- Called by an append before it draws positions. Takes a free slot (an exclusive transaction-scoped
-- advisory lock, so it is held until commit or rollback, a crash included) and records in the slot's
-- floor sequence (not transactional: visible at once) a position below every position this
-- transaction will draw. A transaction that already holds a slot keeps it: its first floor stays.
CREATE FUNCTION replaydesk_append_slot() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    held text := current_setting('replaydesk.append_slot', true);
    start integer := pg_backend_pid() % {SLOTS};
    floors regclass[] := {FLOOR_ARRAY};
    slot integer;
    done boolean;
BEGIN
    IF held IS NOT NULL AND held <> '' THEN
        RETURN held::integer;
    END IF;
    FOR i IN 0..{SLOTS - 1} LOOP
        IF pg_try_advisory_xact_lock({SLOT_LOCK_CLASS}, (start + i) % {SLOTS}) THEN
            slot := (start + i) % {SLOTS};
            EXIT;
        END IF;
    END LOOP;
    IF slot IS NULL THEN
        -- More appends in flight than slots: wait for this connection's own slot.
        slot := start;
        done := pg_advisory_xact_lock({SLOT_LOCK_CLASS}, slot) IS NULL;
    END IF;
    done := setval(floors[slot + 1], {LAST_POSITION}) IS NULL;
    held := set_config('replaydesk.append_slot', slot::text, true);
    RETURN slot;
END
$$;

-- The settled head: every position at or below it is committed or will never be. The last position
-- handed out is read first; then a slot held now belongs to an append that may still commit positions
-- above its floor, so the head stops at the lowest floor of a held slot. A shared try-lock tests a slot
-- without waiting, and a writer that finds the slot tested at that instant takes another one.
CREATE FUNCTION replaydesk_settled_head() RETURNS bigint LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    head bigint := {LAST_POSITION};
    floors regclass[] := {FLOOR_ARRAY};
    done boolean;
BEGIN
    FOR slot IN 0..{SLOTS - 1} LOOP
        IF pg_try_advisory_lock_shared({SLOT_LOCK_CLASS}, slot) THEN
            done := pg_advisory_unlock_shared({SLOT_LOCK_CLASS}, slot);
        ELSE
            -- NULL (a floor never set since the server started) means the holder has not drawn yet:
            -- its positions come after the head read above. least() passes over it.
            head := least(head, pg_sequence_last_value(floors[slot + 1]));
        END IF;
    END LOOP;
    RETURN head;
END
$$;
"""

DROP = "\n".join(
    [
        "DROP FUNCTION replaydesk_settled_head();",
        "DROP FUNCTION replaydesk_append_slot();",
        *(f"DROP SEQUENCE streams_append_floor_{k};" for k in range(SLOTS)),
    ]
)


class Migration(migrations.Migration):
    dependencies = [
        ("streams", "0005_actor_time_index"),
    ]

    operations = [
        migrations.RunSQL(FLOORS + FUNCTIONS, DROP),
    ]
