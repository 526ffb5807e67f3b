"""Sign payloads the way each provider does, written from the providers' documentation
(not from the consumer's code), so a verification test checks one against the other.

Mage Loyalty: X-Webhook-Signature: sha256=<hex HMAC-SHA256(secret, "{ts}.{body}")>,
with ts the X-Webhook-Timestamp header.
Rivo, documented: Rivo-Signature: <base64 HMAC-SHA256(secret, body)>.
Rivo, on the wire (Standard Webhooks): rivo-webhook-signature: v1,<base64 HMAC-SHA256(
key, "{rivo-webhook-id}.{rivo-webhook-timestamp}.{body}")>; a secret written
whsec_<base64> stands for the base64-decoded key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

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


def _rivo_documented_with_topic(body: bytes, secret: str | None = None) -> Headers:
    return rivo_documented_headers(body, secret, topic="points_redemption/created")


# Every way each provider signs a redemption, by provider name: tests that iterate the
# registry sign with these. A new provider adds its line here (its tests' part).
REDEMPTION_SIGNERS = {
    "mage_loyalty": (mage_headers,),
    "rivo": (_rivo_documented_with_topic, rivo_wire_headers),
}
