"""The order service: a small application that keeps its orders in Replaydesk as events, through
replaydesk-client. Each command loads the order from its stream, decides, and appends what happened
with the stream's version as the expected version, so that two commands on one order never both pass
on the same state (the loser decides again).

    python examples/orders/service.py --orders 5

plays a few customers: each order is placed, gets items, and is paid and shipped, or cancelled. It
prints one JSON line per order with what the order came to (what the read model, read_model.py, should
show). REPLAYDESK_URL (default http://127.0.0.1:8000) and REPLAYDESK_TOKEN say where and as whom.

Events, in streams `order-<id>` (the category is --category):

    OrderPlaced     {order_id, customer}
    ItemAdded       {order_id, sku, quantity, unit_price_cents}
    OrderPaid       {order_id, amount_cents, payment_id}
    OrderShipped    {order_id, carrier, tracking}
    OrderCancelled  {order_id, reason}
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import uuid
from dataclasses import dataclass, field

from replaydesk_client import Client, NewEvent, NotFound, WrongExpectedVersion

SKUS = {"mug": 1200, "tea-100g": 650, "kettle": 3900, "filter": 250}
CUSTOMERS = ["ada", "grace", "edsger", "barbara", "ken"]


class Refused(Exception):
    """The command is against the order's rules (pay an empty order, add to a shipped one)."""


@dataclass
class Order:
    """An order as the service decides with it: folded from its events."""

    stream: str
    version: int = 0
    order_id: str = ""
    customer: str = ""
    status: str = "new"
    lines: list[dict] = field(default_factory=list)
    payment_id: str = ""

    @property
    def total_cents(self) -> int:
        return sum(line["quantity"] * line["unit_price_cents"] for line in self.lines)

    def apply(self, event_type: str, data: dict) -> None:
        if event_type == "OrderPlaced":
            self.order_id, self.customer, self.status = data["order_id"], data["customer"], "placed"
        elif event_type == "ItemAdded":
            self.lines.append(data)
        elif event_type == "OrderPaid":
            self.status, self.payment_id = "paid", data["payment_id"]
        elif event_type == "OrderShipped":
            self.status = "shipped"
        elif event_type == "OrderCancelled":
            self.status = "cancelled"

    def summary(self) -> dict:
        return {
            "stream": self.stream,
            "order_id": self.order_id,
            "customer": self.customer,
            "status": self.status,
            "lines": len(self.lines),
            "total_cents": self.total_cents,
        }


class Orders:
    """The commands. Each one runs `decide` on the order as it is now and appends what it returns;
    when another command got there first (WrongExpectedVersion), it loads the order again and decides
    again."""

    def __init__(self, client: Client, category: str = "order", actor: str = "orders-service"):
        self.client = client
        self.category = category
        self.actor = actor

    def load(self, order_id: str) -> Order:
        order = Order(stream=f"{self.category}-{order_id}")
        try:
            for event in self.client.read_stream(order.stream):
                order.apply(event.type, event.data)
                order.version = event.sequence
        except NotFound:
            pass  # no events yet: a new order
        return order

    def place(self, order_id: str, customer: str) -> Order:
        def decide(order: Order) -> list[NewEvent]:
            if order.status != "new":
                raise Refused(f"order {order_id} exists already")
            return [NewEvent("OrderPlaced", {"order_id": order_id, "customer": customer})]

        return self._run(order_id, decide)

    def add_item(self, order_id: str, sku: str, quantity: int) -> Order:
        def decide(order: Order) -> list[NewEvent]:
            if order.status != "placed":
                raise Refused(f"order {order_id} is {order.status}: no more items")
            if quantity < 1 or sku not in SKUS:
                raise Refused(f"no {quantity} × {sku}")
            data = {"order_id": order_id, "sku": sku, "quantity": quantity, "unit_price_cents": SKUS[sku]}
            return [NewEvent("ItemAdded", data)]

        return self._run(order_id, decide)

    def pay(self, order_id: str, payment_id: str) -> Order:
        """The payment provider confirms a payment, maybe more than once: the same payment again
        changes nothing."""

        def decide(order: Order) -> list[NewEvent]:
            if order.payment_id == payment_id:
                return []
            if order.status != "placed" or not order.lines:
                raise Refused(f"order {order_id} is {order.status}, {len(order.lines)} lines: not payable")
            data = {"order_id": order_id, "amount_cents": order.total_cents, "payment_id": payment_id}
            return [NewEvent("OrderPaid", data)]

        return self._run(order_id, decide)

    def ship(self, order_id: str, carrier: str) -> Order:
        def decide(order: Order) -> list[NewEvent]:
            if order.status != "paid":
                raise Refused(f"order {order_id} is {order.status}: not shippable")
            tracking = f"{carrier[:3].upper()}{uuid.uuid4().hex[:10]}"
            data = {"order_id": order_id, "carrier": carrier, "tracking": tracking}
            return [NewEvent("OrderShipped", data)]

        return self._run(order_id, decide)

    def cancel(self, order_id: str, reason: str) -> Order:
        def decide(order: Order) -> list[NewEvent]:
            if order.status not in ("placed", "paid"):
                raise Refused(f"order {order_id} is {order.status}: cannot be cancelled")
            return [NewEvent("OrderCancelled", {"order_id": order_id, "reason": reason})]

        return self._run(order_id, decide)

    def _run(self, order_id: str, decide) -> Order:
        while True:
            order = self.load(order_id)
            events = [NewEvent(e.type, e.data, {"actor": self.actor}) for e in decide(order)]
            if not events:
                return order
            try:
                self.client.append(order.stream, events, expected_version=order.version or "no_stream")
            except WrongExpectedVersion:
                continue  # another command changed the order meanwhile: decide again
            for event in events:
                order.apply(event.type, event.data)
            return order


def play(orders: Orders, count: int, rng: random.Random) -> list[Order]:
    """`count` customers' orders: placed, one to three items, then paid and shipped, paid only, or
    cancelled."""
    done = []
    for _ in range(count):
        order_id = uuid.UUID(int=rng.getrandbits(128)).hex[:12]
        orders.place(order_id, rng.choice(CUSTOMERS))
        for sku in rng.sample(sorted(SKUS), rng.randint(1, 3)):
            orders.add_item(order_id, sku, rng.randint(1, 4))
        fate = rng.random()
        if fate < 0.2:
            order = orders.cancel(order_id, "customer changed their mind")
        else:
            payment_id = f"pay_{rng.getrandbits(40):x}"
            order = orders.pay(order_id, payment_id)
            orders.pay(order_id, payment_id)  # confirmed twice by the provider: appends nothing
            if fate < 0.8:
                order = orders.ship(order_id, rng.choice(["dhl", "ups", "post"]))
        done.append(order)
    return done


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=5, help="how many orders to play (5)")
    parser.add_argument("--category", default="order", help="the streams' category (order)")
    parser.add_argument("--seed", type=int, default=None, help="for the same orders again")
    args = parser.parse_args(argv)
    url = os.environ.get("REPLAYDESK_URL", "http://127.0.0.1:8000")
    token = os.environ.get("REPLAYDESK_TOKEN") or sys.exit("set REPLAYDESK_TOKEN (replaydesk token USER)")
    with Client(url, token) as client:
        for order in play(Orders(client, args.category), args.orders, random.Random(args.seed)):
            print(json.dumps(order.summary()), flush=True)


if __name__ == "__main__":
    main()
