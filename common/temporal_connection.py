"""Where Temporal is and how to reach it, read the SDK's standard way (``temporalio.envconfig``).

The web, the worker and the tools (``make bench``, ``make chaos``) all read it here, from the
variables the Temporal CLI shares: ``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``,
``TEMPORAL_API_KEY``, ``TEMPORAL_TLS``, ``TEMPORAL_TLS_SERVER_CA_CERT_PATH``,
``TEMPORAL_TLS_CLIENT_CERT_PATH``, ``TEMPORAL_TLS_CLIENT_KEY_PATH``, ``TEMPORAL_TLS_SERVER_NAME``,
and profiles of a TOML file (``TEMPORAL_PROFILE``, ``TEMPORAL_CONFIG_FILE``). ``TEMPORAL_HOST``,
the project's older name for the address, is an alias of ``TEMPORAL_ADDRESS``.

The SDK reads a file only when it connects, and reports a wrong certificate deep in a transport
error; here every file is read and checked at start, so that a typo stops start-up with one line
that names the variable to fix (docs/CONFIGURATION.md, "Temporal").
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import temporalio.client
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from temporalio.envconfig import ClientConfigProfile
from temporalio.service import TLSConfig

from common import payload_codec
from common.payload_codec import PayloadKeys

DEFAULT_ADDRESS = "127.0.0.1:7233"
DEFAULT_NAMESPACE = "default"
_ADDRESS = re.compile(r"[A-Za-z0-9.\-\[\]:]+:\d{1,5}")
_NAMESPACE = re.compile(r"[A-Za-z0-9._\-]+")
_BOOLEAN = {"1", "true", "yes", "on", "0", "false", "no", "off"}

# The variables of the TLS files, named in the messages.
# What temporalio.envconfig reads from the environment by itself (docs/CONFIGURATION.md lists
# each; tests/test_docs.py holds the two to each other).
SDK_VARIABLES = (
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_API_KEY",
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_SERVER_NAME",
    "TEMPORAL_PROFILE",
    "TEMPORAL_CONFIG_FILE",
)
CA = "TEMPORAL_TLS_SERVER_CA_CERT_PATH"
CERT = "TEMPORAL_TLS_CLIENT_CERT_PATH"
KEY = "TEMPORAL_TLS_CLIENT_KEY_PATH"


class TemporalConfigError(ValueError):
    """The connection settings are wrong; the message is one line naming what to fix."""


@dataclass(frozen=True)
class TemporalConnection:
    """Everything ``Client.connect`` needs besides the data converter and interceptors."""

    address: str = DEFAULT_ADDRESS
    namespace: str = DEFAULT_NAMESPACE
    api_key: str | None = None
    tls: TLSConfig | bool = False
    rpc_metadata: Mapping[str, str] = field(default_factory=dict)
    profile: str = "default"
    # Where the TLS parts came from (a variable or a profile's key), for readable errors later.
    sources: Mapping[str, str] = field(default_factory=dict)

    @property
    def secured(self) -> str:
        """How the connection is secured, in a few words (logs, the worker's ready line)."""
        if self.tls is False:
            return "plain text"
        mutual = isinstance(self.tls, TLSConfig) and self.tls.client_cert is not None
        return ("mutual TLS" if mutual else "TLS") + (" with an API key" if self.api_key else "")

    def connect_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``temporalio.client.Client.connect``."""
        kwargs: dict[str, Any] = {"namespace": self.namespace, "tls": self.tls}
        if self.api_key:
            kwargs["api_key"] = self.api_key
        if self.rpc_metadata:
            kwargs["rpc_metadata"] = dict(self.rpc_metadata)
        return kwargs


def load(environ: Mapping[str, str]) -> TemporalConnection:
    """The connection that ``environ`` (and the TOML profile it names, if any) describes.

    Raises ``TemporalConfigError`` with one line naming the variable when a value is wrong, a
    file is missing or unreadable, a certificate or key is not PEM, or a client certificate comes
    without its key (or the other way round) or does not match it.
    """
    env = dict(environ)
    alias, address = env.get("TEMPORAL_HOST"), env.get("TEMPORAL_ADDRESS")
    if alias and address and alias != address:
        raise TemporalConfigError(
            f"TEMPORAL_ADDRESS={address!r} and TEMPORAL_HOST={alias!r} disagree: TEMPORAL_HOST is "
            "an older name for TEMPORAL_ADDRESS; set only one"
        )
    if alias and not address:
        env["TEMPORAL_ADDRESS"] = alias
    tls_flag = env.get("TEMPORAL_TLS")
    if tls_flag is not None and tls_flag.strip().lower() not in _BOOLEAN:
        raise TemporalConfigError(f"TEMPORAL_TLS={tls_flag!r} is not valid: expected true or false")
    config_file = env.get("TEMPORAL_CONFIG_FILE")
    if config_file and not Path(config_file).is_file():
        raise TemporalConfigError(f"TEMPORAL_CONFIG_FILE={config_file!r} is not valid: no such file")
    profile_name = env.get("TEMPORAL_PROFILE") or "default"
    try:
        profile = ClientConfigProfile.load(override_env_vars=env)
    except Exception as error:  # the SDK's ConfigError: a TOML error, a profile not found
        where = f"TEMPORAL_CONFIG_FILE={config_file!r}" if config_file else "the Temporal config file"
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise TemporalConfigError(f"TEMPORAL_PROFILE={profile_name!r} in {where}: {first_line}") from None

    address_from = _named("TEMPORAL_ADDRESS" if address else "TEMPORAL_HOST", env, profile_name, "address")
    resolved_address = profile.address or DEFAULT_ADDRESS
    if not _ADDRESS.fullmatch(resolved_address):
        raise TemporalConfigError(
            f"{address_from}={resolved_address!r} is not valid: expected host:port, such as localhost:7233"
        )
    namespace = profile.namespace or DEFAULT_NAMESPACE
    if not _NAMESPACE.fullmatch(namespace):
        where = _named("TEMPORAL_NAMESPACE", env, profile_name, "namespace")
        raise TemporalConfigError(f"{where}={namespace!r} is not valid: expected a namespace name")

    sources = {
        part: _named(variable, env, profile_name, f"tls.{toml}")
        for part, variable, toml in (
            ("ca", CA, "server_ca_cert_path"),
            ("cert", CERT, "client_cert_path"),
            ("key", KEY, "client_key_path"),
        )
    }
    tls = _tls(profile, sources)
    return TemporalConnection(
        address=resolved_address,
        namespace=namespace,
        api_key=profile.api_key or None,
        tls=tls,
        rpc_metadata=dict(profile.grpc_meta),
        profile=profile_name,
        sources=sources,
    )


def _named(variable: str, env: Mapping[str, str], profile: str, key: str) -> str:
    """The variable when it is set, else the profile's key that gave the value."""
    return variable if env.get(variable) else f"profile {profile!r} {key}"


def _tls(profile: ClientConfigProfile, sources: Mapping[str, str]) -> TLSConfig | bool:
    settings = profile.tls
    enabled = bool(profile.api_key) if settings is None else settings.disabled is not True
    if settings is None or not enabled:
        return enabled  # an API key alone means TLS with the system's certificate authorities
    ca = _read(settings.server_root_ca_cert, sources["ca"])
    cert = _read(settings.client_cert, sources["cert"])
    key = _read(settings.client_private_key, sources["key"])
    if ca is not None:
        _certificates(ca, sources["ca"])
    if (cert is None) != (key is None):
        given, missing = (sources["cert"], KEY) if key is None else (sources["key"], CERT)
        raise TemporalConfigError(f"{given} is set but {missing} is not: mutual TLS needs both")
    if cert is not None and key is not None:
        _matching_pair(cert, key, sources)
    return TLSConfig(
        domain=settings.server_name or None,
        server_root_ca_cert=ca,
        client_cert=cert,
        client_private_key=key,
    )


def _read(source: Path | str | bytes | None, name: str) -> bytes | None:
    if source is None:
        return None
    if isinstance(source, Path):
        try:
            return source.read_bytes()
        except OSError as error:
            raise TemporalConfigError(f"{name}={str(source)!r} cannot be read: {error.strerror}") from None
    return source.encode() if isinstance(source, str) else source  # inline data in a profile


def _certificates(pem: bytes, name: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except ValueError:
        raise TemporalConfigError(f"{name} is not valid: expected PEM certificates") from None


def _matching_pair(cert: bytes, key: bytes, sources: Mapping[str, str]) -> None:
    certificate = _certificates(cert, sources["cert"])[0]
    try:
        private_key = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError):
        raise TemporalConfigError(
            f"{sources['key']} is not valid: expected an unencrypted PEM private key"
        ) from None
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if certificate.public_key().public_bytes(encoding, public) != private_key.public_key().public_bytes(
        encoding, public
    ):
        raise TemporalConfigError(f"{sources['key']} does not match the certificate of {sources['cert']}")


# --- Reading a failed connection -------------------------------------------------------------
# The SDK reports a TLS failure as a transport error of its Rust core; these are the marks of the
# common ones, turned into the setting to look at.
_UNTRUSTED = ("UnknownIssuer", "certificate verify failed", "BadSignature", "invalid peer certificate")
_NAME_MISMATCH = ("NotValidForName", "CertNotValidForName", "hostname mismatch")
# nginx (ssl_verify_client) answers a missing or foreign client certificate with HTTP 400; a
# Temporal server or Temporal Cloud refuses the handshake with a "certificate required" alert.
_CLIENT_CERT_REFUSED = ("CertificateRequired", "certificate required", "status: 400 Bad Request")
_NOT_TLS = ("InvalidContentType", "CorruptMessage", "wrong version number", "received corrupt message")


def explain(error: BaseException, connection: TemporalConnection) -> str | None:
    """One line naming the setting to fix when ``error`` (from ``Client.connect``) comes from
    TLS; ``None`` when it looks like a server that is simply not there (yet)."""
    text = str(error)
    where = f"Temporal at {connection.address}"
    if connection.tls is False:
        if any(mark in text for mark in ("h2 protocol error", "frame with invalid size", "http2 error")):
            return f"{where} does not answer in plain text: it may need TLS (set TEMPORAL_TLS=true)"
        return None
    tls = connection.tls if isinstance(connection.tls, TLSConfig) else TLSConfig()
    if any(mark in text for mark in _NAME_MISMATCH):
        return (
            f"{where}: its certificate is not for that name; set TEMPORAL_TLS_SERVER_NAME to the name "
            "the certificate was issued for"
        )
    if any(mark in text for mark in _UNTRUSTED):
        trusted_by = connection.sources.get("ca", CA) if tls.server_root_ca_cert else "the system's CAs"
        return (
            f"{where}: its certificate is not signed by {trusted_by}; set {CA} to the CA that "
            "signed the server's certificate"
        )
    if tls.client_cert is None and any(mark in text for mark in _CLIENT_CERT_REFUSED):
        return f"{where} asks for a client certificate (mutual TLS): set {CERT} and {KEY}"
    if tls.client_cert is not None and any(mark in text for mark in _CLIENT_CERT_REFUSED):
        return (
            f"{where} refused the client certificate of {connection.sources.get('cert', CERT)}: "
            "it is not signed by a CA the server trusts"
        )
    if any(mark in text for mark in _NOT_TLS):
        return f"{where} does not speak TLS: set TEMPORAL_TLS=false"
    return None


async def connect(
    connection: TemporalConnection, *, keys: PayloadKeys | None, **options: Any
) -> temporalio.client.Client:
    """A client on ``connection`` whose payloads go through the codec of ``keys`` (plain text
    without keys): the one way the web, the worker and the tools connect. ``options``: more
    arguments of ``Client.connect`` (interceptors, retries, the runtime)."""
    return await temporalio.client.Client.connect(
        connection.address,
        **connection.connect_kwargs(),
        data_converter=payload_codec.data_converter(keys),
        **options,
    )


def for_address(environ: Mapping[str, str], address: str) -> TemporalConnection:
    """The connection ``environ`` describes, at ``address`` instead (the tools' --address)."""
    env = {k: v for k, v in environ.items() if k != "TEMPORAL_HOST"}
    return load({**env, "TEMPORAL_ADDRESS": address})
