"""Mage Loyalty: the `points.redeemed` webhook.

Envelope {event, shop, timestamp, data}; signed as X-Webhook-Signature: sha256=<hex>,
HMAC-SHA256 over "{X-Webhook-Timestamp}.{raw body}".
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson

from consumer.errors import NormalizationError, SignatureInvalid, SignatureMissing
from consumer.providers import fields
from consumer.providers.base import (
    CanonicalRecord,
    Headers,
    first_text,
    hmac_sha256,
    matches_any,
)

USER_AGENT_PREFIX = "mageloyalty-webhook"
SIGNATURE_HEADER = "x-webhook-signature"
TIMESTAMP_HEADER = "x-webhook-timestamp"
EVENT_HEADER = "x-webhook-event"
SIGNATURE_PREFIX = "sha256="


class MageLoyalty:
    name = "mage_loyalty"
    redemption_event = "points.redeemed"
    raw_schema_file = "mage_loyalty.points_redeemed.avsc"
    # Mage Loyalty's complete documented event list.
    known_event_types = frozenset(
        ("points.earned", "points.redeemed", "customer.tier_upgrade", "customer.tier_downgrade")
    )

    def recognises_headers(self, headers: Headers) -> bool:
        return (
            headers.get("user-agent", "").lower().startswith(USER_AGENT_PREFIX)
            or EVENT_HEADER in headers
            or SIGNATURE_HEADER in headers
        )

    def recognises_body(self, body: Mapping[str, Any]) -> bool:
        return isinstance(body.get("event"), str) and "data" in body

    def event_type(self, headers: Headers, body: Mapping[str, Any]) -> str | None:
        # The body is covered by the signature and the header is not: the body wins.
        return first_text(body.get("event"), headers.get(EVENT_HEADER))

    def verify_signature(self, secrets: tuple[str, ...], headers: Headers, raw_body: bytes) -> None:
        presented = headers.get(SIGNATURE_HEADER)
        if presented is None:
            raise SignatureMissing("X-Webhook-Signature header is absent", "X-Webhook-Signature")
        signed_at = headers.get(TIMESTAMP_HEADER)
        if signed_at is None:
            raise SignatureMissing(
                "X-Webhook-Timestamp header, part of the signed string, is absent",
                "X-Webhook-Timestamp",
            )
        presented = presented.strip()
        if presented[: len(SIGNATURE_PREFIX)].lower() == SIGNATURE_PREFIX:
            presented = presented[len(SIGNATURE_PREFIX) :]
        signed = signed_at.encode() + b"." + raw_body
        expected = [hmac_sha256(secret.encode(), signed).hex().encode() for secret in secrets]
        if not matches_any(expected, [presented.lower().encode()]):
            raise SignatureInvalid(
                "X-Webhook-Signature does not match the HMAC of timestamp and body",
                "X-Webhook-Signature",
            )

    def normalise(self, body: Mapping[str, Any], headers: Headers) -> CanonicalRecord:
        data = body["data"]
        occurred_at = fields.timestamp(body["timestamp"], "timestamp")
        customer_id = fields.shopify_customer_id(
            data["shopify_customer_id"], "data.shopify_customer_id"
        )
        points = fields.count(data["points_redeemed"], "data.points_redeemed")
        reward_id = fields.optional_id(data.get("reward_id"), "data.reward_id")
        discount_code = fields.optional_text(data.get("discount_code"), "data.discount_code")
        # Mage's shop is its own short handle ('my-store'), not a domain: bounded text.
        shop = fields.optional_text(body.get("shop"), "shop")
        email, email_sha256 = fields.email(data.get("email"), "data.email")
        reward_name = fields.optional_text(
            data["reward_name"], "data.reward_name", fields.MAX_REWARD_NAME_CHARACTERS
        )
        if reward_name is None:
            raise NormalizationError("data.reward_name: blank", "data.reward_name")
        content_id = _content_id(shop, customer_id, occurred_at, points, reward_id, discount_code)
        return {
            "event_id": f"{self.name}:{content_id}",
            "provider": self.name,
            "provider_event_id": None,
            "shop": shop,
            "occurred_at": occurred_at,
            "source": "points",
            "points_redeemed": points,
            "credits_redeemed": None,
            # A balance may be negative: points earned on a refunded order are clawed back.
            "points_balance_after": fields.optional_integer(
                data.get("points_balance"), "data.points_balance"
            ),
            "customer": {
                "shopify_customer_id": customer_id,
                "email": email,
                "email_sha256": email_sha256,
                "first_name": None,
                "last_name": None,
                "loyalty_status": None,
                "accepts_marketing": None,
            },
            "reward": {
                "id": reward_id,
                "name": reward_name,
                "label": reward_name,
                "type": None,
                "discount_code": discount_code,
                "expires_at": None,
                "used_at": None,
                "refunded_at": None,
            },
        }


def _content_id(shop, customer_id, occurred_at, points, reward_id, discount_code) -> str:
    """Mage sends no event id. Hash the normalised identifying values (not the raw
    bytes), so a retry with other whitespace, key order or timestamp spelling keeps it."""
    identity = orjson.dumps(
        [shop, customer_id, fields.epoch_millis(occurred_at), points, reward_id, discount_code]
    )
    return hashlib.sha256(identity).hexdigest()


PROVIDER = MageLoyalty()
