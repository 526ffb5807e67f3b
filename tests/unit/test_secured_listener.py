"""consumer.dev.local_broker.SecuredListener: the broker settings and format arguments
of the SASL_SSL listener, without starting a broker."""

from __future__ import annotations

from pathlib import Path

import pytest

from consumer.dev.local_broker import LocalBroker, SecuredListener


def test_scram_users_are_created_at_format_time():
    listener = SecuredListener(Path("/k.pem"), {"svc": "pw-1", "other": "pw.2"})
    assert listener.format_arguments() == [
        "--add-scram",
        "SCRAM-SHA-512=[name=svc,password=pw-1]",
        "--add-scram",
        "SCRAM-SHA-512=[name=other,password=pw.2]",
    ]


@pytest.mark.parametrize("name, password", [("svc", "a,b"), ("svc", "a]b"), ("s=v", "pw")])
def test_credentials_the_format_tool_would_misread_are_refused(name, password):
    with pytest.raises(ValueError, match="may use only") as raised:
        SecuredListener(Path("/k.pem"), {name: password})
    assert password not in str(raised.value)


def test_the_password_is_not_in_the_repr():
    assert "pw-secret" not in repr(SecuredListener(Path("/k.pem"), {"svc": "pw-secret"}))


def test_server_properties_add_the_listener_and_the_authorizer(tmp_path):
    broker = LocalBroker(
        port=1111, security=SecuredListener(Path("/k.pem"), {"svc": "pw"}, port=3333)
    )
    broker.controller_port = 2222
    props = dict(line.split("=", 1) for line in broker._server_properties(tmp_path).splitlines())
    assert props["listeners"] == (
        "PLAINTEXT://127.0.0.1:1111,CONTROLLER://127.0.0.1:2222,SASL_SSL://127.0.0.1:3333"
    )
    assert props["advertised.listeners"] == ("PLAINTEXT://127.0.0.1:1111,SASL_SSL://127.0.0.1:3333")
    assert props["listener.security.protocol.map"].endswith(",SASL_SSL:SASL_SSL")
    assert props["authorizer.class.name"].endswith("StandardAuthorizer")
    assert props["super.users"] == "User:ANONYMOUS"
    assert props["listener.name.sasl_ssl.sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["listener.name.sasl_ssl.ssl.keystore.location"] == "/k.pem"
    assert "pw" not in props.values()


def test_without_security_the_broker_is_plaintext_only(tmp_path):
    broker = LocalBroker(port=1111)
    broker.controller_port = 2222
    text = broker._server_properties(tmp_path)
    assert "SASL_SSL" not in text
    assert "authorizer" not in text
