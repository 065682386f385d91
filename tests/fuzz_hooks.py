"""Schemathesis hooks for tests/test_fuzz.py (loaded through SCHEMATHESIS_HOOKS): realistic orders.

A flight id and seats drawn from the schema alone almost never name a real flight, so nearly every
generated order would be refused (400 FLIGHT_NOT_FOUND) and the stateful phase would have no order
to follow. Half of the *positive* creates and seat changes get real flights and seats instead
(FUZZ_FLIGHTS, written by the test from the database); negative cases are left alone, since
making them valid would turn an expected refusal into a "failure". Hypothesis draws the choice, so
a run is still reproduced by its seed.
"""

from __future__ import annotations

import json
import os
from typing import Any

import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode

# {flight id: [its seat codes]}
FLIGHTS: dict[str, list[str]] = json.loads(os.environ["FUZZ_FLIGHTS"])
# Seats that every flight has, for a seat change of an order on a flight the hook cannot know.
SEATS_ON_EVERY_FLIGHT = sorted(set.intersection(*(set(seats) for seats in FLIGHTS.values())))
MAX_SEATS = 4


def is_positive(case: Any) -> bool:
    return case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE


def seats_of(codes: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(codes), min_size=1, max_size=MAX_SEATS, unique=True)


def with_body(case: Any, body: dict[str, Any]) -> Any:
    case.body = {**case.body, **body} if isinstance(case.body, dict) else body
    return case


@schemathesis.hook("flatmap_case").apply_to(method="POST", path="/api/orders")
def real_orders(context: Any, case: Any) -> st.SearchStrategy[Any]:
    if not is_positive(case):
        return st.just(case)
    real = st.sampled_from(sorted(FLIGHTS)).flatmap(
        lambda flight: seats_of(FLIGHTS[flight]).map(lambda seats: {"flightId": flight, "seats": seats})
    )
    return st.one_of(st.just(case), real.map(lambda body: with_body(case, body)))


@schemathesis.hook("flatmap_case").apply_to(method=["POST", "PUT", "DELETE"])
def fresh_keys(context: Any, case: Any) -> st.SearchStrategy[Any]:
    """The run is one session, where Idempotency-Keys are scoped: the few short keys Hypothesis
    favours would mostly be reused (422) and hide everything else. Half of the positive cases
    that send a key send a UUID instead."""
    if not is_positive(case) or not case.headers or "Idempotency-Key" not in case.headers:
        return st.just(case)
    return st.one_of(st.just(case), st.uuids().map(lambda key: with_key(case, str(key))))


def with_key(case: Any, key: str) -> Any:
    case.headers = {**case.headers, "Idempotency-Key": key}
    return case


@schemathesis.hook("flatmap_case").apply_to(method="PUT", path_regex=r"/seats$")
def real_seat_changes(context: Any, case: Any) -> st.SearchStrategy[Any]:
    if not is_positive(case):
        return st.just(case)
    real = seats_of(SEATS_ON_EVERY_FLIGHT).map(lambda seats: with_body(case, {"seats": seats}))
    return st.one_of(st.just(case), real)
