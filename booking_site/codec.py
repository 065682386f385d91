"""The codec endpoint for operators: the Temporal UI (and ``temporal workflow show
--codec-endpoint``) asks it to decrypt the payloads it shows, as Temporal's codec server sample
answers them. Staff only, through the admin's login: decrypted payloads carry payment codes.

The UI calls it from the browser, across origins: ``POST {endpoint}/decode`` with a JSON
``Payloads`` body and an ``X-Namespace`` header, after a CORS preflight; with "include cross-origin
credentials" on, the staff member's session cookie goes along (docs/OPERATIONS.md, "Reading
encrypted payloads"). Only the origins in CODEC_ALLOWED_ORIGINS are answered with CORS headers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from common.payload_codec import EncryptionCodec

Transform = Callable[[EncryptionCodec], Callable[[Sequence[Payload]], Any]]
ALLOWED_HEADERS = "content-type,x-namespace,authorization"


def _cors(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    origin = request.headers.get("Origin")
    if origin and origin in settings.CODEC_ALLOWED_ORIGINS:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Credentials"] = "true"  # the session cookie says who asks
        response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
        response["Access-Control-Allow-Headers"] = ALLOWED_HEADERS
        response["Access-Control-Max-Age"] = "600"
    response["Vary"] = "Origin"
    return response


def _failure(request: HttpRequest, status: int, code: str, message: str) -> HttpResponse:
    return _cors(request, JsonResponse({"error": code, "message": message}, status=status))


def _endpoint(transform: Transform) -> Callable[[HttpRequest], HttpResponse]:
    # No CSRF token can come from another origin's UI. Only an application/json body is read,
    # which no cross-site form can send without a preflight that foreign origins fail, and the
    # answer changes nothing.
    @csrf_exempt
    def view(request: HttpRequest) -> HttpResponse:
        if request.method == "OPTIONS":  # the preflight carries no cookie: answered to anyone
            return _cors(request, HttpResponse(status=204))
        if request.method != "POST":
            reply = _failure(request, 405, "METHOD_NOT_ALLOWED", "Use POST here")
            reply["Allow"] = "POST, OPTIONS"
            return reply
        user = request.user
        if not (user.is_authenticated and user.is_active and user.is_staff):
            return _failure(request, 403, "STAFF_ONLY", "Sign in to the admin as staff to read payloads")
        if request.content_type != "application/json":
            return _failure(request, 415, "UNSUPPORTED_MEDIA_TYPE", "Send the payloads as application/json")
        if settings.PAYLOAD_KEYS is None:
            return _failure(request, 409, "ENCRYPTION_OFF", "PAYLOAD_ENCRYPTION_KEYS is not set here")
        try:
            payloads = json_format.Parse(request.body, Payloads()).payloads
            result = asyncio.run(transform(EncryptionCodec(settings.PAYLOAD_KEYS))(payloads))
        except (json_format.ParseError, ValueError) as error:
            return _failure(request, 400, "INVALID_PAYLOADS", str(error)[:300])
        body = json_format.MessageToJson(Payloads(payloads=result))
        return _cors(request, HttpResponse(body, content_type="application/json"))

    return view


decode = _endpoint(lambda codec: codec.decode)
encode = _endpoint(lambda codec: codec.encode)
