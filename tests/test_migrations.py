"""Migrations that change existing rows, run on rows (the suite's database starts empty)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)
BEFORE, AFTER = [("orders", "0006_order_client_address_hold_life")], [("orders", "0007_order_reference")]


def migrate(targets: list[tuple[str, str]]):  # type: ignore[no-untyped-def]
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


def latest() -> list[tuple[str, str]]:
    """Every app's newest migration: where the rest of the suite expects the database to be."""
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def test_orders_made_before_booking_references_each_get_their_own(demo_flights):
    old = migrate(BEFORE)
    try:
        Order = old.get_model("orders", "Order")
        for n in range(3):
            Order.objects.create(
                id=f"ord-{n:016d}", flight_id="fl-101", state="CONFIRMED", seats=[f"{n + 1}A"]
            )
        new = migrate(AFTER)
        references = list(new.get_model("orders", "Order").objects.values_list("reference", flat=True))
    finally:
        migrate(latest())

    assert len(references) == 3 and len(set(references)) == 3
    assert all(len(reference) == 6 and reference.isalnum() for reference in references)
