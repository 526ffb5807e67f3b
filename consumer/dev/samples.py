"""Sample webhooks for the local job and the tests: each provider's documented
redemption payloads (package data under consumer/dev/webhooks/<provider>/), signed as
the provider signs them, plus the kinds of input the service must ignore or reject.

Every provider in the registry gets the same generic samples from its own payloads;
a few hand-made ones follow, for behaviour that is particular to one provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

import orjson

from consumer.dev.signing import SIGNERS
from consumer.providers import PROVIDERS, mage_loyalty, rivo
from consumer.providers.base import Provider
from consumer.records import HeaderList

# Used by the local job when no secret is configured, so that signatures are checked
# end to end there too. Never a default of the service itself.
LOCAL_SECRETS: dict[str, str] = {
    provider.name: f"local-{provider.name.replace('_', '-')}-secret"
    for provider in PROVIDERS
    if provider.name in SIGNERS
}


@dataclass(frozen=True)
class SampleWebhook:
    description: str
    value: bytes
    headers: HeaderList
    expected: str  # accepted, ignored, or the rejection reason


@cache
def redemption_payloads(provider_name: str) -> tuple[bytes, ...]:
    """The provider's documented redemption bodies, exactly as stored, by file name."""
    folder = resources.files("consumer.dev") / "webhooks" / provider_name
    files = sorted(
        (item for item in folder.iterdir() if item.name.endswith(".json")),
        key=lambda item: item.name,
    )
    return tuple(item.read_bytes() for item in files)


def redemption_payload(provider_name: str) -> bytes:
    """The provider's first documented redemption body."""
    return redemption_payloads(provider_name)[0]


def signed(provider: Provider, secret: str | None, body: bytes, event_type: str) -> HeaderList:
    """Headers as the provider would send them; unsigned when it has no signer."""
    signer = SIGNERS.get(provider.name)
    if signer is None or secret is None:
        return [("Content-Type", b"application/json")]
    return signer(secret, body, event_type)


def sample_webhooks(secrets: Mapping[str, str] = LOCAL_SECRETS) -> list[SampleWebhook]:
    samples: list[SampleWebhook] = []
    for provider in PROVIDERS:
        secret = secrets.get(provider.name)
        event = provider.redemption_event
        for body in redemption_payloads(provider.name):
            samples.append(
                SampleWebhook(
                    f"{provider.name} {event}, documented payload",
                    body,
                    signed(provider, secret, body, event),
                    "accepted",
                )
            )
        if secret is not None and provider.name in SIGNERS:
            body = redemption_payload(provider.name)
            samples.append(
                SampleWebhook(
                    f"{provider.name} {event} signed with another secret",
                    body,
                    signed(provider, "not-the-secret", body, event),
                    "signature_invalid",
                )
            )
    samples.extend(_particular_samples(secrets))
    samples.append(SampleWebhook("Truncated JSON", b'{"event": "points.rede', (), "invalid_json"))
    samples.append(
        SampleWebhook("JSON from nobody we know", b'{"hello": "world"}', (), "unknown_provider")
    )
    return samples


def _particular_samples(secrets: Mapping[str, str]) -> list[SampleWebhook]:
    """Behaviour particular to one provider: other events that must be ignored (one of
    them with the redemption's exact shape), a credits redemption, a missing object."""
    mage, rivo_provider = mage_loyalty.PROVIDER, rivo.PROVIDER
    mage_secret, rivo_secret = secrets.get(mage.name), secrets.get(rivo_provider.name)
    mage_body = redemption_payload(mage.name)
    rivo_body = redemption_payload(rivo_provider.name)

    earned = orjson.loads(mage_body)
    earned["event"] = "points.earned"
    earned_body = orjson.dumps(earned)

    credits = orjson.loads(rivo_body)
    credits.update(id=1234568, credits_amount="25.5", points_amount="0", source="credits")
    credits.pop("event_type", None)
    credits["customer"].update(shopify_domain="my-store.myshopify.com", event_type=None)
    credits_body = orjson.dumps(credits)

    headless = orjson.loads(rivo_body)
    del headless["customer"]
    headless_body = orjson.dumps(headless)

    expiry = "notification/reward_expiry_last_chance"
    return [
        SampleWebhook(
            "Rivo credits redemption (Standard Webhooks signature)",
            credits_body,
            signed(rivo_provider, rivo_secret, credits_body, rivo_provider.redemption_event),
            "accepted",
        ),
        SampleWebhook(
            "Mage Loyalty points.earned: not a redemption",
            earned_body,
            signed(mage, mage_secret, earned_body, "points.earned"),
            "ignored",
        ),
        SampleWebhook(
            "Rivo reward-expiry notification with the redemption's shape",
            rivo_body,
            signed(rivo_provider, rivo_secret, rivo_body, expiry),
            "ignored",
        ),
        SampleWebhook(
            "Rivo redemption without its customer object",
            headless_body,
            signed(rivo_provider, rivo_secret, headless_body, rivo_provider.redemption_event),
            "schema_violation",
        ),
    ]
