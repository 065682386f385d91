"""Schemathesis hooks for tests/test_fuzz.py (loaded through SCHEMATHESIS_HOOKS): realistic orders,
and hostile text.

A flight id and seats drawn from the schema alone almost never name a real flight, so nearly every
generated order would be refused (400 FLIGHT_NOT_FOUND) and the stateful phase would have no order
to follow. Half of the *positive* creates and seat changes get real flights and seats instead
(FUZZ_FLIGHTS, written by the test from the database); negative cases are left alone, since
making them valid would turn an expected refusal into a "failure". Hypothesis draws the choice, so
a run is still reproduced by its seed.

Input drawn from a schema seldom holds what breaks a store or a parser: a NUL (which PostgreSQL
refuses), a number of thousands of digits, nesting over a thousand levels deep, a body over the
size limit. One case in eight, of every operation, gets one of those in a path parameter, a body
field or an extra body field (`hostile_input`); schemathesis sees that the case changed and
judges it as the negative case it now is.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.generation.meta import TestPhase

# {flight id: [its seat codes]}
FLIGHTS: dict[str, list[str]] = json.loads(os.environ["FUZZ_FLIGHTS"])
# Seats that every flight has, for a seat change of an order on a flight the hook cannot know.
SEATS_ON_EVERY_FLIGHT = sorted(set.intersection(*(set(seats) for seats in FLIGHTS.values())))
MAX_SEATS = 4
# The client must be able to write what the server must refuse.
sys.set_int_max_str_digits(0)
sys.setrecursionlimit(20_000)


def is_positive(case: Any) -> bool:
    return case.meta is not None and case.meta.generation.mode == GenerationMode.POSITIVE


def is_stateful(case: Any) -> bool:
    return case.meta is not None and case.meta.phase.name == TestPhase.STATEFUL


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


# Not lone surrogates: schemathesis re-validates a changed case, and its validator cannot take
# them (UnicodeEncodeError); tests/test_hostile_input.py sends them instead.
HOSTILE_TEXT = st.sampled_from(["\x00", "a\x00b", "\x00" * 3])
HOSTILE_PATH_TEXT = st.sampled_from(["\x00", "\x00\x00", "\u00e9", "x" * 300])
NESTED: list[Any] = []
# Over the server's limit and its JSON parser's (1,000); the client's serializer recurses several
# frames a level, and ran out at 2,000 levels with 10,000 frames (make fuzz, seed 468224631).
for _ in range(1200):
    NESTED = [NESTED]
HOSTILE_VALUES = st.sampled_from(
    [
        int("7" * 5000),  # int() refuses more than 4,300 digits, unless told otherwise
        float("1" + "0" * 300),
        ["x"] * 5000,  # 25 KB
        NESTED,
        {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": 1}}}}}}}}},
    ]
)


@schemathesis.hook("flatmap_case")
def hostile_input(context: Any, case: Any) -> st.SearchStrategy[Any]:
    choices: list[st.SearchStrategy[Any]] = []
    # Not the ids a stateful step took from a link: it must reach the order the link names.
    if case.path_parameters and not is_stateful(case):
        name = st.sampled_from(sorted(case.path_parameters))
        choices.append(st.tuples(name, HOSTILE_PATH_TEXT).map(lambda change: in_path(case, *change)))
    if isinstance(case.body, dict):
        texts = sorted(key for key, value in case.body.items() if isinstance(value, str))
        if texts:
            change = st.tuples(st.sampled_from(texts), HOSTILE_TEXT)
            choices.append(change.map(lambda change: text_in_body(case, *change)))
        choices.append(st.tuples(HOSTILE_TEXT, HOSTILE_VALUES).map(lambda extra: extra_in_body(case, *extra)))
    if not choices:
        return st.just(case)
    return st.integers(0, 7).flatmap(lambda n: st.one_of(*choices) if n == 0 else st.just(case))


def in_path(case: Any, name: str, text: str) -> Any:
    case.path_parameters = {**case.path_parameters, name: f"{case.path_parameters[name]}{text}"}
    return case


def text_in_body(case: Any, key: str, text: str) -> Any:
    value = case.body[key]
    case.body = {**case.body, key: value[: len(value) // 2] + text + value[len(value) // 2 :]}
    return case


def extra_in_body(case: Any, key: str, value: Any) -> Any:
    case.body = {**case.body, key: value}
    return case
