"""The projection contract (docs/projections.md), checked when a projection class is defined: what
breaks it stops the start with a message naming the projection and what to change."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from demo.projections import AccessTable, UsersDirectory
from streams.projections import Projection, add, contract_errors, remove

TABLE = "CREATE TABLE seen (position bigint PRIMARY KEY)"


def define(**declared) -> type[Projection]:
    """A projection class with `declared` over a valid one; defining it checks the contract."""

    def apply(self, cursor, events):
        pass

    body = {"name": "test_contract", "tables": (TABLE,), "apply": apply, "__module__": "shop.projections"}
    return type("Orders", (Projection,), {**body, **declared}, register=False)


def test_the_demo_projections_keep_the_contract():
    assert contract_errors(UsersDirectory) == contract_errors(AccessTable) == []


@pytest.mark.parametrize(
    ("declared", "error"),
    [
        ({"name": "Orders-2"}, "name: use 1–40 of a-z, 0-9 and _, starting with a letter"),
        ({"version": 0}, "version is a whole number from 1, not 0"),
        ({"categories": "order"}, "categories is a tuple of strings (write ('order',) for one), not 'order'"),
        ({"categories": ("order-1",)}, "categories: 'order-1' (each is a string without '-')"),
        ({"types": ("1st",)}, "types: '1st' (each is a string starting with a letter)"),
        ({"tables": ()}, "tables: declare at least one CREATE TABLE statement"),
        (
            {"tables": ("CREATE INDEX seen_at ON seen (position)",)},
            "tables: declare at least one CREATE TABLE",
        ),
        (
            {"tables": ("DROP TABLE users",)},
            "'DROP TABLE users' is not a CREATE TABLE or CREATE",
        ),
        (
            {"tables": ("CREATE TABLE public.seen (n int)",)},
            "'CREATE TABLE public.seen (n int)' names a",
        ),
        ({"tables": ('CREATE INDEX s ON "public".seen (n)', TABLE)}, "names a schema; names are unqualified"),
        ({"tables": ("CREATE TABLE a (n int); DROP TABLE b",)}, "tables: one statement each, no ';' inside"),
        ({"tables": ("CREATE TABLE checkpoint (n int)",)}, "tables: checkpoint is the runner's own table"),
        (
            {"apply": Projection.apply},
            "defines neither apply(cursor, events) nor apply_rows",
        ),
        ({"on_failure": "skip"}, "on_failure is 'stop' or 'park', not 'skip'"),
        ({"batch_size": 0}, "batch_size is a whole number from 1, not 0"),
        ({"max_attempts": True}, "max_attempts is a whole number from 1, not True"),
        ({"replay_batch_size": -5}, "replay_batch_size is None or a whole number from 1, not -5"),
        ({"fold_reads_indexes": "no"}, "fold_reads_indexes is True or False, not 'no'"),
        ({"forget": "users"}, "forget is a method"),
    ],
)
def test_a_projection_that_breaks_the_contract_is_refused_by_name_when_defined(declared, error):
    with pytest.raises(ImproperlyConfigured) as refused:
        define(**declared)

    message = str(refused.value)
    assert message.startswith(
        f"projection {declared.get('name', 'test_contract')!r} (shop.projections.Orders)"
    )
    assert "breaks the projection contract (docs/projections.md): " in message
    assert error in message


def test_every_break_is_named_at_once():
    with pytest.raises(ImproperlyConfigured) as refused:
        define(version="2", tables=(), on_failure="retry")

    assert str(refused.value).count("; ") == 2


def test_a_set_based_projection_with_tables_and_an_index_keeps_the_contract():
    def apply_rows(self, cursor, rows):
        pass

    declared = {
        "apply": Projection.apply,
        "apply_rows": apply_rows,
        "tables": (
            'CREATE UNLOGGED TABLE IF NOT EXISTS "Seen" (n int)',
            "create unique index if not exists seen_n on only seen using btree (n)",
            "CREATE INDEX ON seen (n);",
        ),
    }
    assert define(**declared).set_based


def test_a_second_projection_of_one_name_from_another_app_is_refused_naming_both():
    add(define())
    try:
        twin = define(__module__="billing.projections")
        with pytest.raises(ImproperlyConfigured) as refused:
            add(twin)
    finally:
        remove("test_contract")

    assert str(refused.value).startswith(
        "two projections are named 'test_contract': shop.projections.Orders and billing.projections.Orders"
    )
