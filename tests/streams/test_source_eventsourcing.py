"""The eventsourcing library as a source: a real Application of the library, stored by its PostgreSQL
recorder in a scratch database, followed into the log exactly once, with streams by aggregate, the
library's versions as sequences, its event classes as types and its decoded state as data; what the
library's defaults cannot decode (compression, encryption or transcodings the source was not given) is
parked with the reason; bad configuration is refused with nothing saved; and writers appending from
several threads while it is followed lose nothing and keep each aggregate's order."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from decimal import Decimal

import pytest
from eventsourcing.application import Application
from eventsourcing.cryptography import AESCipher
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError, JSONTranscoder, Transcoding
from psycopg.conninfo import conninfo_to_dict

from streams import source_follow
from streams.models import Event, Source, SourceParkedEvent
from streams.source_kinds import derived_id
from streams.source_services import InvalidSource, add_source
from tests.streams.source_helpers import copy_all

pytestmark = pytest.mark.django_db(transaction=True)

TOPIC = __name__


class Order(Aggregate):
    @event("Created")
    def __init__(self, customer: str, total: Decimal):
        self.customer = customer
        self.total = total
        self.lines: list[str] = []

    @event("LineAdded")
    def add_line(self, sku: str, quantity: int) -> None:
        self.lines.append(sku)

    @event("Paid")
    def pay(self, reference: uuid.UUID, paid_at: dt.datetime) -> None:
        self.reference = reference


class LoyaltyCard(Aggregate):
    class Issued(Aggregate.Created):
        """The second version of its class: the library stores `class_version` with its state."""

        class_version = 2
        holder: str
        valid_until: dt.date | None

        @staticmethod
        def upcast_v1_v2(state: dict) -> None:
            state["valid_until"] = None

    @event(Issued)
    def __init__(self, holder: str, valid_until: dt.date | None = None):
        self.holder = holder


class Shop(Application):
    def place(self, customer: str, total: str) -> Order:
        order = Order(customer, Decimal(total))
        self.save(order)
        return order


class DateAsISO(Transcoding):
    type = dt.date
    name = "date_iso"

    def encode(self, obj: dt.date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> dt.date:
        return dt.date.fromisoformat(data)


class ShopWithDates(Shop):
    """The same shop, with a transcoding of its own for dates."""

    name = "Shop"

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())


@pytest.fixture
def shop_of(source_db):
    """Applications of the library stored in the scratch database; the reader role may read their
    events table once it exists."""
    made: list[Application] = []
    server = conninfo_to_dict(source_db.admin_url)

    def make(app_class: type[Application] = Shop, **settings: str) -> Application:
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": server["dbname"],
            "POSTGRES_HOST": server["host"],
            "POSTGRES_PORT": str(server.get("port") or 5432),
            "POSTGRES_USER": server["user"],
            "POSTGRES_PASSWORD": server.get("password") or "",
            "POSTGRES_POOL_SIZE": "2",
            "POSTGRES_MAX_OVERFLOW": "6",
            **settings,
        }
        app = app_class(env=env)
        made.append(app)
        source_db.grant_read(f"{app.name.lower()}_events")
        return app

    yield make
    for app in made:
        app.close()


def add_shop(source_db, name: str = "shop", **options):
    return add_source(
        name=name,
        kind="eventsourcing",
        dsn=source_db.reader_url,
        options={"application": "Shop", **options},
        actor="tests",
    )


def copied(stream: str) -> list[Event]:
    return list(Event.objects.filter(stream__name=stream).order_by("sequence"))


def stored(app: Application) -> list:
    """Every event the application recorded, in its order (the library's own notification log)."""
    return app.recorder.select_notifications(start=None, limit=100_000)


def test_an_application_is_copied_exactly_once_by_aggregate_with_types_data_and_times(source_db, shop_of):
    shop = shop_of()
    order = shop.place("ada", "12.50")
    order.add_line("tea", 2)
    reference = uuid.uuid4()
    paid_at = dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC)
    order.pay(reference, paid_at)
    shop.save(order)
    card = LoyaltyCard("ada")
    shop.save(card)
    source = add_shop(source_db)

    result = copy_all("shop")

    assert (result.copied, result.parked) == (4, 0)
    stream = f"order-{order.id}"
    created, line, paid = copied(stream)
    assert [(e.sequence, e.type) for e in (created, line, paid)] == [
        (1, "Order.Created"),
        (2, "Order.LineAdded"),
        (3, "Order.Paid"),
    ]
    # The state as the library's transcoder wrote it: Decimals and datetimes as strings, UUIDs canonical.
    assert created.data == {
        "customer": "ada",
        "total": "12.50",
        "originator_topic": f"{TOPIC}:Order",
        "timestamp": order.created_on.isoformat(),
    }
    assert created.recorded_at == order.created_on
    assert line.data["sku"] == "tea" and line.data["quantity"] == 2
    assert paid.data["reference"] == str(reference)
    assert paid.data["paid_at"] == paid_at.isoformat()
    assert paid.recorded_at == order.modified_on
    assert created.metadata["topic"] == f"{TOPIC}:Order.Created"
    assert [e.event_id for e in (created, line, paid)] == [derived_id(stream, n) for n in (1, 2, 3)]
    # Each aggregate class its category, in snake case.
    [issued] = copied(f"loyalty_card-{card.id}")
    assert (issued.type, issued.stream.category, issued.data["holder"]) == (
        "LoyaltyCard.Issued",
        "loyalty_card",
        "ada",
    )
    # Its class's version goes with the metadata: the data is the event's attributes as stored.
    assert issued.metadata["class_version"] == 2 and "class_version" not in issued.data
    source.refresh_from_db()
    last = stored(shop)[-1].id
    assert (source.position, source.head, source.events_copied) == (last, last, 4)

    # Following again copies nothing twice; what the application saves next follows.
    assert copy_all("shop").copied == 0
    order.add_line("cake", 1)
    shop.save(order)
    assert copy_all("shop").copied == 1
    assert [e.type for e in copied(stream)][-1] == "Order.LineAdded"
    assert [e.sequence for e in copied(stream)] == [1, 2, 3, 4]


def test_the_category_may_be_named_for_every_aggregate_or_by_aggregate_class(source_db, shop_of):
    shop = shop_of()
    order = shop.place("ada", "1")
    card = LoyaltyCard("ada")
    shop.save(card)

    add_shop(source_db, "one", category="shop")
    add_shop(source_db, "by_class", category="Order=orders")
    copy_all("one")
    copy_all("by_class")

    assert len(copied(f"shop-{order.id}")) == 1 and len(copied(f"shop-{card.id}")) == 1
    assert len(copied(f"orders-{order.id}")) == 1 and len(copied(f"loyalty_card-{card.id}")) == 1


def test_compressed_state_is_decoded_with_the_same_compressor_and_parked_with_the_reason_without(
    source_db, shop_of
):
    shop = shop_of(COMPRESSOR_TOPIC="eventsourcing.compressor:ZlibCompressor")
    order = shop.place("ada", "3.00")
    order.add_line("tea", 1)
    shop.save(order)

    add_shop(source_db, "unzipped")
    result = copy_all("unzipped")

    assert (result.copied, result.parked) == (0, 2)
    reasons = set(SourceParkedEvent.objects.values_list("reason", flat=True))
    assert reasons == {
        "its state is compressed (zlib): give the source the application's compressor_topic "
        "(COMPRESSOR_TOPIC, e.g. eventsourcing.compressor:ZlibCompressor)"
    }
    assert set(SourceParkedEvent.objects.values_list("stream", "sequence", "type")) == {
        (f"order-{order.id}", 1, "Order.Created"),
        (f"order-{order.id}", 2, "Order.LineAdded"),
    }
    assert not copied(f"order-{order.id}")

    add_shop(source_db, "zipped", compressor_topic="eventsourcing.compressor:ZlibCompressor")
    assert copy_all("zipped").copied == 2
    assert [e.data.get("customer", e.data.get("sku")) for e in copied(f"order-{order.id}")] == ["ada", "tea"]


def test_encrypted_state_is_decoded_with_the_key_named_by_an_environment_variable(
    source_db, shop_of, monkeypatch
):
    key = AESCipher.create_key(32)
    shop = shop_of(
        CIPHER_TOPIC="eventsourcing.cryptography:AESCipher",
        CIPHER_KEY=key,
        COMPRESSOR_TOPIC="eventsourcing.compressor:ZlibCompressor",
    )
    order = shop.place("ada", "3.00")
    monkeypatch.setenv("SHOP_CIPHER_KEY", AESCipher.create_key(32))
    codec = {
        "compressor_topic": "eventsourcing.compressor:ZlibCompressor",
        # What the application's settings would say; the same bytes as eventsourcing.cryptography's.
        "cipher_topic": "eventsourcing.cipher:AESCipher",
        "cipher_key_env": "SHOP_CIPHER_KEY",
    }

    add_shop(source_db, "told_nothing")
    assert copy_all("told_nothing").parked == 1
    told_nothing = SourceParkedEvent.objects.get(source__name="told_nothing").reason
    assert told_nothing.startswith("its state is not the library's JSON: the application encrypts")

    add_shop(source_db, "wrong_key", **codec)
    assert copy_all("wrong_key").parked == 1
    wrong_key = SourceParkedEvent.objects.get(source__name="wrong_key").reason
    assert wrong_key.startswith("its state cannot be decrypted with eventsourcing.cipher:AESCipher")
    assert "is the key in SHOP_CIPHER_KEY the application's CIPHER_KEY?" in wrong_key

    monkeypatch.setenv("SHOP_CIPHER_KEY", key)
    source = add_shop(source_db, "right_key", **codec)
    assert copy_all("right_key").copied == 1
    assert copied(f"order-{order.id}")[0].data["customer"] == "ada"
    # The key is never stored: neither in the source's options nor in the audit trail.
    audited = Event.objects.filter(stream__name="console-source.right_key").values_list("data", flat=True)
    assert key not in json.dumps(source.options) and key not in json.dumps(list(audited))


def test_an_event_needing_the_applications_own_transcoding_is_parked_and_the_rest_copied(source_db, shop_of):
    shop = shop_of(ShopWithDates)
    dated = LoyaltyCard("ada", valid_until=dt.date(2027, 1, 31))
    plain = LoyaltyCard("bob")
    shop.save(dated, plain)
    add_shop(source_db)

    result = copy_all("shop")

    assert (result.copied, result.parked) == (1, 1)
    [parked] = SourceParkedEvent.objects.all()
    assert parked.stream == f"loyalty_card-{dated.id}"
    assert "a transcoding of its own" in parked.reason and "'date_iso'" in parked.reason
    assert copied(f"loyalty_card-{plain.id}")[0].data["holder"] == "bob"


def bad(source_db, **given):
    arguments = {
        "name": "shop",
        "kind": "eventsourcing",
        "dsn": source_db.reader_url,
        "options": {"application": "Shop"},
        **given,
    }
    with pytest.raises(InvalidSource) as refused:
        add_source(actor="tests", **arguments)
    return refused.value.errors


def test_bad_configuration_is_a_clear_error_and_saves_nothing(source_db, shop_of, monkeypatch):
    shop_of().place("ada", "1")
    audited = Event.objects.count()

    unknown = bad(source_db, options={"application": "Warehouse"})["dsn"][0]
    assert "no table public.warehouse_events" in unknown and "named Warehouse" in unknown
    elsewhere = bad(source_db, options={"application": "Shop", "schema": "sales"})["dsn"][0]
    assert "no table sales.shop_events" in elsewhere and "POSTGRES_SCHEMA=sales" in elsewhere
    # The application's own role may write there: following needs only SELECT.
    assert "may write to public.shop_events" in bad(source_db, dsn=source_db.admin_url)["dsn"][0]
    source_db.execute(f"REVOKE SELECT ON shop_events FROM {source_db.role}")
    assert "may not read public.shop_events" in bad(source_db)["dsn"][0]
    # An aggregate recorder's table keeps no order of the application's events.
    source_db.execute("CREATE TABLE ledger_events (originator_id uuid, originator_version int, state bytea)")
    source_db.grant_read("ledger_events")
    assert "no notification_id" in bad(source_db, options={"application": "Ledger"})["dsn"][0]

    assert bad(source_db, options={})["options.application"]
    assert bad(source_db, options={"application": "Shop!"})["options.application"]
    assert bad(source_db, options={"application": "Shop", "colour": "red"})["options.colour"]
    assert bad(source_db, options={"application": "Shop", "category": "or-der"})["options.category"]
    gzip = bad(source_db, options={"application": "Shop", "compressor_topic": "gzip"})
    assert "eventsourcing.compressor:ZlibCompressor" in gzip["options.compressor_topic"][0]
    cipher = {"application": "Shop", "cipher_topic": "eventsourcing.cipher:AESCipher"}
    assert "CIPHER_KEY" in bad(source_db, options=cipher)["options.cipher_key_env"][0]
    unset = bad(source_db, options={**cipher, "cipher_key_env": "RD_NOT_SET_ANYWHERE"})
    assert unset["options.cipher_key_env"] == [
        "the environment variable RD_NOT_SET_ANYWHERE that holds the CIPHER_KEY is not set"
    ]
    monkeypatch.setenv("SHOP_CIPHER_KEY", "not a key")
    not_a_key = bad(source_db, options={**cipher, "cipher_key_env": "SHOP_CIPHER_KEY"})
    assert "is not an AES key" in not_a_key["options.cipher_key_env"][0]
    # The key itself where its variable's name goes: refused, and never echoed back.
    key = AESCipher.create_key(16)
    pasted = bad(source_db, options={**cipher, "cipher_key_env": key})["options.cipher_key_env"][0]
    assert key not in pasted

    assert not Source.objects.exists() and Event.objects.count() == audited


def test_writers_on_several_threads_while_following_lose_nothing_and_keep_each_aggregates_order(
    source_db, shop_of
):
    shop = shop_of()
    hot = shop.place("everyone", "0")
    add_shop(source_db)
    failures: list[BaseException] = []

    def writer(number: int) -> None:
        try:
            mine = shop.place(f"writer-{number}", "1")
            for step in range(15):
                mine.add_line(f"sku-{number}-{step}", step)
                shop.save(mine)
                while True:  # the shared order: writers race for each next version
                    contended = shop.repository.get(hot.id)
                    contended.add_line(f"hot-{number}-{step}", 1)
                    try:
                        shop.save(contended)
                        break
                    except IntegrityError:
                        continue
        except BaseException as exc:  # pragma: no cover - reported by the assert below
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        result = source_follow.follow(name="shop", budget_seconds=0.5)
        assert not result.error, result.error
    for thread in threads:
        thread.join()
    assert not failures, failures
    copy_all("shop")

    notifications = stored(shop)
    by_aggregate: dict[uuid.UUID, list] = {}
    for notification in notifications:
        by_aggregate.setdefault(notification.originator_id, []).append(notification)
    assert len(by_aggregate) == 5 and len(by_aggregate[hot.id]) == 1 + 4 * 15
    for originator_id, events in by_aggregate.items():
        log = copied(f"order-{originator_id}")
        assert [(e.sequence, e.type) for e in log] == [
            (n.originator_version, n.topic.partition(":")[2]) for n in events
        ]
    assert Event.objects.filter(stream__category="order").count() == len(notifications)
    assert not SourceParkedEvent.objects.exists()
    source = Source.objects.get(name="shop")
    assert source.position == notifications[-1].id
