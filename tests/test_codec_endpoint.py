"""The codec endpoint the Temporal UI asks to decrypt payloads: staff only, CORS for the UI."""

from __future__ import annotations

import asyncio
import json

import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads

from common.payload_codec import EncryptionCodec, new_key_entry, parse_keys

UI = "http://localhost:8233"
CODE = "24680"


@pytest.fixture
def keys(settings):  # type: ignore[no-untyped-def]
    settings.PAYLOAD_KEYS = parse_keys(new_key_entry("ops-1"))
    settings.CODEC_ALLOWED_ORIGINS = [UI]
    return settings.PAYLOAD_KEYS


def _sealed_body(keys) -> str:  # type: ignore[no-untyped-def]
    plain = Payload(metadata={"encoding": b"json/plain"}, data=f'{{"payment_code": "{CODE}"}}'.encode())
    [sealed] = asyncio.run(EncryptionCodec(keys).encode([plain]))
    return json_format.MessageToJson(Payloads(payloads=[sealed]))


def _decode(client, body: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/codec/decode", body, content_type="application/json", HTTP_ORIGIN=UI, HTTP_X_NAMESPACE="default"
    )


def test_staff_get_the_payloads_decrypted_with_the_cors_the_ui_needs(client, admin_user, keys):
    client.force_login(admin_user)
    response = _decode(client, _sealed_body(keys))
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == UI
    assert response["Access-Control-Allow-Credentials"] == "true"
    [payload] = json_format.Parse(response.content, Payloads()).payloads
    assert payload.metadata["encoding"] == b"json/plain"
    assert json.loads(payload.data) == {"payment_code": CODE}


def test_encode_seals_what_the_ui_sends(client, admin_user, keys):
    client.force_login(admin_user)
    plain = Payloads(payloads=[Payload(metadata={"encoding": b"json/plain"}, data=b'"hello"')])
    response = client.post("/codec/encode", json_format.MessageToJson(plain), content_type="application/json")
    assert response.status_code == 200
    [sealed] = json_format.Parse(response.content, Payloads()).payloads
    assert sealed.metadata["encryption-key-id"] == b"ops-1"
    assert EncryptionCodec(keys).decrypt(sealed) == plain.payloads[0]


def test_anyone_but_staff_is_refused(client, django_user_model, keys):
    body = _sealed_body(keys)
    anonymous = _decode(client, body)
    assert anonymous.status_code == 403
    assert anonymous.json()["error"] == "STAFF_ONLY"
    assert CODE not in anonymous.content.decode()
    customer = django_user_model.objects.create_user(username="customer", password="x" * 20)
    client.force_login(customer)
    assert _decode(client, body).status_code == 403


def test_the_preflight_is_answered_for_the_ui_only(client, keys):
    preflight = client.options(
        "/codec/decode",
        HTTP_ORIGIN=UI,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type,x-namespace",
    )
    assert preflight.status_code == 204
    assert preflight["Access-Control-Allow-Origin"] == UI
    assert "POST" in preflight["Access-Control-Allow-Methods"]
    assert {"content-type", "x-namespace"} <= set(preflight["Access-Control-Allow-Headers"].split(","))
    stranger = client.options("/codec/decode", HTTP_ORIGIN="https://evil.example")
    assert "Access-Control-Allow-Origin" not in stranger


def test_bad_payloads_are_a_clear_400(client, admin_user, keys):
    client.force_login(admin_user)
    response = _decode(client, '{"payloads": "nope"}')
    assert response.status_code == 400
    assert response.json()["error"] == "INVALID_PAYLOADS"
