"""The test suite holds every answer of the JSON API to its OpenAPI document (booking_site/openapi.yaml).

``ContractMiddleware`` is installed (outermost) for the whole run, in the live server and in
Django's test client alike; it checks each answer under ``/api/`` and the probes with
openapi-core and keeps what is wrong in ``VIOLATIONS``, which an autouse fixture in conftest.py
turns into a failure of the test that caused it. So any test that reaches a view the document does
not describe — a status, a field, a header, an error code — fails, with the reason.

Answers the document cannot describe as operations are held to its rules too: a path it does not
name answers ``404 NOT_FOUND`` and a method a path does not take answers ``405
METHOD_NOT_ALLOWED`` with ``Allow`` naming exactly the documented methods, both in the ``Error``
shape.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from typing import Any

import jsonschema
from django.http import HttpRequest, HttpResponse
from openapi_core import OpenAPI
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.testing import MockRequest, MockResponse

from booking_site.openapi import document

VIOLATIONS: list[str] = []
CHECKED: list[str] = []  # what was checked ("GET /api/flights -> 200"), for the tests of this check
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@cache
def _openapi() -> OpenAPI:
    return OpenAPI.from_dict(document())


def is_covered(path: str) -> bool:
    return path.startswith("/api/") or path in {"/api", "/healthz", "/livez", "/readyz"}


def violation(request: HttpRequest, response: HttpResponse) -> str | None:
    """What is wrong with this answer by the document, or None."""
    body = response.content
    where = f"{request.method} {request.path} -> {response.status_code}"
    if not _ids_fit(request.path):  # openapi-core takes an empty segment for an id
        return _answer_to_no_path(where, response)
    try:
        _openapi().validate_response(
            MockRequest(
                "http://testserver",
                request.method or "GET",
                request.path,
                headers=dict(request.headers),
                content_type=request.content_type or "",
            ),
            MockResponse(
                body,
                status_code=response.status_code,
                headers=dict(response.headers),
                content_type=response.get("Content-Type", ""),
            ),
        )
    except PathNotFound:
        return _answer_to_no_path(where, response)
    except OperationNotFound:
        return _answer_to_no_method(where, request.path, response)
    except Exception as error:  # every way openapi-core says "not as documented"
        return f"{where}: {_reason(error)}\n  body: {body[:500]!r}"
    return None


def _answer_to_no_path(where: str, response: HttpResponse) -> str | None:
    return _error_shape(where, response, status=404, code="NOT_FOUND")


def _answer_to_no_method(where: str, path: str, response: HttpResponse) -> str | None:
    template, item = _path_item(path)
    if response.status_code == 404 and not _ids_valid(template, item, path):
        return _error_shape(where, response, status=404, code="NOT_FOUND")  # no such path after all
    documented = [method.upper() for method in HTTP_METHODS if method in item]
    if response.get("Allow") != ", ".join(documented):
        return f"{where}: Allow is {response.get('Allow')!r}, the document says {', '.join(documented)}"
    return _error_shape(where, response, status=405, code="METHOD_NOT_ALLOWED")


def _error_shape(where: str, response: HttpResponse, *, status: int, code: str) -> str | None:
    if response.status_code != status or not response.get("Content-Type", "").startswith("application/json"):
        return f"{where}: expected a JSON {status} {code}, got {response.get('Content-Type')}"
    body = json.loads(response.content)
    try:
        jsonschema.validate(body, document()["components"]["schemas"]["Error"])
    except jsonschema.ValidationError as error:
        return f"{where}: {error.message}"
    return None if body["error"] == code else f"{where}: error {body['error']!r}, expected {code}"


def _path_item(path: str) -> tuple[str, dict[str, Any]]:
    for template, item in document()["paths"].items():
        if _values(template, path) is not None:
            return template, item
    raise AssertionError(f"openapi-core matched {path}, but no path of the document does")


def _values(template: str, path: str) -> dict[str, str] | None:
    """The path's parameter values if it has the template's shape, else None."""
    parts, given = template.split("/"), path.split("/")
    if len(parts) != len(given):
        return None
    values = {}
    for part, value in zip(parts, given, strict=True):
        if part.startswith("{"):
            values[part[1:-1]] = value
        elif part != value:
            return None
    return values


def _ids_fit(path: str) -> bool:
    """False when the path has a documented path's shape but an id in it does not fit its schema."""
    for template, item in document()["paths"].items():
        if _values(template, path) is not None:
            return _ids_valid(template, item, path)
    return True


def _ids_valid(template: str, item: dict[str, Any], path: str) -> bool:
    """Whether each id in the path matches its schema (a path whose ids cannot be ids is a 404)."""
    components = document()["components"]
    values = _values(template, path) or {}
    for reference in item.get("parameters", []):
        parameter = components["parameters"][reference["$ref"].rsplit("/", 1)[-1]]
        schema = components["schemas"][parameter["schema"]["$ref"].rsplit("/", 1)[-1]]
        if not re.search(schema["pattern"], values[parameter["name"]]):
            return False
    return True


def _reason(error: BaseException) -> str:
    """openapi-core wraps the schema errors it finds; say what they are."""
    reasons = [f"{type(error).__name__}: {error}"]
    for inner in getattr(error, "schema_errors", None) or ():
        reasons.append(f"  {getattr(inner, 'message', inner)} at {list(getattr(inner, 'path', []))}")
    if error.__cause__ is not None:
        reasons.append(_reason(error.__cause__))
    return "\n".join(reasons)


class ContractMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if is_covered(request.path) and not response.streaming:
            CHECKED.append(f"{request.method} {request.path} -> {response.status_code}")
            problem = violation(request, response)
            if problem:
                VIOLATIONS.append(problem)
        return response


__all__ = ["CHECKED", "VIOLATIONS", "ContractMiddleware", "violation"]
