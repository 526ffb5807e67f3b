"""Sign payloads the way each provider does, written from the providers' documentation
(not from the consumer's code), so a verification test checks one against the other.

Mage Loyalty: X-Webhook-Signature: sha256=<hex HMAC-SHA256(secret, "{ts}.{body}")>,
with ts the X-Webhook-Timestamp header.
Rivo, documented: Rivo-Signature: <base64 HMAC-SHA256(secret, body)>.
Rivo, on the wire (Standard Webhooks): rivo-webhook-signature: v1,<base64 HMAC-SHA256(
key, "{rivo-webhook-id}.{rivo-webhook-timestamp}.{body}")>; a secret written
whsec_<base64> stands for the base64-decoded key.

REDEMPTION_SIGNERS, for tests that iterate the registry, signs by each provider's
signing.toml (consumer/dev/webhooks/<provider>/), itself written from the documentation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable

from consumer.dev.signing import SigningScheme, signing_schemes
from consumer.providers import PROVIDERS

Headers = list[tuple[str, bytes | None]]

MAGE_USER_AGENT = "MageLoyalty-Webhook/1.0"
MAGE_SIGNED_AT = "2026-02-18T12:00:01.000Z"
RIVO_WEBHOOK_ID = "msg_2tq1Xb0ZrB3kH4N9c8Qe"
RIVO_SIGNED_AT = "1745593716"


def mage_signature(secret: str, timestamp: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def mage_headers(
    body: bytes,
    secret: str | None = None,
    *,
    event: str | None = "points.redeemed",
    timestamp: str = MAGE_SIGNED_AT,
) -> Headers:
    """The headers Mage Loyalty's HTTP client sends, signed when a secret is given."""
    headers: Headers = [
        ("Content-Type", b"application/json"),
        ("User-Agent", MAGE_USER_AGENT.encode()),
        ("X-Webhook-Timestamp", timestamp.encode()),
    ]
    if event is not None:
        headers.append(("X-Webhook-Event", event.encode()))
    if secret is not None:
        headers.append(("X-Webhook-Signature", mage_signature(secret, timestamp, body).encode()))
    return headers


def rivo_documented_signature(secret: str, body: bytes) -> str:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def standard_webhooks_key(secret: str) -> bytes:
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def rivo_standard_signature(secret: str, webhook_id: str, timestamp: str, body: bytes) -> str:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_webhooks_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def rivo_documented_headers(
    body: bytes, secret: str | None = None, *, topic: str | None = None
) -> Headers:
    """Headers as Rivo's documentation describes them."""
    headers: Headers = [("Content-Type", b"application/json")]
    if topic is not None:
        headers.append(("rivo-webhook-topic", topic.encode()))
    if secret is not None:
        headers.append(("Rivo-Signature", rivo_documented_signature(secret, body).encode()))
    return headers


def rivo_wire_headers(
    body: bytes,
    secret: str | None = None,
    *,
    topic: str | None = "points_redemption/created",
    webhook_id: str = RIVO_WEBHOOK_ID,
    timestamp: str = RIVO_SIGNED_AT,
) -> Headers:
    """Headers as observed on the wire (Standard Webhooks layout)."""
    headers: Headers = [
        ("content-type", b"application/json"),
        ("rivo-webhook-id", webhook_id.encode()),
        ("rivo-webhook-timestamp", timestamp.encode()),
    ]
    if topic is not None:
        headers.append(("rivo-webhook-topic", topic.encode()))
    if secret is not None:
        signature = rivo_standard_signature(secret, webhook_id, timestamp, body)
        headers.append(("rivo-webhook-signature", signature.encode()))
    return headers


def _redemption_signer(scheme: SigningScheme, event_type: str) -> Callable[..., Headers]:
    def sign(body: bytes, secret: str) -> Headers:
        return list(scheme.sign(secret, body, event_type))

    sign.__name__ = f"{scheme.name} signature".replace(" ", "_")
    return sign


# Every way each registered provider signs a redemption, by provider name, from its
# signing.toml (consumer/dev/webhooks/<provider>/): tests that iterate the registry sign
# with these, so a new provider needs no line here.
REDEMPTION_SIGNERS: dict[str, tuple[Callable[..., Headers], ...]] = {
    provider.name: tuple(
        _redemption_signer(scheme, provider.redemption_event)
        for scheme in signing_schemes(provider.name)
    )
    for provider in PROVIDERS
}
