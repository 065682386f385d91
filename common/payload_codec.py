"""Every workflow and activity payload encrypted before it leaves the process (AES-GCM).

Temporal stores each booking's inputs, update arguments and activity inputs in its histories, and
anyone who can open the Temporal UI or export a history reads them: a payment code among them.
This codec, as Temporal's encryption sample does, wraps each payload whole (its metadata and data)
in AES-256-GCM and names the key in the outer payload's metadata, so that keys rotate: a new key
encrypts from now on, and the old ones, still listed, decrypt what they encrypted before.

A payload without the encrypted encoding passes through ``decode`` untouched: histories written
before encryption was switched on (and the recorded ones the replay tests read) stay readable.

Keys come from ``PAYLOAD_ENCRYPTION_KEYS`` (``id:base64,id:base64``; the first is the current one
unless ``PAYLOAD_ENCRYPTION_KEY_ID`` names another): see docs/CONFIGURATION.md, "Payload
encryption", and docs/OPERATIONS.md, "Rotating the payload key".
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence

import temporalio.converter
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter, PayloadCodec

# The same metadata as Temporal's encryption samples (Python, Go, TypeScript).
ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = 32  # AES-256
_KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9._\-]{1,64}")


class KeyConfigError(ValueError):
    """``PAYLOAD_ENCRYPTION_KEYS`` or ``PAYLOAD_ENCRYPTION_KEY_ID`` is wrong (one line)."""


class UnknownKeyError(ValueError):
    """A payload was encrypted with a key this process does not hold."""


@dataclasses.dataclass(frozen=True)
class PayloadKeys:
    """The keys this process holds, by id, and the one that encrypts."""

    keys: Mapping[str, bytes]
    current: str


def parse_keys(keys: str, current: str = "") -> PayloadKeys | None:
    """``"k2:BASE64,k1:BASE64"`` -> PayloadKeys (None when ``keys`` is empty: encryption off).
    Raises KeyConfigError naming the variable on a malformed entry, a key that is not 32 bytes
    of base64, a repeated id or a current id that is not listed."""
    parsed: dict[str, bytes] = {}
    for entry in (part.strip() for part in keys.split(",")):
        if not entry:
            continue
        key_id, _, encoded = entry.partition(":")
        if not _KEY_ID_PATTERN.fullmatch(key_id) or not encoded:
            raise KeyConfigError(
                "PAYLOAD_ENCRYPTION_KEYS is not valid: expected id:base64key entries separated by commas, "
                "such as 2026-12:" + "A" * 43 + "="
            )
        try:
            key = base64.b64decode(encoded, validate=True)
        except binascii.Error:
            key = b""
        if len(key) != KEY_BYTES:
            raise KeyConfigError(
                f"PAYLOAD_ENCRYPTION_KEYS: key {key_id!r} is not valid: expected {KEY_BYTES} bytes, "
                "base64-encoded (make one with: python -m common.payload_codec)"
            )
        if key_id in parsed:
            raise KeyConfigError(f"PAYLOAD_ENCRYPTION_KEYS: key id {key_id!r} is listed twice")
        parsed[key_id] = key
    if not parsed:
        if current:
            raise KeyConfigError("PAYLOAD_ENCRYPTION_KEY_ID is set but PAYLOAD_ENCRYPTION_KEYS is empty")
        return None
    current = current or next(iter(parsed))
    if current not in parsed:
        raise KeyConfigError(
            f"PAYLOAD_ENCRYPTION_KEY_ID={current!r} is not valid: expected one of the ids in "
            f"PAYLOAD_ENCRYPTION_KEYS ({', '.join(parsed)})"
        )
    return PayloadKeys(keys=parsed, current=current)


def from_environ(environ: Mapping[str, str]) -> PayloadKeys | None:
    """The keys the environment gives (the tools' way; Django reads them once in settings)."""
    keys, current = environ.get("PAYLOAD_ENCRYPTION_KEYS", ""), environ.get("PAYLOAD_ENCRYPTION_KEY_ID", "")
    return parse_keys(keys, current)


def new_key_entry(key_id: str) -> str:
    """A fresh ``id:base64`` entry for PAYLOAD_ENCRYPTION_KEYS."""
    return f"{key_id}:{base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()}"


class EncryptionCodec(PayloadCodec):
    """Encrypts with the current key; decrypts with whichever key a payload names."""

    def __init__(self, keys: PayloadKeys) -> None:
        super().__init__()
        self.current = keys.current
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.keys.items()}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(payload) for payload in payloads]

    def encrypt(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.current].encrypt(nonce, payload.SerializeToString(), None)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: self.current.encode()}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # written in plain text, before encryption was on
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise UnknownKeyError(
                f"payload encrypted with key {key_id!r}, which PAYLOAD_ENCRYPTION_KEYS does not hold "
                f"(it holds {', '.join(self._ciphers)})"
            )
        try:
            plain = cipher.decrypt(payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:], None)
        except InvalidTag:
            raise UnknownKeyError(
                f"payload of key {key_id!r} does not decrypt: another key has that id"
            ) from None
        return Payload.FromString(plain)


def data_converter(keys: PayloadKeys | None) -> DataConverter:
    """The SDK's default converter, with the codec when there are keys (plain otherwise)."""
    default = temporalio.converter.default()
    return default if keys is None else dataclasses.replace(default, payload_codec=EncryptionCodec(keys))


def encrypted(payloads: Iterable[Payload]) -> bool:
    """Whether every one of these payloads is encrypted (tests, the chaos report)."""
    return all(payload.metadata.get("encoding") == ENCODING for payload in payloads)


if __name__ == "__main__":  # python -m common.payload_codec [key-id]: a new key entry
    import sys
    from datetime import UTC, datetime

    print(new_key_entry(sys.argv[1] if len(sys.argv) > 1 else datetime.now(UTC).strftime("%Y-%m-%d")))
