"""Sample webhooks for the local job: the providers' documented payloads, signed as the
providers sign them, plus the kinds of input the service must ignore or reject.
The bodies are the fixtures under tests/fixtures/, so the local job and the tests feed
the very same bytes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

from consumer.providers import mage_loyalty, rivo
from consumer.records import HeaderList

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures"
MAGE_SEED = FIXTURES / "mage_loyalty" / "points_redeemed.json"
RIVO_SEED = FIXTURES / "rivo" / "points_redemption_created.json"

# Used by the local job when no secret is configured, so that signatures are checked
# end to end there too. Never a default of the service itself.
LOCAL_SECRETS = {"mage_loyalty": "local-mage-loyalty-secret", "rivo": "local-rivo-secret"}


@dataclass(frozen=True)
class SampleWebhook:
    description: str
    value: bytes
    headers: HeaderList
    expected: str  # accepted, ignored, or the rejection reason


def sample_webhooks(secrets: dict[str, str] = LOCAL_SECRETS) -> list[SampleWebhook]:
    mage_secret, rivo_secret = secrets["mage_loyalty"], secrets["rivo"]
    mage_body = MAGE_SEED.read_bytes()
    rivo_body = RIVO_SEED.read_bytes()
    signed_at = "2026-02-18T12:00:00.000Z"

    earned = orjson.loads(mage_body)
    earned["event"] = "points.earned"
    earned_body = orjson.dumps(earned)

    wire = orjson.loads(rivo_body)
    wire.update(id=1234568, credits_amount="25.5", points_amount="0", source="credits")
    wire.pop("event_type", None)
    wire["customer"].update(shopify_domain="my-store.myshopify.com", event_type=None)
    wire_body = orjson.dumps(wire)

    headless = orjson.loads(rivo_body)
    del headless["customer"]
    headless_body = orjson.dumps(headless)

    return [
        SampleWebhook(
            "Mage Loyalty points.redeemed, documented payload",
            mage_body,
            mage_loyalty.signed_headers(mage_secret, mage_body, signed_at, "points.redeemed"),
            "accepted",
        ),
        SampleWebhook(
            "Rivo points_redemption/created, documented payload and signature",
            rivo_body,
            rivo.documented_headers(rivo_secret, rivo_body),
            "accepted",
        ),
        SampleWebhook(
            "Rivo credits redemption with wire headers (Standard Webhooks signature)",
            wire_body,
            rivo.wire_headers(
                rivo_secret, wire_body, "points_redemption/created", "msg_1234568", 1771416000
            ),
            "accepted",
        ),
        SampleWebhook(
            "Mage Loyalty points.earned: not a redemption",
            earned_body,
            mage_loyalty.signed_headers(mage_secret, earned_body, signed_at, "points.earned"),
            "ignored",
        ),
        SampleWebhook(
            "Rivo reward-expiry notification with the redemption's shape",
            rivo_body,
            rivo.wire_headers(
                rivo_secret,
                rivo_body,
                "notification/reward_expiry_last_chance",
                "msg_1234569",
                1771416000,
            ),
            "ignored",
        ),
        SampleWebhook(
            "Mage Loyalty payload signed with another secret",
            mage_body,
            mage_loyalty.signed_headers("not-the-secret", mage_body, signed_at, "points.redeemed"),
            "signature_invalid",
        ),
        SampleWebhook(
            "Rivo redemption without its customer object",
            headless_body,
            rivo.wire_headers(
                rivo_secret, headless_body, "points_redemption/created", "msg_1234570", 1771416000
            ),
            "schema_violation",
        ),
        SampleWebhook("Truncated JSON", mage_body[:40], (), "invalid_json"),
        SampleWebhook("JSON from nobody we know", b'{"hello": "world"}', (), "unknown_provider"),
    ]
