"""Reaching Temporal the SDK's standard way (temporalio.envconfig): the TEMPORAL_* variables and
TOML profiles the CLI shares, TEMPORAL_HOST as an alias, and one readable line naming the setting
when a certificate, a key or a value is wrong. Pure: no server (tests/test_temporal_tls.py books
over TLS and mutual TLS)."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.service import TLSConfig

from common.temporal_connection import TemporalConfigError, load
from tests.certificates import Authority
from tests.test_settings import run_manage


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path)


def test_nothing_set_is_the_local_dev_server_in_plain_text():
    connection = load({})
    assert (connection.address, connection.namespace, connection.tls) == ("127.0.0.1:7233", "default", False)
    assert connection.secured == "plain text"


def test_temporal_host_is_an_alias_of_temporal_address():
    assert load({"TEMPORAL_HOST": "temporal:7233"}).address == "temporal:7233"
    both = {"TEMPORAL_ADDRESS": "temporal:7233", "TEMPORAL_HOST": "temporal:7233"}
    assert load(both).address == "temporal:7233"
    with pytest.raises(TemporalConfigError, match="TEMPORAL_ADDRESS='a:1' and TEMPORAL_HOST='b:1' disagree"):
        load({"TEMPORAL_ADDRESS": "a:1", "TEMPORAL_HOST": "b:1"})


def test_an_api_key_turns_tls_on_as_temporal_cloud_needs():
    connection = load({"TEMPORAL_ADDRESS": "ns.a1b2c.tmprl.cloud:7233", "TEMPORAL_API_KEY": "secret"})
    assert connection.connect_kwargs() == {"namespace": "default", "tls": True, "api_key": "secret"}
    assert connection.secured == "TLS with an API key"


def test_mutual_tls_from_the_variables(ca: Authority):
    client = ca.issue("booking-worker", server=False)
    connection = load(
        {
            "TEMPORAL_ADDRESS": "temporal.internal:7233",
            "TEMPORAL_NAMESPACE": "bookings",
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(ca.pem),
            "TEMPORAL_TLS_CLIENT_CERT_PATH": str(client.cert),
            "TEMPORAL_TLS_CLIENT_KEY_PATH": str(client.key),
            "TEMPORAL_TLS_SERVER_NAME": "temporal.internal",
        }
    )
    assert connection.namespace == "bookings"
    assert isinstance(connection.tls, TLSConfig)
    assert connection.tls.server_root_ca_cert == ca.pem.read_bytes()
    assert connection.tls.client_cert == client.cert.read_bytes()
    assert connection.tls.client_private_key == client.key.read_bytes()
    assert connection.tls.domain == "temporal.internal"
    assert connection.secured == "mutual TLS"


def test_a_profile_of_the_toml_file_and_the_variables_over_it(tmp_path: Path, ca: Authority):
    client = ca.issue("booking-web", server=False)
    config = tmp_path / "temporal.toml"
    config.write_text(
        "[profile.production]\n"
        'address = "temporal.internal:7233"\n'
        'namespace = "bookings"\n'
        "[profile.production.tls]\n"
        f'server_ca_cert_path = "{ca.pem}"\n'
        f'client_cert_path = "{client.cert}"\n'
        f'client_key_path = "{client.key}"\n'
    )
    environ = {"TEMPORAL_CONFIG_FILE": str(config), "TEMPORAL_PROFILE": "production"}
    connection = load(environ)
    assert (connection.address, connection.namespace, connection.secured) == (
        "temporal.internal:7233",
        "bookings",
        "mutual TLS",
    )
    assert load({**environ, "TEMPORAL_NAMESPACE": "staging"}).namespace == "staging"
    assert load({**environ, "TEMPORAL_TLS": "false"}).tls is False


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"TEMPORAL_TLS": "maybe"}, "TEMPORAL_TLS='maybe' is not valid: expected true or false"),
        ({"TEMPORAL_ADDRESS": "temporal"}, "TEMPORAL_ADDRESS='temporal' is not valid: expected host:port"),
        ({"TEMPORAL_NAMESPACE": "a b"}, "TEMPORAL_NAMESPACE='a b' is not valid"),
        ({"TEMPORAL_PROFILE": "nowhere"}, "TEMPORAL_PROFILE='nowhere'"),
        (
            {"TEMPORAL_CONFIG_FILE": "/no/such.toml"},
            "TEMPORAL_CONFIG_FILE='/no/such.toml' is not valid: no such file",
        ),
        (
            {"TEMPORAL_TLS_SERVER_CA_CERT_PATH": "/no/ca.pem"},
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH='/no/ca.pem' cannot be read: No such file or directory",
        ),
    ],
)
def test_a_wrong_value_names_its_variable(environ: dict[str, str], message: str):
    with pytest.raises(TemporalConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load(environ)


def test_a_ca_file_that_is_no_certificate_is_named(tmp_path: Path):
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    expected = "TEMPORAL_TLS_SERVER_CA_CERT_PATH is not valid: expected PEM"
    with pytest.raises(TemporalConfigError, match=expected):
        load({"TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(not_pem)})


def test_a_client_certificate_without_its_key_is_named(ca: Authority):
    client = ca.issue("worker", server=False)
    with pytest.raises(TemporalConfigError, match="TEMPORAL_TLS_CLIENT_KEY_PATH is not"):
        load({"TEMPORAL_TLS_CLIENT_CERT_PATH": str(client.cert)})
    with pytest.raises(TemporalConfigError, match="TEMPORAL_TLS_CLIENT_CERT_PATH is not"):
        load({"TEMPORAL_TLS_CLIENT_KEY_PATH": str(client.key)})


def test_a_bad_or_mismatched_client_key_is_named(ca: Authority, tmp_path: Path):
    client, other = ca.issue("worker", server=False), ca.issue("web", server=False)
    bad = tmp_path / "bad.key"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot base64\n-----END PRIVATE KEY-----\n")
    base = {"TEMPORAL_TLS_CLIENT_CERT_PATH": str(client.cert)}
    with pytest.raises(TemporalConfigError, match="TEMPORAL_TLS_CLIENT_KEY_PATH is not valid: expected an"):
        load({**base, "TEMPORAL_TLS_CLIENT_KEY_PATH": str(bad)})
    with pytest.raises(
        TemporalConfigError,
        match="TEMPORAL_TLS_CLIENT_KEY_PATH does not match the certificate of TEMPORAL_TLS_CLIENT_CERT_PATH",
    ):
        load({**base, "TEMPORAL_TLS_CLIENT_KEY_PATH": str(other.key)})


def test_the_web_and_the_worker_stop_at_start_with_one_line_naming_the_setting(tmp_path: Path):
    result = run_manage(
        "check",
        TEMPORAL_HOST="",
        TEMPORAL_ADDRESS="127.0.0.1:7233",
        TEMPORAL_TLS_SERVER_CA_CERT_PATH=str(tmp_path / "missing-ca.pem"),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"configuration error: TEMPORAL_TLS_SERVER_CA_CERT_PATH='{tmp_path / 'missing-ca.pem'}' "
        "cannot be read: No such file or directory"
    ]
