"""Rivo: the `points_redemption/created` webhook.

The event type comes from the `rivo-webhook-topic` header (seen on the wire), else the
body's `event_type`, else `customer.event_type`; never from the body's shape, because
`notification/reward_expiry_last_chance` has exactly the redemption's shape.

Two signature schemes are accepted, whichever headers are present:
- documented: `Rivo-Signature: <base64>` = HMAC-SHA256(secret, raw body);
- seen on the wire (Standard Webhooks): `rivo-webhook-signature: v1,<base64> [v1,...]`
  = HMAC-SHA256(key, "{rivo-webhook-id}.{rivo-webhook-timestamp}.{raw body}"), where a
  secret written `whsec_<base64>` is base64-decoded to the key, as that scheme specifies.
No timestamp tolerance is applied: a consumer legitimately reads old records (lag,
replays), and replay protection belongs to the HTTP receiver, not to this topic.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from functools import cache
from typing import Any

from consumer.errors import NormalizationError, SignatureInvalid, SignatureMissing
from consumer.providers import fields
from consumer.providers.base import (
    CanonicalRecord,
    Headers,
    base64_hmac_sha256,
    first_text,
    matches_any,
)

TOPIC_HEADER = "rivo-webhook-topic"
DOCUMENTED_SIGNATURE_HEADER = "rivo-signature"
STANDARD_SIGNATURE_HEADER = "rivo-webhook-signature"
STANDARD_ID_HEADER = "rivo-webhook-id"
STANDARD_TIMESTAMP_HEADER = "rivo-webhook-timestamp"
SHOP_HEADER = "x-shop-domain"
STANDARD_SECRET_PREFIX = "whsec_"

# Rivo's reward_type values mapped to the canonical RewardType enum; anything else is
# 'other' so a new reward kind never rejects a redemption.
REWARD_TYPES = {
    "fixed_amount": "fixed_amount",
    "percentage": "percentage",
    "free_shipping": "free_shipping",
    "free_product": "free_product",
}
SOURCES = ("points", "credits")


class Rivo:
    name = "rivo"
    redemption_event = "points_redemption/created"
    raw_schema_file = "rivo.points_redemption_created.avsc"
    # Rivo's topics as documented and as seen on the wire.
    known_event_types = frozenset(
        (
            "points_redemption/created",
            "points_event/created",
            "customer_vip_tier/upgraded",
            "customer_vip_tier/updated",
            "customer_vip_tier/downgraded",
            "referral_invite/created",
            "referral/completed",
            "notification/points_expiry_warning",
            "notification/points_expiry_last_chance",
            "notification/reward_expiry_last_chance",
        )
    )

    def recognises_headers(self, headers: Headers) -> bool:
        return any(name.startswith("rivo-") for name in headers)

    def recognises_body(self, body: Mapping[str, Any]) -> bool:
        customer = body.get("customer")
        return isinstance(body.get("event_type"), str) or (
            isinstance(customer, dict) and isinstance(customer.get("event_type"), str)
        )

    def event_type(self, headers: Headers, body: Mapping[str, Any]) -> str | None:
        customer = body.get("customer")
        return first_text(
            headers.get(TOPIC_HEADER),
            body.get("event_type"),
            customer.get("event_type") if isinstance(customer, dict) else None,
        )

    def verify_signature(self, secrets: tuple[str, ...], headers: Headers, raw_body: bytes) -> None:
        documented = headers.get(DOCUMENTED_SIGNATURE_HEADER)
        standard = headers.get(STANDARD_SIGNATURE_HEADER)
        if documented is None and standard is None:
            raise SignatureMissing(
                "neither Rivo-Signature nor rivo-webhook-signature header is present",
                "Rivo-Signature",
            )
        if documented is not None and _documented_matches(secrets, documented, raw_body):
            return
        if standard is not None:
            webhook_id = headers.get(STANDARD_ID_HEADER)
            signed_at = headers.get(STANDARD_TIMESTAMP_HEADER)
            if (webhook_id is None or signed_at is None) and documented is None:
                raise SignatureMissing(
                    "rivo-webhook-id and rivo-webhook-timestamp, part of the signed "
                    "string, must both be present",
                    STANDARD_ID_HEADER if webhook_id is None else STANDARD_TIMESTAMP_HEADER,
                )
            if _standard_matches(secrets, webhook_id, signed_at, standard, raw_body):
                return
        raise SignatureInvalid(
            "no Rivo signature header matches the HMAC of the body",
            "Rivo-Signature" if documented is not None else "rivo-webhook-signature",
        )

    def normalise(self, body: Mapping[str, Any], headers: Headers) -> CanonicalRecord:
        reward = body.get("reward") or {}
        customer = body["customer"]
        email, email_sha256 = fields.email(customer.get("email"), "customer.email")
        label = fields.optional_text(body.get("name"), "name", fields.MAX_REWARD_NAME_CHARACTERS)
        reward_name = (
            fields.optional_text(
                reward.get("name"), "reward.name", fields.MAX_REWARD_NAME_CHARACTERS
            )
            or label
        )
        if reward_name is None:
            raise NormalizationError(
                "reward.name: neither reward.name nor name is present", "reward.name"
            )
        reward_type = reward.get("reward_type")
        provider_event_id = str(fields.count(body["id"], "id"))
        return {
            "event_id": f"{self.name}:{provider_event_id}",
            "provider": self.name,
            "provider_event_id": provider_event_id,
            # The header is not covered by any signature: only a host name passes.
            "shop": fields.host_name(headers.get(SHOP_HEADER), "X-Shop-Domain")
            or fields.optional_text(customer.get("shopify_domain"), "customer.shopify_domain"),
            "occurred_at": fields.timestamp(body["applied_at"], "applied_at"),
            "source": _source(body, reward),
            "points_redeemed": fields.count(body["points_amount"], "points_amount"),
            "credits_redeemed": fields.decimal_string(body.get("credits_amount"), "credits_amount"),
            # A balance may be negative: points earned on a refunded order are clawed back.
            "points_balance_after": fields.optional_integer(
                customer.get("points_tally"), "customer.points_tally"
            ),
            "customer": {
                "shopify_customer_id": fields.shopify_customer_id(customer["id"], "customer.id"),
                "email": email,
                "email_sha256": email_sha256,
                "first_name": fields.optional_text(
                    customer.get("first_name"), "customer.first_name"
                ),
                "last_name": fields.optional_text(customer.get("last_name"), "customer.last_name"),
                "loyalty_status": fields.optional_text(
                    customer.get("loyalty_status"), "customer.loyalty_status"
                ),
                "accepts_marketing": customer.get("accepts_marketing"),
            },
            "reward": {
                "id": fields.optional_id(reward.get("id"), "reward.id")
                or fields.optional_id(body.get("reward_id"), "reward_id"),
                "name": reward_name,
                "label": label,
                "type": None if reward_type is None else REWARD_TYPES.get(reward_type, "other"),
                "discount_code": fields.optional_text(body.get("code"), "code"),
                "expires_at": fields.optional_timestamp(body.get("expires_at"), "expires_at"),
                "used_at": fields.optional_timestamp(body.get("used_at"), "used_at"),
                "refunded_at": fields.optional_timestamp(body.get("refunded_at"), "refunded_at"),
            },
        }


def _source(body: Mapping[str, Any], reward: Mapping[str, Any]) -> str:
    source = body.get("source") or reward.get("source")
    field = "source" if body.get("source") else "reward.source"
    if source is None:
        raise NormalizationError("source: neither source nor reward.source is present", "source")
    if source not in SOURCES:
        raise NormalizationError(f"{field}: expected points or credits", field)
    return source


def _documented_matches(secrets: tuple[str, ...], presented: str, raw_body: bytes) -> bool:
    expected = [base64_hmac_sha256(secret.encode(), raw_body) for secret in secrets]
    return matches_any(expected, [presented.strip().encode()])


def _standard_matches(
    secrets: tuple[str, ...],
    webhook_id: str | None,
    signed_at: str | None,
    presented: str,
    raw_body: bytes,
) -> bool:
    if webhook_id is None or signed_at is None:
        return False
    signed = f"{webhook_id}.{signed_at}.".encode() + raw_body
    expected = [
        base64_hmac_sha256(key, signed) for secret in secrets for key in standard_keys(secret)
    ]
    # Space-separated "version,signature" pairs; only v1 (HMAC-SHA256) is defined.
    candidates = [
        signature.encode()
        for version, _, signature in (part.partition(",") for part in presented.split())
        if version == "v1"
    ]
    return matches_any(expected, candidates)


@cache  # per configured secret, not per record: the answer never changes
def standard_keys(secret: str) -> tuple[bytes, ...]:
    """HMAC keys a configured secret may stand for. Standard Webhooks secrets are
    base64 ('whsec_' + base64 by convention, but the reference library decodes an
    unprefixed secret too); a secret that is not base64 is used as written."""
    if secret.startswith(STANDARD_SECRET_PREFIX):
        encoded = secret[len(STANDARD_SECRET_PREFIX) :]
        keys = []
    else:
        encoded = secret
        keys = [secret.encode()]
    try:
        keys.append(base64.b64decode(encoded, validate=True))
    except binascii.Error:
        if not keys:
            keys.append(secret.encode())
    return tuple(keys)


PROVIDER = Rivo()
