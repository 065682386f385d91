"""The booking workflow's custom search attributes (``orders.workflow_contract.SearchAttributes``) must be
registered with the namespace: a booking that sets one the namespace lacks is stuck, its workflow
task failing on every try. The worker checks at start, and says how to register them."""

from __future__ import annotations

from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.client import Client

from orders.workflow_contract import SearchAttributes

REQUIRED = (SearchAttributes.BOOKING_STATE, SearchAttributes.FLIGHT_ID)


async def missing(client: Client) -> list[str]:
    """The required search attributes the client's namespace does not have (Keyword each)."""
    reply = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace)
    )
    return [key.name for key in REQUIRED if key.name not in reply.custom_attributes]


def how_to_register(names: list[str], namespace: str) -> str:
    return "; ".join(
        f"temporal operator search-attribute create --namespace {namespace} --name {name} --type Keyword"
        for name in names
    )
