"""Sign a webhook body the way each provider does, for the samples of local runs and
for benchmarks. The inverse of each provider's verify_signature, kept out of the
runtime package: the service only ever verifies.

One signer per provider, by name: sign(secret, body, event_type) -> headers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from consumer.providers import mage_loyalty, rivo
from consumer.providers.base import base64_hmac_sha256, hmac_sha256
from consumer.records import HeaderList

Signer = Callable[[str, bytes, str], HeaderList]

# Fixed, so that a sample signs to the same bytes on every run.
SIGNED_AT_ISO = "2026-02-18T12:00:00.000Z"
SIGNED_AT_EPOCH = 1771416000


def mage_loyalty_headers(secret: str, body: bytes, event_type: str) -> HeaderList:
    """X-Webhook-Signature: sha256=<hex HMAC of "{X-Webhook-Timestamp}.{body}">."""
    signed = SIGNED_AT_ISO.encode() + b"." + body
    signature = mage_loyalty.SIGNATURE_PREFIX + hmac_sha256(secret.encode(), signed).hex()
    return [
        ("Content-Type", b"application/json"),
        ("User-Agent", b"MageLoyalty-Webhook/1.0"),
        ("X-Webhook-Event", event_type.encode()),
        ("X-Webhook-Timestamp", SIGNED_AT_ISO.encode()),
        ("X-Webhook-Signature", signature.encode()),
    ]


def rivo_wire_headers(secret: str, body: bytes, event_type: str) -> HeaderList:
    """Rivo as seen on the wire (Standard Webhooks): v1,<base64 HMAC of
    "{id}.{timestamp}.{body}">, with a webhook id that follows from the body."""
    webhook_id = "msg_" + hashlib.sha256(body).hexdigest()[:20]
    signed = f"{webhook_id}.{SIGNED_AT_EPOCH}.".encode() + body
    key = rivo.standard_keys(secret)[-1]
    return [
        ("content-type", b"application/json"),
        ("rivo-webhook-topic", event_type.encode()),
        ("rivo-webhook-id", webhook_id.encode()),
        ("rivo-webhook-timestamp", str(SIGNED_AT_EPOCH).encode()),
        ("rivo-webhook-signature", b"v1," + base64_hmac_sha256(key, signed)),
    ]


def rivo_documented_headers(secret: str, body: bytes, event_type: str) -> HeaderList:
    """Rivo as documented: Rivo-Signature: <base64 HMAC of the body>."""
    return [
        ("Content-Type", b"application/json"),
        ("rivo-webhook-topic", event_type.encode()),
        ("Rivo-Signature", base64_hmac_sha256(secret.encode(), body)),
    ]


SIGNERS: dict[str, Signer] = {
    mage_loyalty.PROVIDER.name: mage_loyalty_headers,
    rivo.PROVIDER.name: rivo_wire_headers,
}
