"""Bookings the Temporal UI can find by outcome and flight: every booking workflow completes,
whatever became of the booking, so its state and flight are custom search attributes
(orders.workflow_contract.SearchAttributes), registered by the dev server the stack starts."""

from __future__ import annotations

import os
import sysconfig

import pytest
from temporalio.testing import WorkflowEnvironment

from common import temporal_client
from orders.models import Order
from temporal_worker import search_attributes
from tests.helpers import wait_for

DEV_SERVER = os.path.join(sysconfig.get_path("scripts"), "temporal")


def workflow_ids(query: str) -> set[str]:
    async def listed(client):  # type: ignore[no-untyped-def]
        return {execution.id async for execution in client.list_workflows(query)}

    return temporal_client.call(listed, timeout=10)


@pytest.mark.django_db(transaction=True)
def test_failed_bookings_are_listed_by_their_state_and_flight(stack):
    customer = stack.customer()
    failed = customer.create_order("fl-101", ["18A"]).json["orderId"]
    holding = customer.create_order("fl-101", ["18B"]).json["orderId"]
    assert customer.post(f"/api/orders/{failed}/pay", {"paymentCode": "99999"}).status == 202
    customer.wait_for_status(failed, "FAILED", timeout=60)
    failed_workflow = Order.objects.get(id=failed).workflow_id

    listed = wait_for(  # visibility follows the workflow a moment later
        lambda: (ids := workflow_ids('BookingState="FAILED"')) and failed_workflow in ids and ids,
        timeout=10,
        what="the failed booking to be listed",
    )

    assert Order.objects.get(id=holding).workflow_id not in listed
    assert failed_workflow in workflow_ids('FlightId="fl-101" AND BookingState="FAILED"')
    assert failed_workflow not in workflow_ids('FlightId="fl-202"')
    assert Order.objects.get(id=holding).workflow_id in workflow_ids('BookingState="SEATS_RESERVED"')


async def test_the_worker_names_the_search_attributes_a_namespace_lacks():
    bare = await WorkflowEnvironment.start_local(dev_server_existing_path=DEV_SERVER)
    ready = await WorkflowEnvironment.start_local(
        dev_server_existing_path=DEV_SERVER, search_attributes=list(search_attributes.REQUIRED)
    )
    try:
        assert await search_attributes.missing(bare.client) == ["BookingState", "FlightId"]
        assert await search_attributes.missing(ready.client) == []
    finally:
        await bare.shutdown()
        await ready.shutdown()
