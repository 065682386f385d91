"""The API's OpenAPI 3.1 document (``openapi.yaml`` beside this file): the contract that the API
page shows, clients read at ``/api/openapi.json``, and the tests and the fuzzer hold the server to.
"""

from __future__ import annotations

import copy
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from django.conf import settings
from django.http import HttpRequest, JsonResponse

from common.api import api_view
from common.errors import ErrorCode

SOURCE = Path(__file__).with_name("openapi.yaml")


@cache
def _source() -> dict[str, Any]:
    with SOURCE.open(encoding="utf-8") as file:
        return yaml.safe_load(file)


def document() -> dict[str, Any]:
    """The document as this server answers: with its own limit on seats per order."""
    served = copy.deepcopy(_source())
    served["components"]["schemas"]["SeatSelection"]["maxItems"] = settings.MAX_SEATS_PER_ORDER
    # Every code an error may carry: the one list, common.errors.ErrorCode (each operation's
    # responses narrow it to the codes that operation answers).
    codes = served["components"]["schemas"]["Error"]["properties"]["error"]
    codes["enum"] = [code.value for code in ErrorCode]
    return served


@api_view("GET")
def document_json(request: HttpRequest) -> JsonResponse:
    """GET /api/openapi.json: this API's OpenAPI 3.1 document."""
    return JsonResponse(document(), json_dumps_params={"ensure_ascii": False})
